"""The speculative decode loop: one round = ask a drafter for k tokens, run one target forward over
[pending, d_1..d_k], verify, keep the accepted rows by moving the cache's length pointer back.

Owns the session `History`, the planner (acceptance per drafter, draft length) and the round loop.
With no drafters it is plain decoding through the same target path. Guarantees:
- lossless: greedy output equals plain greedy; sampled output has the target's distribution
  (`streamrt.spec.verify`);
- speculation never spans an eviction: a round appends at most `Target.room()` rows (what plain
  decoding could append before the retention policy evicts); when no room is left the round is a
  plain step, whose append evicts exactly as plain decoding would;
- pre-emptable: the deadline (a monotonic time or a callable returning True when expired) is checked
  between rounds, so a call stops within one round of it.

After a call the cache holds the context and every emitted token except the last one, which is the
decoder's `pending` token (fed by `commit_pending`, or forgotten by `drop_pending` when the caller
closes the turn itself). The segment table is plain decoding's too: kept rows are registered as
one-token segments (`Target.settle`), so later evictions match plain decoding's. `rounds` streams a
call round by round (a generator); `generate` runs it to the end. Does not know how the context got
into the cache (the engine prefills prompt and vision).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import torch

from streamrt.cache import CacheError
from streamrt.spec.adaptive import Planner
from streamrt.spec.drafter import Drafter, History
from streamrt.spec.sampling import choose
from streamrt.spec.target import Target
from streamrt.spec.types import (
    DecodeResult,
    Proposal,
    RoundStats,
    SamplingParams,
    SpecConfig,
    SpecError,
    StopReason,
)
from streamrt.spec.verify import verify

Deadline = float | Callable[[], bool] | None
"""A `time.monotonic()` instant, a callable returning True once expired, or None (no deadline)."""


def _expired(deadline: Deadline) -> bool:
    if deadline is None:
        return False
    if callable(deadline):
        return bool(deadline())
    return time.monotonic() >= deadline


class SpeculativeDecoder:
    """Lossless speculative decoding over a `Target` with any number of drafters (see module doc).

    Several drafters form a combiner: each round the planner ranks them by expected tokens per second
    (measured acceptance, verify-cost curve, drafting cost) and the best one with a proposal drafts.
    """

    def __init__(
        self,
        target: Target,
        drafters: Sequence[Drafter] = (),
        config: SpecConfig | None = None,
        history: History | None = None,
    ) -> None:
        self.target = target
        self.drafters = list(drafters)
        self.config = config or SpecConfig()
        self.history = history if history is not None else History()
        self.planner = Planner(self.config, target.cost)
        self.pending: int | None = None
        self.totals = RoundStats()
        """Counters of every call so far (a session's speculation report)."""
        self._rejected = 0

    def restart(self, history: Sequence[int] = ()) -> None:
        """Start over from another context (the caller restored or rebuilt the cache): replace the
        history, drop the pending token; measured acceptance and costs are kept."""
        h = self.history
        ids = [int(t) for t in history]
        keep = len(h.tokens) if h.start == 0 and ids[: len(h.tokens)] == h.tokens else 0
        if keep == 0:  # not a continuation of the current history: index it from scratch
            self.history = h = History(h.min_n, h.max_n, h.window)
        h.extend(ids[keep:])  # a continuation (a replay's next response): only the new tokens
        self.pending = None

    def observe(self, ids: Sequence[int]) -> None:
        """Add context text the model saw (prompt, question) to the history drafters read."""
        self.history.extend(list(ids))

    def commit_pending(self) -> torch.Tensor:
        """Feed the pending token into the cache; returns its logits [V]."""
        if self.pending is None:
            raise SpecError("E_SPEC_NO_PENDING", "no pending token")
        logits = self.target.forward([self.pending])[-1]
        self.pending = None
        return logits

    def drop_pending(self) -> int:
        """Forget the pending token (it never entered the cache: the caller ends the turn its own way
        or feeds it later); it leaves the history too. Returns it."""
        if self.pending is None:
            raise SpecError("E_SPEC_NO_PENDING", "no pending token")
        tok, self.pending = self.pending, None
        self.history.drop_last()
        return tok

    def generate(
        self,
        start: torch.Tensor | int,
        *,
        max_new_tokens: int,
        params: SamplingParams | None = None,
        eos: int | Sequence[int] | None = None,
        deadline: Deadline = None,
        generator: torch.Generator | None = None,
        on_round: Callable[[list[int], int], None] | None = None,
    ) -> DecodeResult:
        """Run `rounds` to the end. `on_round(tokens, rejected)` is called after every round with the
        tokens it emitted and how many drafts were rejected (stream text out from there)."""
        it = self.rounds(
            start,
            max_new_tokens=max_new_tokens,
            params=params,
            eos=eos,
            deadline=deadline,
            generator=generator,
        )
        while True:
            try:
                emitted = next(it)
            except StopIteration as done:
                return done.value
            if on_round is not None:
                on_round(emitted, self._rejected)

    def rounds(
        self,
        start: torch.Tensor | int,
        *,
        max_new_tokens: int,
        params: SamplingParams | None = None,
        eos: int | Sequence[int] | None = None,
        deadline: Deadline = None,
        generator: torch.Generator | None = None,
    ) -> Iterator[list[int]]:
        """Decode after a context; yields the tokens each round emits, returns the `DecodeResult`.

        `start` is either the next-token logits [V] after the context (the prefill's last row; the
        first token is chosen from them) or that first token itself, already chosen by the caller.
        The cache must hold the context (and nothing pending). The result holds the emitted tokens
        (the EOS included when it stopped the call), why it stopped, and the round statistics. The
        deadline is checked before every round (the first included), after the first token.
        """
        params = params or SamplingParams()
        eos_set = {eos} if isinstance(eos, int) else set(eos or ())
        stats = RoundStats()
        if self.pending is not None:
            raise SpecError("E_SPEC_PENDING", "a pending token is not in the cache: call commit_pending()")
        if (
            self.drafters
            and not self.target.cost_curve
            and self.target.room(self.config.max_draft + 1) > self.config.max_draft
        ):
            self.target.measure_costs(self.config.max_draft + 1)
        first = start if isinstance(start, int) else choose(start, params, generator)
        out: list[int] = [first]
        self.history.extend(out)
        self._rejected = 0
        yield list(out)
        stop: StopReason = "length"
        while True:
            if out[-1] in eos_set:
                stop = "eos"
                break
            if len(out) >= max_new_tokens:
                break
            if _expired(deadline):
                stop, stats.preempted = "deadline", True
                break
            # without drafters every round is a plain step: no room to plan (one eviction plan per token saved)
            limit = (
                self.target.room(min(self.config.max_draft + 1, max_new_tokens - len(out))) - 1
                if self.drafters
                else 0
            )
            try:
                emitted = self._round(out[-1], limit, params, eos_set, generator, stats)
            except CacheError as e:
                if e.code != "E_CACHE_FULL":
                    raise
                stop = "capacity"
                break
            out += emitted
            self.history.extend(emitted)
            yield emitted
        self.pending = out[-1]
        stats.tokens = len(out)
        self.totals.add(stats)
        return DecodeResult(tuple(out), stop, stats)

    def _round(
        self,
        pending: int,
        limit: int,
        params: SamplingParams,
        eos: set[int],
        generator: torch.Generator | None,
        stats: RoundStats,
    ) -> list[int]:
        """One target forward; returns the tokens it emits (1..k+1 with k <= limit), trimmed at EOS and
        at limit + 1. limit < 1: a plain step (its append may evict, exactly as plain decoding's)."""
        name, prop = self._draft(limit, params, generator)
        cut = next((i + 1 for i, tok in enumerate(prop.tokens) if tok in eos), len(prop.tokens))
        if cut < len(prop.tokens):  # decoding stops at a stop token: verifying drafts past it only costs
            prop = Proposal(prop.tokens[:cut], None if prop.q is None else prop.q[:cut], prop.seconds)
        k = len(prop.tokens)
        cache = self.target.cache
        mark = cache.begin_speculation() if k else cache.length
        t0 = self.target.clock()
        target_logits = self.target.forward([pending, *prop.tokens])  # [k + 1, V]
        verdict = verify(prop.tokens, target_logits, params, prop.q, generator)
        dt = self.target.clock() - t0
        emitted = [*prop.tokens[: verdict.accepted], verdict.token]
        self._rejected = k - verdict.accepted
        for i, tok in enumerate(emitted):
            if tok in eos:
                emitted = emitted[: i + 1]
                break
        if k:
            emitted = emitted[: limit + 1]
            # keep rows of pending + emitted[:-1]; the last emitted token becomes the next pending one
            self.target.settle(mark, len(emitted))  # pointer move; also ends the speculation
        self.target.observe_cost(k + 1, dt)
        stats.rounds += 1
        stats.verify_seconds += dt
        stats.draft_seconds += prop.seconds
        if name:
            self.planner.observe(name, k, verdict.accepted)
            stats.drafted += k
            stats.accepted += verdict.accepted
            row = stats.by_drafter.setdefault(name, [0, 0, 0])
            row[0] += 1
            row[1] += k
            row[2] += verdict.accepted
        return emitted

    def _draft(
        self, limit: int, params: SamplingParams, generator: torch.Generator | None
    ) -> tuple[str, Proposal]:
        """Ask drafters in order of expected gain; ('', empty) means a plain step."""
        if limit < self.config.min_draft:
            return "", Proposal(())
        plans = [(self.planner.plan(d.name, d.seconds_per_token, limit), d) for d in self.drafters]
        plans.sort(key=lambda pd: -pd[0].rate)
        spent = 0.0
        for i, (plan, d) in enumerate(plans):
            if plan.k == 0:  # plans with k > 0 rank first: from here on none beats plain decoding
                for _, idle in plans[i:]:
                    self.planner.skip(idle.name)
                break
            prop = d.propose(self.history, plan.k, params, generator)
            spent += prop.seconds
            if prop.tokens:
                return d.name, Proposal(prop.tokens, prop.q, spent)
        return "", Proposal((), None, spent)
