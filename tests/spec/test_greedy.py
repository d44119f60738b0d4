"""Greedy speculative decoding is token-for-token identical to plain greedy decoding, for every
drafter and the combiner, on tiny random Llama and Qwen2 decoders over many seeds.

Oracles: Hugging Face `generate(do_sample=False)` with its own DynamicCache (no eviction), and an
independent plain loop over a StreamCache whose retention policy evicts during the response.
fp64 so that batched and one-token forwards cannot flip an argmax.
"""

from __future__ import annotations

import pytest
import torch

from streamrt.spec import (
    History,
    ModelDrafter,
    NGramDrafter,
    SamplingParams,
    SelfSpecDrafter,
    SpecConfig,
    SpeculativeDecoder,
)

from .conftest import build, cache_config, plain_decode, prefilled

DRAFTERS = ["ngram", "self1", "self2", "draft", "combo", "fixed"]


def make(name: str, model, target, draft_model):
    if name == "ngram":
        return [NGramDrafter()], SpecConfig()
    if name in ("self1", "self2"):
        return [SelfSpecDrafter(model, target.cache, int(name[-1]))], SpecConfig()
    if name == "draft":
        return [ModelDrafter(draft_model)], SpecConfig()
    if name == "fixed":  # non-adaptive: always drafts, exercising long rejected drafts
        return [ModelDrafter(draft_model)], SpecConfig(adaptive=False, fixed_draft=5)
    return [NGramDrafter(), SelfSpecDrafter(model, target.cache, 1), ModelDrafter(draft_model)], SpecConfig()


