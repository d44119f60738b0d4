"""The target model as speculative decoding sees it: a Hugging Face decoder (or the language model of
a VLM) whose whole context lives in a `StreamCache`, fed text tokens and returning logits.

Owns the model reference, the StreamCache with its `past_key_values` adapter, and the measured
verify-cost curve (seconds of one target forward of n = 1..N tokens at the current context). Knows
how many tokens can be appended before the cache's retention policy would evict (speculation never
spans an eviction); does not know drafters or acceptance rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from streamrt.cache import CacheError, HFStreamCache, SegmentKind, StreamCache, use_gqa_attention
from streamrt.spec.drafter import cost_clock
from streamrt.spec.types import SpecError

ForwardText = Callable[[HFStreamCache, Sequence[int], SegmentKind], torch.Tensor]
"""(cache, ids [n], kind) -> logits [n, V]: appends ids as one segment (a VLM adapter's `forward_text`)."""


class Target:
    """A target model bound to its StreamCache (the cache holds the context; see module docstring).

    `forward_text` overrides how text enters the model (a VLM adapter's `forward_text`); by default
    the ids are embedded with the model's input embeddings and run with the cache's position ids.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        cache: StreamCache,
        hf_cache: HFStreamCache,
        *,
        kind: SegmentKind = "assistant",
        forward_text: ForwardText | None = None,
    ) -> None:
        self.model = model
        self.cache = cache
        self.hf = hf_cache
        self.kind: SegmentKind = kind
        self.forward_text = forward_text
        if forward_text is None:
            use_gqa_attention(model)  # verify forwards read the cache's K/V heads without copies
        self.embed = model.get_input_embeddings()
        self.clock = cost_clock(cache.k.device)
        """The clock verify costs are measured with (`streamrt.spec.drafter.cost_clock`)."""
        self.cost_curve: dict[int, float] = {}
        """n tokens -> measured seconds of one forward (filled by `measure_costs`, refined by `observe_cost`)."""

    @classmethod
    def for_adapter(cls, adapter: object, hf_cache: HFStreamCache) -> Target:
        """A target over a VLM adapter (`streamrt.models.vlm.VLMAdapter`) and one of its caches."""
        fwd = adapter.forward_text  # type: ignore[attr-defined]
        return cls(
            adapter.model, hf_cache.store, hf_cache, forward_text=lambda c, ids, kind: fwd(c, ids, kind)
        )  # type: ignore[attr-defined]

    @property
    def length(self) -> int:
        return self.cache.length

    @torch.no_grad()
    def forward(self, tokens: list[int] | tuple[int, ...]) -> torch.Tensor:
        """Append `tokens` (n) to the cache as one segment and return their logits [n, V] (row i = the
        distribution of the token after tokens[i])."""
        if self.forward_text is not None:
            return self.forward_text(self.hf, list(tokens), self.kind)
        pos = self.cache.append(self.kind, len(tokens))  # [B, n] or [3, B, n]
        ids = torch.tensor([list(tokens)], device=self.cache.k.device)  # [1, n]
        x = self.embed(ids)  # [1, n, hidden]
        out = self.model(inputs_embeds=x, position_ids=pos, past_key_values=self.hf, use_cache=True)
        return out.logits[0]  # [n, V]

    def settle(self, mark: int, rows: int) -> None:
        """End a speculation opened at length `mark`: keep its first `rows` rows, drop the rest (a
        pointer move), and register the kept rows as `rows` one-token segments, the segment table
        plain decoding (one token per forward) builds, so later whole-segment evictions match it.

        Assistant rows are split in place (`StreamCache.split_tokens`: ids, positions, pinning as
        plain decoding gives them; nothing written). Other kinds re-append each kept row (plain
        decoding relabels old assistant turns on each append) and hand the cache the K/V already in
        that row (one row per layer written onto itself)."""
        cache = self.cache
        if self.kind == "assistant":  # appending assistant text plans no relabelling: split in place
            cache.rollback(mark + rows)
            if rows > 1:  # the kept rows are the last segment (rows 0, 1: nothing to split)
                cache.split_tokens()
            return
        # Other kinds relabel old assistant turns as plain decoding appends each token: re-append.
        # The round never spans an eviction (`room`), so plain decoding's eviction plan before each
        # of these appends is empty.
        cache.rollback(mark + min(rows, 1))
        for row in range(mark + 1, mark + rows):
            cache.append(self.kind, 1)
            for layer in range(cache.spec.num_layers):
                # k, v: [B, H, 1, D] views of the row being registered
                cache.write(layer, cache.k[layer, :, :, row : row + 1], cache.v[layer, :, :, row : row + 1])

    def room(self, cap: int | None = None) -> int:
        """How many tokens (at most `cap`) plain decoding could append, one at a time, before the
        retention policy evicts anything or the cache is full. A speculation round appends at most
        this many. One eviction plan when `cap` tokens fit, a binary search otherwise."""
        cache = self.cache
        hi = cache.config.capacity - cache.length
        if cap is not None:
            hi = min(hi, cap)
        if not self._evicts(hi):
            return hi
        lo, hi = 0, hi - 1
        while lo < hi:  # largest n with an empty eviction plan (plans are monotone in n)
            mid = (lo + hi + 1) // 2
            if self._evicts(mid):
                hi = mid - 1
            else:
                lo = mid
        return lo

    def _evicts(self, n: int) -> bool:
        try:
            return bool(
                self.cache.config.retention.plan(
                    self.cache.segments, n, self.kind, self.cache.config.capacity
                )
            )
        except CacheError:
            return True

    @torch.no_grad()
    def measure_costs(self, max_tokens: int = 17, repeats: int = 5, token: int = 0) -> dict[int, float]:
        """Measure the verify-cost curve: seconds of one forward of n = 1..max_tokens tokens at the
        current context, each rolled back at once (the cache is left as it was). The fastest of
        `repeats` runs per n (load on a shared machine only ever adds time), made non-decreasing in n."""
        if self.room(max_tokens) < max_tokens:
            raise SpecError("E_SPEC_ROOM", f"need {max_tokens} free rows without eviction to measure costs")
        ids = [token] * max_tokens
        times: dict[int, list[float]] = {n: [] for n in range(1, max_tokens + 1)}
        self._timed(ids[:1])  # warm-up
        for _ in range(repeats):
            for n in times:
                times[n].append(self._timed(ids[:n]))
        best = 0.0
        for n, t in times.items():
            best = max(best, min(t))
            self.cost_curve[n] = best
        return dict(self.cost_curve)

    def _timed(self, ids: list[int]) -> float:
        mark = self.cache.begin_speculation()
        t0 = self.clock()
        self.forward(ids)
        dt = self.clock() - t0
        self.cache.rollback(mark)
        return dt

    def cost(self, n: int) -> float:
        """Seconds of one forward of n tokens (from the measured curve; linear beyond it)."""
        if not self.cost_curve:
            return 1.0 + 0.1 * (n - 1)  # prior until measured: small batches cost about one forward
        if n in self.cost_curve:
            return self.cost_curve[n]
        top = max(self.cost_curve)
        slope = (self.cost_curve[top] - self.cost_curve[1]) / max(top - 1, 1)
        return self.cost_curve[top] + slope * (n - top)

    def observe_cost(self, n: int, seconds: float, fall: float = 0.7, rise: float = 0.98) -> None:
        """Refine the curve with a measured forward of n tokens: an EMA that follows a faster forward
        quickly (factor `fall`) and a slower one slowly (`rise`). Load on a shared machine only ever
        adds time, in bursts; a symmetric average let one burst make long drafts look expensive and
        switch speculation off for many rounds. A lasting change (a longer context) still gets in.
        The curve stays non-decreasing in n: the new estimate bounds the shorter forwards from above
        and the longer ones from below, so a burst caught while measuring a length the planner then
        never picks is corrected all the same."""
        if n not in self.cost_curve:
            return
        old = self.cost_curve[n]
        keep = fall if seconds < old else rise
        new = self.cost_curve[n] = keep * old + (1 - keep) * seconds
        for m, c in self.cost_curve.items():
            if (m < n and c > new) or (m > n and c < new):
                self.cost_curve[m] = new
