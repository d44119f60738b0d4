"""StreamCache: the bounded KV cache of a streaming vision-language model (StreamingVLM layout).

Owns pre-allocated K/V buffers for every layer (`[L, B, H_kv, C, D]`, GQA-aware: only KV heads are
stored), an integer position table (`[A, C]`, A = 1 for 1-D RoPE, 3 for M-RoPE t/h/w) with a
next-position counter, and a segment table (system prompt, text, text memory, vision chunks, user and
assistant turns; pinned flag; timestamp; kept-token mask). Tokens are stored contiguously in append
order, so the valid prefix `[:length]` of each buffer is exactly what attention reads: no concatenated
copy per step.

Verbs: `append` (register a chunk, reserve its rows, return its position ids; the model's forward then
writes the rows through the Hugging Face adapter in `streamrt.cache.hf`), `evict` (apply the
retention windows), `rollback` (a pointer move), `snapshot` / `restore`, `positions_for` /
`vision_positions_for`, `memory`. Eviction removes whole segments, compacts the survivors' rows and,
under the compact/master position policies, rotates them back by the evicted width with the RoPE
shift kernel so positions stay contiguous.

Does not know any model: a `CacheSpec` gives the geometry and rotary frequencies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from streamrt.cache.policy import (
    CompactPositions,
    GapPositions,
    MasterPositions,
    PositionPolicy,
    RetentionPolicy,
)
from streamrt.cache.types import TEXT_KINDS, CacheError, CacheSpec, MemoryReport, Segment, SegmentKind
from streamrt.kernels.rope_shift import rope_shift_


@dataclass(frozen=True, slots=True)
class StreamCacheConfig:
    """How big the cache is and how it behaves."""

    capacity: int = 4096
    """Token rows pre-allocated per layer; the cache never holds more."""
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    """What to keep (sinks, text window, vision chunks)."""
    positions: PositionPolicy = field(default_factory=CompactPositions)
    """What happens to positions on eviction: compact (default), gap (oracle) or master."""


@dataclass(frozen=True, slots=True)
class CacheSnapshot:
    """A full copy of a cache's valid state; `StreamCache.restore` puts it back."""

    keys: torch.Tensor  # [L, B, H, n, D]
    values: torch.Tensor  # [L, B, H, n, D]
    master: torch.Tensor | None  # [L, B, H, n, D] (master policy)
    pos: torch.Tensor  # [A, n]
    orig_pos: torch.Tensor  # [A, n]
    token_index: torch.Tensor  # [n]
    next_token: int
    segments: tuple[Segment, ...]
    next_position: int
    next_id: int
    evictions: int
    evicted_tokens: int


