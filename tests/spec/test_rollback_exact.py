"""After every round that rejected drafts, the StreamCache equals bitwise the cache of plain greedy
decoding at the same point (same emitted tokens): K/V rows, positions, arrival index, position counter
and eviction count, also while the retention policy evicts during the response.

Bitwise needs the forward of k + 1 tokens to compute each token exactly as a one-token forward does,
which float kernels do not promise (different blocking per row count): both sides run under
`batch_invariant`. Oracle: the independent plain loop of conftest (one token per forward).
"""

from __future__ import annotations

import pytest
import torch

from streamrt.spec import ModelDrafter, NGramDrafter, SelfSpecDrafter, SpecConfig, SpeculativeDecoder
from streamrt.spec.invariant import batch_invariant

from .conftest import build, cache_config, plain_decode, prefilled, state


def _check(model, drafters_for, turns, n, cfg) -> int:
    ref, states = plain_decode(model, turns, n, cfg)
    target, logits = prefilled(model, turns, cfg)
    dec = SpeculativeDecoder(target, drafters_for(target), SpecConfig(adaptive=False, fixed_draft=4))
    dec.observe(sum(turns, []))
    emitted: list[int] = []
    checked = [0]

    def on_round(tokens: list[int], rejected: int) -> None:
        emitted.extend(tokens)
        if rejected:
            got, want = state(target), states[len(emitted) - 1]
            for key in want:
                assert torch.equal(got[key], want[key]), (key, len(emitted))
            checked[0] += 1

    res = dec.generate(logits, max_new_tokens=n, on_round=on_round)
    assert list(res.tokens) == ref
    return checked[0]


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_cache_bitwise_after_rejections(kind: str) -> None:
    model = build(kind, seed=2)
    draft = build(kind, layers=1, hidden=32, seed=3)
    cfg = cache_config(capacity=128, text_window=40)
    g = torch.Generator().manual_seed(0)
    turns = [torch.randint(0, 96, (n,), generator=g).tolist() for n in (4, 10, 10, 10)]
    with batch_invariant(model):
        checked = 0
        for drafters in (
            lambda t: [ModelDrafter(draft)],
            lambda t: [SelfSpecDrafter(model, t.cache, 1)],
            lambda t: [NGramDrafter(), ModelDrafter(draft)],
        ):
            checked += _check(model, drafters, turns, 30, cfg)
    assert checked >= 5  # rejections happened and each was checked


def test_mode_makes_batched_forward_bitwise() -> None:
    """Why the mode exists: a 5-token forward may differ in the last bits from 5 one-token forwards
    (it does on this machine's CPU kernels); under the mode it is bitwise equal."""
    model = build("llama", seed=2)
    turns = [[1, 2, 3, 4], [5, 6, 7, 8, 9, 10]]
    a, _ = prefilled(model, turns)
    b, _ = prefilled(model, turns)
    a.forward([11, 12, 13, 14, 15])
    for t in [11, 12, 13, 14, 15]:
        b.forward([t])
    torch.testing.assert_close(state(a)["k"], state(b)["k"])
    with batch_invariant(model):
        c, _ = prefilled(model, turns)
        d, _ = prefilled(model, turns)
        c.forward([11, 12, 13, 14, 15])
        for t in [11, 12, 13, 14, 15]:
            d.forward([t])
    assert torch.equal(state(c)["k"], state(d)["k"]) and torch.equal(state(c)["v"], state(d)["v"])
