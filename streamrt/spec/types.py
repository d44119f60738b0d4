"""Typed data of speculative decoding: sampling parameters, the decoder config, one drafter proposal,
per-round and per-call statistics, and the error type.

Owns no tensors beyond a proposal's draft distribution; knows nothing about models or caches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch


class SpecError(RuntimeError):
    """Misuse of the speculative decoder or a drafter; `code` is stable (E_SPEC_*)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How the next token is chosen. The same processing is applied to the target's distribution p and
    to the draft's q, so rejection sampling compares like with like."""

    temperature: float = 0.0
    """0 = greedy (argmax); > 0 divides the logits before the softmax."""
    top_k: int = 0
    """Keep the k most likely tokens (0 = all)."""
    top_p: float = 1.0
    """Keep the smallest set of most likely tokens whose mass reaches top_p (1.0 = all)."""

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def __post_init__(self) -> None:
        if self.temperature < 0 or self.top_k < 0 or not 0.0 < self.top_p <= 1.0:
            raise SpecError("E_SPEC_SAMPLING", f"invalid sampling parameters {self}")


@dataclass(frozen=True, slots=True)
class SpecConfig:
    """How the speculative decoder drafts and verifies."""

    max_draft: int = 12
    """Upper bound on draft tokens per round (the adaptive length never exceeds it). On CPU a forward
    of 13 tokens costs about 1.7x one of a single token (the built-in model), and commentary runs of
    accepted drafts are long: 12 lets the planner take them."""
    min_draft: int = 1
    """Lower bound on draft tokens per round when a drafter has a proposal."""
    adaptive: bool = True
    """Choose the draft length per round from measured acceptance and the verify-cost curve."""
    fixed_draft: int = 4
    """Draft length when `adaptive` is False."""
    acceptance_prior: float = 0.6
    """Acceptance per draft position assumed for a drafter before anything was measured."""
    acceptance_decay: float = 0.9
    """EMA factor of the measured acceptance per draft position (closer to 1 = slower to adapt)."""
    idle_decay: float = 0.97
    """Per round a drafter is not asked, its acceptance estimate moves this slowly back to the prior."""


@dataclass(frozen=True, slots=True)
class Proposal:
    """What a drafter proposes for one round."""

    tokens: tuple[int, ...]
    """Draft tokens d_1..d_k (may be empty: the drafter has nothing to offer)."""
    q: torch.Tensor | None = None
    """The processed distributions the tokens were sampled from, [k, V] fp32; None = deterministic
    (one-hot on each token)."""
    seconds: float = 0.0
    """Wall time the drafter spent producing it."""


@dataclass(slots=True)
class RoundStats:
    """Counters of one decode call (summed over rounds)."""

    tokens: int = 0
    """Tokens emitted."""
    rounds: int = 0
    """Target forwards (one per round; a plain step is a round with no draft)."""
    drafted: int = 0
    accepted: int = 0
    draft_seconds: float = 0.0
    verify_seconds: float = 0.0
    preempted: bool = False
    """True when the call stopped at its deadline before max_new_tokens / EOS."""
    by_drafter: dict[str, list[int]] = field(default_factory=dict)
    """drafter name -> [rounds, drafted, accepted]."""

    def add(self, other: RoundStats) -> None:
        """Accumulate another call's counters into these (`preempted`: any call was)."""
        self.tokens += other.tokens
        self.rounds += other.rounds
        self.drafted += other.drafted
        self.accepted += other.accepted
        self.draft_seconds += other.draft_seconds
        self.verify_seconds += other.verify_seconds
        self.preempted |= other.preempted
        for name, row in other.by_drafter.items():
            mine = self.by_drafter.setdefault(name, [0, 0, 0])
            for i, v in enumerate(row):
                mine[i] += v

    @property
    def mean_accepted(self) -> float:
        """Mean tokens emitted per target forward (accepted drafts + the target's own token)."""
        return self.tokens / self.rounds if self.rounds else 0.0

    @property
    def forwards_per_token(self) -> float:
        return self.rounds / self.tokens if self.tokens else 0.0

    @property
    def draft_share(self) -> float:
        total = self.draft_seconds + self.verify_seconds
        return self.draft_seconds / total if total else 0.0


StopReason = Literal["eos", "length", "deadline", "capacity"]


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """The output of one decode call."""

    tokens: tuple[int, ...]
    """Emitted tokens (the EOS token included when it stopped the call)."""
    stop: StopReason
    stats: RoundStats