class StreamCache:
    """Bounded streaming KV cache with a segment table and a position table (see module docstring)."""

    def __init__(
        self,
        spec: CacheSpec,
        config: StreamCacheConfig | None = None,
        *,
        batch_size: int = 1,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        self.spec = spec
        self.config = config or StreamCacheConfig()
        cap = self.config.capacity
        shape = (spec.num_layers, batch_size, spec.num_kv_heads, cap, spec.head_dim)
        # Allocation: once, here; every later write is in place.
        self.k = torch.zeros(shape, dtype=dtype, device=device)  # [L, B, H, C, D]
        self.v = torch.zeros(shape, dtype=dtype, device=device)  # [L, B, H, C, D]
        self.master = (
            torch.zeros(shape, dtype=dtype, device=device)
            if isinstance(self.config.positions, MasterPositions)
            else None
        )  # [L, B, H, C, D] keys as they arrived, rotated at orig_pos
        self.pos = torch.zeros(spec.axes, cap, dtype=torch.long, device=device)  # [A, C] current positions
        self.orig_pos = torch.zeros_like(self.pos)  # [A, C] positions the keys were computed at
        self.token_index = torch.zeros(cap, dtype=torch.long, device=device)  # [C] arrival index per row
        self._next_token = 0
        self.inv_freq = spec.inv_freq.to(device=device, dtype=torch.float32)
        self._segments: list[Segment] = []
        self._next_id = 0
        self._next_position = 0
        self._pending: tuple[int, int] | None = None  # (start row, layers still to write)
        self._speculating = False
        self.evictions = 0
        self.evicted_tokens = 0

    # ---- state ---------------------------------------------------------------------------------
    @property
    def length(self) -> int:
        """Rows in use (including a reserved chunk the model has not written yet)."""
        return self._segments[-1].end if self._segments else 0

    @property
    def next_position(self) -> int:
        """First position (temporal axis) of the next chunk."""
        return self._next_position

    @property
    def segments(self) -> tuple[Segment, ...]:
        return tuple(self._segments)

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    def keys(self, layer: int) -> torch.Tensor:
        """Valid keys of one layer, a view: [B, H, length, D]."""
        return self.k[layer, :, :, : self.length]

    def values(self, layer: int) -> torch.Tensor:
        """Valid values of one layer, a view: [B, H, length, D]."""
        return self.v[layer, :, :, : self.length]

    def positions(self) -> torch.Tensor:
        """Current positions of the valid rows, a view: [A, length]."""
        return self.pos[:, : self.length]

    def arrival_index(self) -> torch.Tensor:
        """Stream-global arrival index of the token in each valid row (0 = first token ever
        appended), a view: [length]. Survives compaction; maps rows back to the stream."""
        return self.token_index[: self.length]

    # ---- positions -----------------------------------------------------------------------------
    def positions_for(self, n: int) -> torch.Tensor:
        """Positions of `n` text tokens appended next: [A, n] (every axis equal, as in M-RoPE text)."""
        p = torch.arange(self._next_position, self._next_position + n, device=self.pos.device)
        return p.expand(self.spec.axes, n).clone()

    def vision_positions_for(
        self, grid_thw: tuple[int, int, int], time_interval: float = 1.0
    ) -> tuple[torch.Tensor, int]:
        """Positions of a vision chunk appended next and the span it occupies.

        grid_thw is in LLM tokens (after spatial merging). M-RoPE: t = start + floor(i_t * interval),
        h = start + i_h, w = start + i_w, span max(h, w) (transformers 5.x `get_rope_index`); 1-D
        RoPE: consecutive positions, span t*h*w. Returns (positions [A, t*h*w], span).
        """
        t, h, w = grid_thw
        start = self._next_position
        dev = self.pos.device
        if self.spec.axes == 1:
            return self.positions_for(t * h * w), t * h * w
        tt = (torch.arange(t, device=dev) * time_interval).long() + start
        hh = torch.arange(h, device=dev) + start
        ww = torch.arange(w, device=dev) + start
        grid = torch.meshgrid(tt, hh, ww, indexing="ij")
        return torch.stack(grid).reshape(3, -1), max(h, w)

    def model_position_ids(self, positions: torch.Tensor) -> torch.Tensor:
        """[A, n] -> what a model's forward takes: [B, n] for 1-D RoPE, [3, B, n] for M-RoPE."""
        b = self.batch_size
        if self.spec.axes == 1:
            return positions[0].expand(b, -1)
        return positions[:, None, :].expand(3, b, -1)

    # ---- verbs ---------------------------------------------------------------------------------
    def append(
        self,
        kind: SegmentKind,
        n: int | None = None,
        *,
        positions: torch.Tensor | None = None,
        span: int | None = None,
        timestamp: float | None = None,
        kept: torch.Tensor | None = None,
        pinned: bool | None = None,
        extend: bool = False,
    ) -> torch.Tensor:
        """Register a chunk of `n` tokens, reserve its rows, and return its model position ids.

        Text: give `n` (positions follow the counter). Vision: give `positions` and `span` from
        `vision_positions_for` called just before (after token drop, the kept columns of them and the
        full span). First evicts by the retention policy (whole segments, never during a
        speculation) so the chunk fits; if that compacts positions, the given positions are re-based
        by the same shift, so always use the returned position ids. The next model forward with the
        HF adapter writes the chunk's K/V into the rows. `extend=True` grows the last segment when it
        is text of the same kind (a decode loop: one segment per turn, not per token); that segment
        is then protected from this append's eviction. Old `assistant` turns become `memory` when a
        chunk of another kind arrives (policy flag). Returns [B, n] (1-D RoPE) or [3, B, n] (M-RoPE).
        """
        if self._pending is not None:
            raise CacheError("E_CACHE_PENDING", "the previous chunk was appended but its forward did not run")
        if positions is None:
            if n is None:
                raise CacheError("E_CACHE_ARGS", "append needs n or positions")
            positions = self.positions_for(n)
            span = n if span is None else span
        positions = positions.to(device=self.pos.device, dtype=torch.long)
        if positions.ndim != 2 or positions.shape[0] != self.spec.axes:
            raise CacheError(
                "E_CACHE_ARGS", f"positions must be [{self.spec.axes}, n], got {tuple(positions.shape)}"
            )
        n = positions.shape[1]
        if n == 0:
            raise CacheError("E_CACHE_ARGS", "empty chunk")
        if int(positions.min()) < self._next_position:  # host sync: one scalar per chunk
            raise CacheError(
                "E_CACHE_ARGS",
                f"positions start at {int(positions.min())}, before the next position {self._next_position}: "
                "compute them with positions_for / vision_positions_for just before append",
            )
        if span is None:
            span = int(positions.max()) + 1 - self._next_position
        if span < 1:
            raise CacheError("E_CACHE_ARGS", f"a chunk must occupy at least one position, span is {span}")
        if self._speculating:
            if self.length + n > self.config.capacity:
                raise CacheError(
                    "E_CACHE_FULL", "no room for a speculative chunk; evictions wait for the rollback"
                )
        last = self._segments[-1] if self._segments else None
        grow = extend and last is not None and last.kind == kind and kind in TEXT_KINDS and not last.pinned
        if not self._speculating:
            before = self._next_position
            if grow:
                assert last is not None
                plan = self.config.retention.plan(
                    self._segments[:-1], n + last.length, kind, self.config.capacity
                )
            else:
                plan = self.config.retention.plan(self._segments, n, kind, self.config.capacity)
            self._evict_ids(plan)
            positions = positions + (self._next_position - before)  # re-based if compaction moved the counter
            if self.config.retention.assistant_to_memory and kind != "assistant":
                self._segments = [
                    dataclasses.replace(s, kind="memory") if s.kind == "assistant" else s
                    for s in self._segments
                ]
        start = self.length
        self.pos[:, start : start + n] = positions
        self.orig_pos[:, start : start + n] = positions
        self.token_index[start : start + n] = torch.arange(self._next_token, self._next_token + n)
        self._next_token += n
        if grow:
            last = self._segments[-1]
            self._segments[-1] = dataclasses.replace(
                last, length=last.length + n, pos_end=last.pos_end + span
            )
            self._next_position += span
            self._pending = (start, self.spec.num_layers)
            return self.model_position_ids(positions)
        if pinned is None:
            pinned_tokens = sum(s.length for s in self._segments if s.pinned)
            pinned = self.config.retention.pin_new(kind, pinned_tokens) and all(
                s.pinned for s in self._segments
            )
        seg = Segment(
            id=self._next_id,
            kind=kind,
            start=start,
            length=n,
            pos_start=self._next_position,
            pos_end=self._next_position + span,
            pinned=pinned,
            timestamp=timestamp,
            kept=kept,
        )
        self._segments.append(seg)
        self._next_id += 1
        self._next_position += span
        self._pending = (start, self.spec.num_layers)
        return self.model_position_ids(positions)

    def split_tokens(self) -> None:
        """Re-register the last segment, text of n tokens, as n one-token segments: the table plain
        decoding (one token per forward) builds, with its ids, positions and pinning. Nothing is
        written (rows keep their K/V, positions and arrival indices). For a speculation's kept rows
        after `rollback`: it saves re-appending each row. Pinning follows `pin_new` token by token
        (no relabelling: plain decoding relabels only when a kind other than `assistant` arrives)."""
        if self._pending is not None:
            raise CacheError("E_CACHE_PENDING", "split while a chunk's forward is pending")
        if not self._segments or self._segments[-1].length == 1:
            return
        last = self._segments[-1]
        if last.kind not in TEXT_KINDS or last.pos_end - last.pos_start != last.length:
            raise CacheError("E_CACHE_ARGS", f"segment {last.id} is not text with one position per token")
        head = self._segments[:-1]
        pinned_tokens = sum(s.length for s in head if s.pinned)
        all_pinned = all(s.pinned for s in head)
        for i in range(last.length):
            pin = all_pinned and self.config.retention.pin_new(last.kind, pinned_tokens)
            head.append(
                dataclasses.replace(
                    last,
                    id=last.id + i,
                    start=last.start + i,
                    length=1,
                    pos_start=last.pos_start + i,
                    pos_end=last.pos_start + i + 1,
                    pinned=pin,
                )  # fmt: skip
            )
            pinned_tokens += pin
            all_pinned = pin
        self._segments = head
        self._next_id = last.id + last.length

    def evict(self) -> int:
        """Apply the retention windows now (whole segments only); returns the tokens evicted."""
        before = self.evicted_tokens
        self._evict_ids(self.config.retention.plan(self._segments, 0, None, self.config.capacity))
        return self.evicted_tokens - before

    def begin_speculation(self) -> int:
        """Open a speculation: evictions are refused until `rollback` or `end_speculation`. Returns
        the length to roll back to."""
        self._speculating = True
        return self.length

    def end_speculation(self) -> None:
        """Close a speculation whose tokens are all kept."""
        self._speculating = False

    def rollback(self, to_length: int) -> None:
        """Drop every row at or after `to_length`: a pointer move, no tensor is written.

        A text-like segment may be cut (speculative tokens); a vision chunk may not (E_CACHE_SPLIT).
        Ends any open speculation; a pending chunk (appended, forward not run or failed) is always
        dropped, whatever `to_length`.
        """
        if not 0 <= to_length <= self.length:
            raise CacheError("E_CACHE_ROLLBACK", f"cannot roll back to {to_length}; length is {self.length}")
        if self._pending is not None:
            to_length = min(to_length, self._pending[0])
        # segments are in storage order: walk back from the end over the dropped ones only (a
        # speculation drops one segment; a scan of the whole table cost 0.4 ms at 2800 segments)
        segs = self._segments
        i = len(segs)
        while i > 0 and segs[i - 1].start >= to_length:
            i -= 1
        first_dropped = segs[i] if i < len(segs) else None
        keep = segs[:i]
        if keep and keep[-1].end > to_length:  # the one segment the cut falls inside
            s = keep[-1]
            if s.kind == "vision":
                raise CacheError("E_CACHE_SPLIT", f"rollback to {to_length} would split vision chunk {s.id}")
            n = to_length - s.start
            keep[-1] = dataclasses.replace(s, length=n, pos_end=s.pos_start + n)
        if keep:
            self._next_position = keep[-1].pos_end
        elif first_dropped is not None:
            self._next_position = first_dropped.pos_start
        if to_length < self.length:
            self._next_token = int(self.token_index[to_length])  # host sync: one scalar per rollback
        self._segments = keep
        self._pending = None
        self._speculating = False

    def snapshot(self) -> CacheSnapshot:
        """Copy the valid state (allocates copies of the used rows)."""
        if self._pending is not None:
            raise CacheError("E_CACHE_PENDING", "snapshot while a chunk's forward is pending")
        n = self.length
        return CacheSnapshot(
            keys=self.k[..., :n, :].clone(),
            values=self.v[..., :n, :].clone(),
            master=None if self.master is None else self.master[..., :n, :].clone(),
            pos=self.pos[:, :n].clone(),
            orig_pos=self.orig_pos[:, :n].clone(),
            token_index=self.token_index[:n].clone(),
            next_token=self._next_token,
            segments=tuple(self._segments),
            next_position=self._next_position,
            next_id=self._next_id,
            evictions=self.evictions,
            evicted_tokens=self.evicted_tokens,
        )

    def restore(self, snap: CacheSnapshot) -> None:
        """Put a snapshot back (rows copied into the pre-allocated buffers)."""
        n = snap.pos.shape[1]
        self.k[..., :n, :] = snap.keys
        self.v[..., :n, :] = snap.values
        if self.master is not None and snap.master is not None:
            self.master[..., :n, :] = snap.master
        self.pos[:, :n] = snap.pos
        self.orig_pos[:, :n] = snap.orig_pos
        self.token_index[:n] = snap.token_index
        self._next_token = snap.next_token
        self._segments = list(snap.segments)
        self._next_position = snap.next_position
        self._next_id = snap.next_id
        self.evictions = snap.evictions
        self.evicted_tokens = snap.evicted_tokens
        self._pending = None
        self._speculating = False

    def memory(self) -> MemoryReport:
        """Sizes and counters (no tensor work)."""
        bufs = [self.k, self.v, self.pos, self.orig_pos, self.token_index] + (
            [self.master] if self.master is not None else []
        )
        row_bytes = sum(b.element_size() * b.numel() // self.config.capacity for b in bufs[:2])
        if self.master is not None:
            row_bytes += self.master.element_size() * self.master.numel() // self.config.capacity
        by_kind: dict[str, int] = {}
        for s in self._segments:
            by_kind[s.kind] = by_kind.get(s.kind, 0) + s.length
        return MemoryReport(
            capacity_tokens=self.config.capacity,
            used_tokens=self.length,
            allocated_bytes=sum(b.element_size() * b.numel() for b in bufs),
            used_bytes=row_bytes * self.length,
            tokens_by_kind=by_kind,
            segments=len(self._segments),
            pinned_tokens=sum(s.length for s in self._segments if s.pinned),
            evictions=self.evictions,
            evicted_tokens=self.evicted_tokens,
            next_position=self._next_position,
        )

    # ---- the model's side (called by the HF adapter) -------------------------------------------
    @property
    def past_length(self) -> int:
        """Rows before the chunk being written (what the model sees as its past)."""
        return self._pending[0] if self._pending is not None else self.length

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store one layer's K/V of the pending chunk and return that layer's valid rows.

        k, v: [B, H, n, D] (keys already rotated by the model). Returns views [B, H, length, D].
        """
        if self._pending is None:
            raise CacheError(
                "E_CACHE_NOT_APPENDED", "model forward without a chunk: call cache.append(...) first"
            )
        start, todo = self._pending
        n = k.shape[-2]
        if start + n != self.length:
            raise CacheError(
                "E_CACHE_ARGS", f"forward wrote {n} tokens, the appended chunk has {self.length - start}"
            )
        self.k[layer, :, :, start : start + n] = k
        self.v[layer, :, :, start : start + n] = v
        if self.master is not None:
            self.master[layer, :, :, start : start + n] = k
        self._pending = None if todo == 1 else (start, todo - 1)
        return self.keys(layer), self.values(layer)

    # ---- eviction ------------------------------------------------------------------------------
    def _evict_ids(self, ids: list[int]) -> None:
        if not ids:
            return
        if self._speculating:
            raise CacheError("E_CACHE_SPECULATING", "evictions are not allowed while a speculation is open")
        if self._pending is not None:
            raise CacheError("E_CACHE_PENDING", "evict while a chunk's forward is pending")
        gone = set(ids)
        if any(s.pinned for s in self._segments if s.id in gone):
            raise CacheError("E_CACHE_PINNED", "a pinned segment cannot be evicted")
        shifts = not isinstance(self.config.positions, GapPositions)
        first = min(s.start for s in self._segments if s.id in gone)
        old_len = self.length
        dev = self.pos.device
        # Per-row bookkeeping over [first, old_len): which rows stay, and each row's position delta
        # (minus the spans of the evicted segments before it). O(evicted) Python, O(rows) tensor work.
        keep = torch.ones(old_len - first, dtype=torch.bool, device=dev)
        shift = torch.zeros(old_len - first, dtype=torch.long, device=dev)
        survivors: list[Segment] = []
        cursor, delta = 0, 0
        for s in self._segments:
            if s.id in gone:
                self.evicted_tokens += s.length
                keep[s.start - first : s.end - first] = False
                if shifts:
                    delta -= s.span
                    shift[s.end - first :] -= s.span
                continue
            survivors.append(
                dataclasses.replace(s, start=cursor, pos_start=s.pos_start + delta, pos_end=s.pos_end + delta)
            )
            cursor += s.length
        self.evictions += 1
        self._segments = survivors
        self._next_position += delta
        end = cursor
        if end > first:
            idx = keep.nonzero().flatten() + first  # [m] old rows of the moved survivors
            d = shift[idx - first]  # [m] position delta of each
            # Allocation: index_select copies the moved rows once per eviction (not per step).
            for buf in (self.k, self.v, self.master):
                if buf is not None:
                    buf[..., first:end, :] = buf.index_select(3, idx)
            self.pos[:, first:end] = self.pos.index_select(1, idx) + d
            self.orig_pos[:, first:end] = self.orig_pos.index_select(1, idx)
            self.token_index[first:end] = self.token_index.index_select(0, idx)
            self._rotate(first, end, d)

    def _rotate(self, first: int, end: int, d: torch.Tensor) -> None:
        """Bring keys in rows [first, end) to their current positions (compact: rotate the current keys
        by this eviction's delta `d` [m]; master: rotate the arrival copy in one step)."""
        pol = self.config.positions
        if isinstance(pol, GapPositions):
            return
        sections = self.spec.mrope_section
        keys = self.k[..., first:end, :].flatten(0, 1)  # [L*B, H, m, D] view
        if isinstance(pol, MasterPositions):
            assert self.master is not None
            delta = self.pos[:, first:end] - self.orig_pos[:, first:end]  # [A, m]
            # Allocation: a working copy of the arrival keys, rotated once from the original.
            work = self.master[..., first:end, :].flatten(0, 1).clone()
            keys.copy_(rope_shift_(work, delta, self.inv_freq, sections))
        else:
            assert isinstance(pol, CompactPositions)
            rope_shift_(keys, d[None, :], self.inv_freq, sections)
