"""Adaptive draft length: per drafter, the measured per-token acceptance; with the target's measured
verify-cost curve and the drafter's measured cost per token, the draft length that maximises expected
tokens per second, and which drafter to ask first.

Model: drafts are accepted independently with probability a, so a round of k drafts emits
E(k) = (1 - a^(k+1)) / (1 - a) tokens and costs verify(k + 1) + k * draft_per_token seconds. A plain
step emits 1 token for verify(1). Owns the acceptance estimates; knows neither models nor caches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from streamrt.spec.types import SpecConfig


@dataclass(slots=True)
class Acceptance:
    """EMA estimate of the per-token acceptance of one drafter (truncated-geometric MLE)."""

    accepted: float
    rejected: float

    @property
    def rate(self) -> float:
        return min(self.accepted / (self.accepted + self.rejected), 0.99)

    def update(self, drafted: int, accepted: int, decay: float) -> None:
        self.accepted = decay * self.accepted + accepted
        self.rejected = decay * self.rejected + (1.0 if accepted < drafted else 0.0)


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
            a = self.config.acceptance_prior
            self.acceptance[name] = Acceptance(a * 4.0, (1.0 - a) * 4.0)  # prior worth ~4 rounds
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
        a = self._acc(name).rate
        best = Plan(0, self.plain_rate())
        for k in range(cfg.min_draft, hi + 1):
            tokens = (1.0 - a ** (k + 1)) / (1.0 - a)
            rate = tokens / (self.verify_cost(k + 1) + k * draft_per_token)
            if rate > best.rate:
                best = Plan(k, rate)
        return best

    def observe(self, name: str, drafted: int, accepted: int) -> None:
        if drafted:
            self._acc(name).update(drafted, accepted, self.config.acceptance_decay)