def turns_for(seed: int, vocab: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    rnd = lambda n: torch.randint(0, vocab, (n,), generator=g).tolist()  # noqa: E731
    motif = rnd(6)  # repeated text, as in streaming commentary
    return [rnd(4), rnd(5) + motif + rnd(3) + motif, rnd(4) + motif]


def _check_hf(kind: str, name: str, seeds: range) -> None:
    for seed in seeds:
        model = build(kind, seed=seed).double()
        draft_model = build(kind, layers=1, hidden=32, seed=100 + seed).double()
        turns = turns_for(seed, 96)
        prompt = torch.tensor([sum(turns, [])])
        with torch.no_grad():
            ref = model.generate(prompt, max_new_tokens=30, min_new_tokens=30, do_sample=False)[
                0, prompt.shape[1] :
            ]
        target, logits = prefilled(model, turns)
        drafters, cfg = make(name, model, target, draft_model)
        dec = SpeculativeDecoder(target, drafters, cfg)
        dec.observe(sum(turns, []))
        res = dec.generate(logits, max_new_tokens=30)
        assert list(res.tokens) == ref.tolist(), (kind, name, seed)
        assert res.stop == "length"
        assert target.cache.length == prompt.shape[1] + 29  # every emitted token but the pending one


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("name", DRAFTERS)
def test_greedy_equals_hf_generate(kind: str, name: str) -> None:
    _check_hf(kind, name, range(2))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("name", DRAFTERS)
def test_greedy_equals_hf_generate_many_seeds(kind: str, name: str) -> None:
    _check_hf(kind, name, range(2, 26))


@pytest.mark.parametrize("name", DRAFTERS)
def test_greedy_with_evictions_equals_plain_loop(name: str) -> None:
    """The text window evicts old user turns while the response grows: rounds stop before each
    eviction and the plain step that follows evicts exactly as plain decoding does."""
    cfg = cache_config(capacity=128, text_window=40)
    for seed in range(2):
        model = build("llama", seed=seed).double()
        draft_model = build("llama", layers=1, hidden=32, seed=7).double()
        g = torch.Generator().manual_seed(seed)
        turns = [torch.randint(0, 96, (n,), generator=g).tolist() for n in (4, 10, 10, 10)]
        ref, _ = plain_decode(model, turns, 36, cfg)
        target, logits = prefilled(model, turns, cfg)
        drafters, scfg = make(name, model, target, draft_model)
        dec = SpeculativeDecoder(target, drafters, scfg)
        dec.observe(sum(turns, []))
        res = dec.generate(logits, max_new_tokens=36)
        assert list(res.tokens) == ref, (name, seed)
        assert target.cache.evicted_tokens == 30  # all three user turns went, as in plain decoding


def test_eos_budget_and_pending() -> None:
    model = build("llama", seed=3).double()
    turns = turns_for(3, 96)
    ref, _ = plain_decode(model, turns, 20)
    eos = ref[12]
    first = ref.index(eos)
    target, logits = prefilled(model, turns)
    dec = SpeculativeDecoder(target, [NGramDrafter(), SelfSpecDrafter(model, target.cache, 1)])
    res = dec.generate(logits, max_new_tokens=20, eos=eos)
    assert list(res.tokens) == ref[: first + 1] and res.stop == "eos"
    assert dec.pending == eos
    nxt = dec.commit_pending()  # the EOS enters the cache; decoding can go on
    plain_target, _ = prefilled(model, turns)
    want = plain_target.forward(ref[: first + 1])[-1]
    torch.testing.assert_close(nxt, want)


def test_deadline_preempts_between_rounds() -> None:
    model = build("llama", seed=1).double()
    turns = turns_for(1, 96)
    target, logits = prefilled(model, turns)
    calls = []

    def expired() -> bool:
        calls.append(1)
        return len(calls) > 3

    dec = SpeculativeDecoder(target, [NGramDrafter()])
    res = dec.generate(logits, max_new_tokens=200, deadline=expired)
    ref, _ = plain_decode(model, turns, len(res.tokens))
    assert res.stop == "deadline" and res.stats.preempted and res.stats.rounds == 3
    assert list(res.tokens) == ref
    res2 = SpeculativeDecoder(prefilled(model, turns)[0], []).generate(logits, max_new_tokens=5, deadline=0.0)
    assert res2.stop == "deadline" and len(res2.tokens) == 1


def test_sampling_params_validated() -> None:
    with pytest.raises(Exception) as e:
        SamplingParams(temperature=-1.0)
    assert getattr(e.value, "code", "") == "E_SPEC_SAMPLING"


class _Replay:
    """A deterministic drafter proposing a fixed continuation (the plain reference, here running past
    the stop token): checks what the decoder does with drafts beyond a stop token."""

    name = "replay"
    deterministic = True
    seconds_per_token = 0.0

    def __init__(self, tokens: list[int], offset: int) -> None:
        self.tokens, self.offset = tokens, offset

    def propose(self, history, k, params, generator):
        from streamrt.spec import Proposal

        done = len(history) - self.offset  # reference tokens already in the history
        return Proposal(tuple(self.tokens[done : done + k]))

    def reset(self) -> None:
        pass


def test_drafts_are_cut_after_a_stop_token() -> None:
    model = build("llama", seed=3).double()
    turns = turns_for(3, 96)
    ref, _ = plain_decode(model, turns, 24)
    first = next(i for i in range(3, 16) if ref.index(ref[i]) == i)  # a token first said at i >= 3
    eos = ref[first]
    target, logits = prefilled(model, turns)
    history = sum(turns, [])
    dec = SpeculativeDecoder(target, [_Replay(ref, len(history))], SpecConfig(adaptive=False, fixed_draft=12))
    dec.observe(history)
    res = dec.generate(logits, max_new_tokens=24, eos=eos)
    assert list(res.tokens) == ref[: first + 1] and res.stop == "eos"
    assert res.stats.rounds == 1 and res.stats.drafted == first  # drafted up to the stop token, not 12
    assert res.stats.accepted == first


def test_restart_reuses_the_history_index_when_it_continues() -> None:
    model = build("llama", seed=0)
    target, _ = prefilled(model, [[1, 2, 3]])
    dec = SpeculativeDecoder(target, [NGramDrafter()])
    seq = [5, 6, 7, 5, 6, 8, 5, 6, 7, 9, 5, 6]
    fresh = History()
    fresh.extend(seq)
    dec.restart(seq[:6])
    kept = dec.history
    dec.restart(seq)  # continues: the same index, extended
    assert dec.history is kept and dec.history.continuation(3) == fresh.continuation(3) == (7, 9, 5)
    dec.restart([4, *seq])  # does not: a fresh index
    assert dec.history is not kept and dec.history.tokens == [4, *seq]
    assert dec.history.continuation(3) == (7, 9, 5)
