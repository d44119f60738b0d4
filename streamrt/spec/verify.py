"""The one verification core shared by every drafter: given the draft tokens, the target's logits at
each draft position and the draft's distribution q, decide how many drafts are accepted and which
token the target contributes after them.

Greedy: accept the longest prefix equal to the target's argmax, then emit the target's argmax at the
first mismatch (or the bonus argmax after the last draft). Sampling (Leviathan et al. 2023, Chen et
al. 2023): accept d_i with probability min(1, p(d_i) / q(d_i)); on the first rejection draw from
normalise(max(0, p - q)); when every draft is accepted, draw the bonus token from p at position k+1.
Deterministic drafters pass q = None, meaning one-hot on each draft token (then acceptance is with
probability p(d_i) and the residual is p with d_i removed).

Owns nothing; knows neither models nor caches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from streamrt.spec.sampling import draw, process
from streamrt.spec.types import SamplingParams, SpecError


@dataclass(frozen=True, slots=True)
class Verdict:
    """Outcome of verifying one round."""

    accepted: int
    """Drafts accepted (0..k)."""
    token: int
    """The target's token after the accepted drafts (correction or bonus)."""


def verify(
    draft: tuple[int, ...],
    target_logits: torch.Tensor,
    params: SamplingParams,
    q: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Verdict:
    """Verify `draft` (k tokens) against target_logits [k + 1, V] (row i = the target's logits for the
    token at draft position i; row k is the bonus position). q: [k, V] processed draft distributions,
    or None for a deterministic drafter."""
    k = len(draft)
    if target_logits.shape[0] != k + 1:
        raise SpecError("E_SPEC_SHAPE", f"need {k + 1} rows of target logits, got {target_logits.shape[0]}")
    if params.greedy:
        return _verify_greedy(draft, target_logits)
    if q is not None and q.shape != (k, target_logits.shape[-1]):
        raise SpecError("E_SPEC_SHAPE", f"q must be [{k}, {target_logits.shape[-1]}], got {tuple(q.shape)}")
    return _verify_sampling(draft, process(target_logits, params), q, generator)


def _verify_greedy(draft: tuple[int, ...], logits: torch.Tensor) -> Verdict:
    # logits: [k + 1, V]
    best = logits.argmax(-1).tolist()  # host sync: k + 1 ints, once per round
    n = 0
    while n < len(draft) and draft[n] == best[n]:
        n += 1
    return Verdict(n, best[n])


def _verify_sampling(
    draft: tuple[int, ...], p: torch.Tensor, q: torch.Tensor | None, generator: torch.Generator | None
) -> Verdict:
    # p: [k + 1, V] processed target probabilities; q: [k, V] or None (one-hot)
    k = len(draft)
    if k == 0:
        return Verdict(0, draw(p[0], generator))
    idx = torch.tensor(draft)
    rows = torch.arange(k)
    p_d = p[rows, idx]  # [k]
    q_d = q[rows, idx] if q is not None else torch.ones(k)  # [k]
    u = torch.rand(k, generator=generator, dtype=torch.float32)  # [k] one uniform per draft
    # accept d_i iff u_i * q(d_i) <= p(d_i)  (== u_i <= min(1, p/q), and q(d_i) > 0 since d_i ~ q)
    ok = (u * q_d <= p_d).tolist()  # host sync: k bools, once per round
    n = 0
    while n < k and ok[n]:
        n += 1
    if n == k:
        return Verdict(k, draw(p[k], generator))
    if q is None:
        residual = p[n].clone()
        residual[draft[n]] = 0.0
    else:
        residual = (p[n] - q[n]).clamp_min(0.0)
    total = residual.sum()
    if float(total) <= 0.0:  # p == q at this row: rejection has probability 0, kept for safety
        residual = p[n]
    return Verdict(n, draw(residual / residual.sum(), generator))
