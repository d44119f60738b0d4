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
