"""Speculative sampling through real (tiny, random) models is distribution-exact: the joint law of the
two tokens after a forced first token equals the target's exact law, enumerated from the model
(chi-square, 64 cells), for drafters that sample (draft model, self-speculation) and the n-gram
drafter (one-hot q); a drafter that misreports its q fails the same test."""

from __future__ import annotations

import pytest
import torch

from streamrt.spec import (
    ModelDrafter,
    NGramDrafter,
    Proposal,
    SamplingParams,
    SelfSpecDrafter,
    SpecConfig,
    SpeculativeDecoder,
    process,
)

from .conftest import build, chi2_pvalue, prefilled

V = 8
PROMPT = [[1, 2, 3], [4, 5, 1, 2, 3, 4]]
FIRST = 5
PARAMS = SamplingParams(temperature=1.0, top_k=6)


class MisreportingDrafter:
    """Samples from its model's q but reports a uniform q over the same support (a wrong q)."""

    deterministic = False

    def __init__(self, inner: ModelDrafter) -> None:
        self.inner, self.name = inner, "wrong"
        self.seconds_per_token = 0.0

    def propose(self, history, k, params, generator):
        p = self.inner.propose(history, k, params, generator)
        assert p.q is not None
        wrong = (p.q > 0).float()
        return Proposal(p.tokens, wrong / wrong.sum(-1, keepdim=True), p.seconds)

    def reset(self) -> None:
        self.inner.reset()


@torch.no_grad()
def exact_joint(model) -> torch.Tensor:
    """P(t2 = x, t3 = y | prompt, t1 = FIRST) under PARAMS, flattened [V * V]."""
    target, _ = prefilled(model, PROMPT)
    p2 = process(target.forward([FIRST])[-1], PARAMS)  # [V]
    mark = target.cache.length
    joint = torch.zeros(V, V, dtype=torch.float64)
    for x in range(V):
        if p2[x] > 0:
            joint[x] = p2[x].double() * process(target.forward([x])[-1], PARAMS).double()
        target.cache.rollback(mark)
    return joint.flatten()


def sampled_joint(model, make_drafters, n: int, seed: int) -> torch.Tensor:
    target, _ = prefilled(model, PROMPT)
    snap = target.cache.snapshot()
    forced = torch.full((V,), -1e9, dtype=torch.float64)
    forced[FIRST] = 0.0  # the first token is FIRST
    drafters = make_drafters(model, target)
    g = torch.Generator().manual_seed(seed)
    counts = torch.zeros(V * V)
    cfg = SpecConfig(adaptive=False, fixed_draft=2)
    for _ in range(n):
        target.cache.restore(snap)
        dec = SpeculativeDecoder(target, drafters, cfg)
        dec.observe(sum(PROMPT, []))
        out = dec.generate(forced, max_new_tokens=4, params=PARAMS, generator=g).tokens
        counts[out[1] * V + out[2]] += 1
    return counts


def _draft(model, target):
    return [ModelDrafter(build("llama", vocab=V, layers=1, hidden=32, seed=9).double())]


CASES = {
    "draft": _draft,
    "self1": lambda model, target: [SelfSpecDrafter(model, target.cache, 1)],
    "ngram": lambda model, target: [NGramDrafter()],
    "combo": lambda model, target: [NGramDrafter(), *_draft(model, target)],
}


@pytest.fixture(scope="module")
def model():
    return build("llama", vocab=V, layers=2, seed=5).double()


def test_combo_sampling_matches_target(model) -> None:
    counts = sampled_joint(model, CASES["combo"], 800, seed=11)
    assert chi2_pvalue(counts, exact_joint(model)) > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_each_drafter_sampling_matches_target(model, name: str) -> None:
    counts = sampled_joint(model, CASES[name], 4000, seed=12)
    assert chi2_pvalue(counts, exact_joint(model)) > 1e-3


@pytest.mark.slow
def test_wrong_q_fails(model) -> None:
    counts = sampled_joint(model, lambda m, t: [MisreportingDrafter(_draft(m, t)[0])], 2000, seed=11)
    assert chi2_pvalue(counts, exact_joint(model)) < 1e-4
