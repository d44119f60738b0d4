"""Adaptive draft length: per drafter, the measured acceptance at each draft position; with the
target's measured verify-cost curve and the drafter's measured cost per token, the draft length that
maximises expected tokens per second, and which drafter to ask first.

Model: draft i is accepted, given that drafts 1..i-1 were, with probability s_i, measured per
position (an EMA of how often a round that reached position i got past it). A round of k drafts
emits E(k) = 1 + sum_{j<=k} s_1 * ... * s_j tokens and costs verify(k + 1) + k * draft_per_token
seconds; a plain step emits 1 token for verify(1). Per-position rates capture what one per-token
rate cannot: a lookup drafter that either misses at once or copies a long run (s_1 low, later s_i
high) is worth drafting long whenever it drafts at all. Positions never reached take the rate of
the last reached one (the prior before any). Owns the acceptance estimates; knows neither models
nor caches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from streamrt.spec.types import SpecConfig

PRIOR_WEIGHT = 4.0
"""Rounds' worth of evidence the prior starts with at each position (it decays like measurements)."""


@dataclass(slots=True)
class Acceptance:
    """EMA estimates of the conditional acceptance s_i at each draft position i = 1, 2, ..."""

    prior: float
    passed: list[float] = field(default_factory=list)
    """passed[i]: rounds that accepted draft i + 1, given they reached it (EMA, prior included)."""
    reached: list[float] = field(default_factory=list)
    """reached[i]: rounds that drafted position i + 1 with drafts 1..i accepted (EMA, prior included)."""

    def rates(self, k: int) -> list[float]:
        """s_1..s_k (capped at 0.99); positions never reached repeat the last reached one's rate."""
        out = [min(p / r, 0.99) for p, r in zip(self.passed[:k], self.reached[:k], strict=True)]
        return out + [out[-1] if out else min(self.prior, 0.99)] * (k - len(out))

    def update(self, drafted: int, accepted: int, decay: float) -> None:
        reach = min(accepted + 1, drafted)  # positions 1..accepted passed, accepted + 1 failed
        for i in range(len(self.reached)):
            self.reached[i] *= decay
            self.passed[i] *= decay
        while len(self.reached) < reach:  # first time this far: start from the prior
            self.reached.append(PRIOR_WEIGHT)
            self.passed.append(PRIOR_WEIGHT * self.prior)
        for i in range(reach):
            self.reached[i] += 1.0
            self.passed[i] += 1.0 if i < accepted else 0.0

    def idle(self, decay: float) -> None:
        """A round where this drafter was not asked: its counts drift back towards the prior, so a
        drafter written off early (the session's text had nothing to look up yet) is tried again."""
        for i in range(len(self.reached)):
            self.reached[i] = decay * self.reached[i] + (1 - decay) * PRIOR_WEIGHT
            self.passed[i] = decay * self.passed[i] + (1 - decay) * PRIOR_WEIGHT * self.prior


@dataclass(frozen=True, slots=True)
class Plan:
    """What the planner chose for one drafter: draft length and expected tokens per second."""

    k: int
    rate: float


class Planner:
    """Chooses draft length (and ranks drafters) from acceptance and costs (see module docstring)."""

    def __init__(self, config: SpecConfig, verify_cost: Callable[[int], float]) -> None:
        self.config = config
        self.verify_cost = verify_cost
        self.acceptance: dict[str, Acceptance] = {}

    def _acc(self, name: str) -> Acceptance:
        if name not in self.acceptance:
            self.acceptance[name] = Acceptance(self.config.acceptance_prior)
        return self.acceptance[name]

    def plain_rate(self) -> float:
        return 1.0 / self.verify_cost(1)

    def plan(self, name: str, draft_per_token: float, limit: int) -> Plan:
        """Best draft length in [min_draft, min(max_draft, limit)] for drafter `name` (k = 0 when no
        length beats plain decoding or the limit is below min_draft)."""
        cfg = self.config
        hi = min(cfg.max_draft, limit)
        if not cfg.adaptive:
            k = min(cfg.fixed_draft, hi)
            return Plan(k, 0.0) if k >= cfg.min_draft else Plan(0, self.plain_rate())
        best = Plan(0, self.plain_rate())
        tokens, survive = 1.0, 1.0
        for k, s in enumerate(self._acc(name).rates(hi), 1):
            survive *= s
            tokens += survive
            if k < cfg.min_draft:
                continue
            rate = tokens / (self.verify_cost(k + 1) + k * draft_per_token)
            if rate > best.rate:
                best = Plan(k, rate)
        return best

    def observe(self, name: str, drafted: int, accepted: int) -> None:
        if drafted:
            self._acc(name).update(drafted, accepted, self.config.acceptance_decay)

    def skip(self, name: str) -> None:
        """`name` was not asked this round (its plan was k = 0)."""
        self._acc(name).idle(self.config.idle_decay)
