"""The verification core on its own: greedy prefix rule, and rejection sampling that is
distribution-exact (chi-square against p on a tiny vocabulary) for a correct q and detectably wrong
for a wrong q; top-k / top-p processing."""

from __future__ import annotations

import pytest
import torch

from streamrt.spec import SamplingParams, SpecError, process, verify

from .conftest import chi2_pvalue

V = 6


def test_greedy_prefix_and_bonus() -> None:
    logits = torch.zeros(4, V)
    for i, t in enumerate([3, 1, 4, 5]):
        logits[i, t] = 1.0
    g = SamplingParams()
    assert verify((3, 1, 4), logits, g) == (verify((3, 1, 4), logits, g).__class__(3, 5))
    v = verify((3, 2, 4), logits, g)
    assert (v.accepted, v.token) == (1, 1)
    v = verify((0, 1, 4), logits, g)
    assert (v.accepted, v.token) == (0, 3)
    v = verify((), logits[:1], g)
    assert (v.accepted, v.token) == (0, 3)
    with pytest.raises(SpecError):
        verify((1, 2), logits, g)


def _first_token_counts(p_logits, q_probs, report_q, params, n, seed, deterministic=False):
    """Draft 2 tokens from q (rows 0, 1) and verify; count the first emitted token."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.zeros(V)
    for _ in range(n):
        d = tuple(int(torch.multinomial(q_probs[i], 1, generator=g)) for i in range(2))
        v = verify(d, p_logits, params, None if deterministic else report_q, g)
        first = d[0] if v.accepted >= 1 else v.token
        counts[first] += 1
    return counts


@pytest.mark.parametrize(
    "params",
    [SamplingParams(temperature=1.0), SamplingParams(temperature=0.7, top_k=4), SamplingParams(1.3, 0, 0.8)],
)
def test_sampling_is_exact_and_wrong_q_fails(params: SamplingParams) -> None:
    gen = torch.Generator().manual_seed(1)
    p_logits = torch.randn(3, V, generator=gen) * 1.5  # [k + 1, V]
    p = process(p_logits, params)
    q = process(torch.randn(2, V, generator=gen) * 1.5, params)  # the draft's processed distribution
    n = 1500
    good = _first_token_counts(p_logits, q, q, params, n, seed=2)
    assert chi2_pvalue(good, p[0]) > 1e-3
    # the same draws verified with a wrong q (uniform over the support) must fail the same test
    wrong = torch.where(q > 0, 1.0, 0.0)
    wrong = wrong / wrong.sum(-1, keepdim=True)
    bad = _first_token_counts(p_logits, q, wrong, params, n, seed=2)
    assert chi2_pvalue(bad, p[0]) < 1e-6


def test_deterministic_drafter_one_hot_q_is_exact() -> None:
    params = SamplingParams(temperature=1.0)
    gen = torch.Generator().manual_seed(3)
    p_logits = torch.randn(3, V, generator=gen)
    p = process(p_logits, params)
    fixed = torch.zeros(2, V)
    fixed[0, 2] = fixed[1, 4] = 1.0  # a lookup drafter always proposes (2, 4)
    counts = _first_token_counts(p_logits, fixed, None, params, 1500, seed=4, deterministic=True)
    assert chi2_pvalue(counts, p[0]) > 1e-3
    # treating the deterministic draft as if it had been sampled from p is wrong: always accepted
    bad = _first_token_counts(p_logits, fixed, p[:2].clone(), params, 1500, seed=4)
    assert chi2_pvalue(bad, p[0]) < 1e-6


def test_process_top_k_top_p() -> None:
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0, 3.0, -1.0]])
    k = process(logits, SamplingParams(temperature=1.0, top_k=2))
    assert (k[0] > 0).tolist() == [False, False, False, True, True, False]
    p = process(logits, SamplingParams(temperature=1.0, top_p=0.5))
    assert (p[0] > 0).sum() == 2 and torch.isclose(p.sum(), torch.tensor(1.0))
    one = process(logits, SamplingParams(temperature=1.0, top_p=1e-6))
    assert (one[0] > 0).sum() == 1
    greedy = process(logits, SamplingParams())
    assert greedy[0].tolist() == [0, 0, 0, 1, 0, 0]
