"""Policies of the streaming VLM cache, as classes: what to keep (`RetentionPolicy`) and how positions
behave when something is evicted (`CompactPositions`, `GapPositions`, `MasterPositions`).

A retention policy only reads the segment table and answers two questions: should a new segment be
pinned, and which whole segments go before the next chunk. Position policies only name the
behaviour; `StreamCache` carries it out on its buffers. Neither knows about tensors of keys/values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from streamrt.cache.types import TEXT_KINDS, CacheError, Segment, SegmentKind


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """StreamingVLM-like retention: pinned sinks, a recent text window, the last K vision chunks.

    Evictions take whole segments only (a vision chunk is never split) and happen before a chunk is
    appended, never while a speculation is open (the cache enforces that).
    """

    sink_tokens: int = 16
    """Text tokens pinned at the start (system prompt + first turns, whole segments, at least this many)."""
    text_window: int = 512
    """Recent unpinned text tokens kept (text, memory, user, assistant turns together)."""
    text_slack: int = 0
    """Low-water mark: once text exceeds `text_window`, evict down to `text_window - text_slack`
    tokens. 0 evicts to the window exactly, so a full window evicts on every text token; a slack
    evicts once per `text_slack` tokens and leaves room for a speculation round (which never spans
    an eviction) between those evictions. Plain and speculative decoding share the policy, so they
    evict the same segments at the same tokens."""
    vision_chunks: int = 8
    """Most recent vision chunks kept."""
    assistant_to_memory: bool = True
    """Old assistant turns (all but the newest) are relabelled `memory` when a new chunk arrives."""

    def __post_init__(self) -> None:
        if not 0 <= self.text_slack <= self.text_window:
            raise CacheError(
                "E_CACHE_ARGS",
                f"text_slack must be within 0..text_window ({self.text_window}), got {self.text_slack}",
            )

    def pin_new(self, kind: SegmentKind, pinned_tokens: int) -> bool:
        """Whether a segment appended now is pinned: the system prompt always, and text segments until
        `sink_tokens` text tokens are pinned."""
        return kind == "system" or (kind in TEXT_KINDS and pinned_tokens < self.sink_tokens)

    def plan(
        self, segments: Sequence[Segment], incoming: int, incoming_kind: SegmentKind | None, capacity: int
    ) -> list[int]:
        """Ids of the segments to evict so the windows hold after `incoming` tokens of `incoming_kind`
        are appended, and so they fit (`incoming_kind=None`: only apply the windows).

        Order of rules: vision beyond the last `vision_chunks` (the incoming chunk counts), unpinned
        text beyond `text_window` tokens, down to `text_window - text_slack` (oldest first; incoming
        text counts), then the oldest unpinned
        segments of any kind while over capacity.
        Raises E_CACHE_FULL when even evicting every unpinned segment cannot make room.
        """
        gone: set[int] = set()
        vision = [s for s in segments if s.kind == "vision" and not s.pinned]
        keep_vision = self.vision_chunks - (incoming_kind == "vision")
        for s in vision[: max(0, len(vision) - keep_vision)]:
            gone.add(s.id)
        text = [s for s in segments if s.kind in TEXT_KINDS and not s.pinned]
        text_tokens = sum(s.length for s in text) + (incoming if incoming_kind in TEXT_KINDS else 0)
        if text_tokens > self.text_window:  # over the window: down to the low-water mark
            for s in text:
                if text_tokens <= self.text_window - self.text_slack:
                    break
                gone.add(s.id)
                text_tokens -= s.length
        used = sum(s.length for s in segments if s.id not in gone)
        for s in segments:
            if used + incoming <= capacity:
                break
            if not s.pinned and s.id not in gone:
                gone.add(s.id)
                used -= s.length
        if used + incoming > capacity:
            raise CacheError(
                "E_CACHE_FULL",
                f"{incoming} incoming tokens do not fit: {used} pinned/kept tokens, capacity {capacity}",
            )
        return [s.id for s in segments if s.id in gone]


@dataclass(frozen=True, slots=True)
class CompactPositions:
    """Default. Survivors after an evicted span are rotated back by its width (fp32 math), so positions
    stay contiguous and the model never sees positions beyond what it saw in training."""

    name: ClassVar[Literal["compact"]] = "compact"


@dataclass(frozen=True, slots=True)
class GapPositions:
    """Positions never change; evicted spans leave gaps and nothing is rotated. The oracle policy:
    equal to a full forward with the evicted span masked out. Positions grow without bound."""

    name: ClassVar[Literal["gap"]] = "gap"


@dataclass(frozen=True, slots=True)
class MasterPositions:
    """Like `compact`, but the keys as they arrived (rotated at their original positions) are kept in
    a second buffer and every re-indexing rotates from that copy in one step, so repeated evictions
    never accumulate rounding drift. Costs one more key buffer."""

    name: ClassVar[Literal["master"]] = "master"


PositionPolicy = CompactPositions | GapPositions | MasterPositions
