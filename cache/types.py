"""Typed data shared by the streaming caches: the model geometry a cache is built for (`CacheSpec`),
segment kinds and the segment table row (`Segment`), the memory report, and the cache error type.

Owns no tensors beyond the rotary frequencies in `CacheSpec`; knows nothing about Hugging Face (the
shim in `streamrt.cache.hf` builds a `CacheSpec` from a transformers config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

SegmentKind = Literal["system", "text", "memory", "vision", "user", "assistant"]
"""What a span of tokens is. `system`: the prompt (always pinned). `text`: plain text. `memory`: old
assistant turns kept as text memory. `vision`: one chunk of visual tokens (never split). `user` /
`assistant`: conversation turns."""

TEXT_KINDS: frozenset[str] = frozenset({"system", "text", "memory", "user", "assistant"})


class CacheError(RuntimeError):
    """A cache misuse or an impossible request; `code` is stable (E_CACHE_*)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True, slots=True)
class CacheSpec:
    """The attention geometry of one model, as a cache needs it."""

    num_layers: int
    """Decoder layers holding a KV cache."""
    num_kv_heads: int
    """Key/value heads (GQA: fewer than query heads)."""
    head_dim: int
    """Per-head dimension of keys and values."""
    inv_freq: torch.Tensor
    """Rotary inverse frequencies, fp32 `[head_dim // 2]` (rotate-half layout)."""
    mrope_section: tuple[int, ...] | None = None
    """M-RoPE sections (t, h, w) in frequency pairs summing to head_dim // 2; None for 1-D RoPE."""

    @property
    def axes(self) -> int:
        """Position axes: 3 for M-RoPE (t, h, w), 1 for 1-D RoPE."""
        return 3 if self.mrope_section is not None else 1

    def __post_init__(self) -> None:
        if self.inv_freq.shape != (self.head_dim // 2,):
            raise CacheError(
                "E_CACHE_SPEC",
                f"inv_freq has shape {tuple(self.inv_freq.shape)}, want ({self.head_dim // 2},)",
            )
        if self.mrope_section is not None and sum(self.mrope_section) != self.head_dim // 2:
            raise CacheError(
                "E_CACHE_SPEC",
                f"mrope_section {self.mrope_section} must sum to head_dim/2 = {self.head_dim // 2}",
            )


@dataclass(frozen=True, slots=True)
class Segment:
    """One row of the segment table: a contiguous span of cached tokens of one kind."""

    id: int
    """Unique, increasing with append order."""
    kind: SegmentKind
    start: int
    """Storage offset of the first token in the K/V buffers."""
    length: int
    """Tokens stored."""
    pos_start: int
    """First position (temporal axis) this segment occupies."""
    pos_end: int
    """The next chunk's first position after this segment (exclusive end of its position span)."""
    pinned: bool = False
    """Pinned segments (sinks) are never evicted."""
    timestamp: float | None = None
    """Stream time in seconds (capture time of a vision chunk, arrival of a turn)."""
    kept: torch.Tensor | None = field(default=None, compare=False)
    """For a vision chunk after token drop: bool `[original_tokens]`, True where a token was kept."""

    @property
    def end(self) -> int:
        return self.start + self.length

    @property
    def span(self) -> int:
        """Positions this segment occupies (what compaction shifts later segments by when it goes)."""
        return self.pos_end - self.pos_start


@dataclass(frozen=True, slots=True)
class MemoryReport:
    """What a cache holds and what it costs."""

    capacity_tokens: int
    used_tokens: int
    allocated_bytes: int
    """Bytes of every pre-allocated buffer (K, V, master keys, position tables)."""
    used_bytes: int
    """Bytes of the K/V (and master) rows actually in use."""
    tokens_by_kind: dict[str, int]
    segments: int
    pinned_tokens: int
    evictions: int
    evicted_tokens: int
    next_position: int
