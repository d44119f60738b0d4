"""FrameCache: the KV cache of an autoregressive video diffusion transformer (sink + rolling window).

What it does. A video diffusion model that rolls out block by block (LongLive, Self-Forcing, Rolling
Forcing, StreamDiffusionV2) attends, for the frames it is denoising, to the clean keys/values of frames
it already produced. This cache holds them in pre-allocated buffers:

    k_buf / v_buf: [L, B, H, (S + W + M) * T, D]   regions: | sink S | ring W | in flight M |  (frames x T tokens)
    k_master:      [L, B, H, (W + M) * T, D]       un-rotated keys of the ring and in-flight frames

- Sink: the first S committed frames, written once (keys rotated at positions 0..S-1) and never evicted.
- Ring: the W most recent committed frames after the sink, in a ring buffer with a logical index
  (`ring_head` = physical slot of the oldest frame). Keys are kept un-rotated in `k_master`; the
  rotated copy in `k_buf` is refreshed once per commit from the position policy, so rotations never
  accumulate rounding drift and positions can be re-indexed forever.
- In flight: the frames being denoised. `begin_pass` declares them (one or more sub-blocks, the first
  `clean_frames` of them clean); every model layer then calls `self_attention`, which writes the
  in-flight K/V in place (no pointer moves: each denoise step overwrites the same slots) and attends
  to sink + ring + in flight. `commit` moves the clean frames of a complete clean pass into the sink /
  ring and advances the pointers once; noisy writes never reach the sink or ring.
- Cross-attention K/V per prompt: computed once per (prompt, layer) and reused (bounded LRU, evictions
  counted). `set_prompt` picks the current prompt.
- The clean frames (model inputs, e.g. latents) of the sink and ring are stored too, so the engine can
  rebuild the cache under a new prompt (`kept_frames` + `reset` + re-commit: KV-recache).

Positions are a pluggable policy over frame indices: `CacheRelative` (default; sink 0..S-1, ring
S..S+n-1 in logical order, in-flight frames after, so positions stay bounded and a stream can run
forever) and `Absolute` (the global frame index; equals a full-sequence forward, used as an oracle).

What it does not know: the model. Keys/values arrive normalised but un-rotated; rotation is a callable
given at construction (`Rotate`, supplied by the model's RoPE, frame positions in, rotated tensor out),
and cross-attention K/V come from a callable the model passes in.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

InFlightMask = Literal["causal", "diagonal"]


class FrameCacheError(ValueError):
    """A misuse of the FrameCache (stable `code` attribute, message naming the problem)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Rotate(Protocol):
    """RoPE of the model: rotate `x: [..., F * T, D]` whose frames sit at `frame_pos: [F]` (int64)."""

    def __call__(self, x: Tensor, frame_pos: Tensor) -> Tensor: ...


@dataclass(frozen=True, slots=True)
class FrameCacheConfig:
    """Shape of a FrameCache."""

    layers: int
    """Transformer blocks with self-attention (one K/V slot set each)."""
    heads: int
    """Attention heads (K/V heads; the model's query heads must match)."""
    head_dim: int
    """Per-head channel count D."""
    tokens_per_frame: int
    """Tokens T of one frame (patch grid h * w)."""
    sink_frames: int
    """Frames S pinned at the start of the stream, never evicted."""
    window_frames: int
    """Frames W of the rolling window (the most recent committed frames after the sink)."""
    max_inflight_frames: int
    """Frames M that can be in flight in one pass (block size, or all sub-blocks of a rolling window)."""
    batch: int = 1
    """Independent streams B sharing the same schedule."""
    max_prompts: int = 4
    """Prompts whose cross-attention K/V are kept (least recently used evicted first)."""

    def __post_init__(self) -> None:
        for name in (
            "layers",
            "heads",
            "head_dim",
            "tokens_per_frame",
            "window_frames",
            "max_inflight_frames",
        ):
            if getattr(self, name) < 1:
                raise FrameCacheError(
                    "E_FRAMECACHE_CONFIG", f"{name} must be >= 1, got {getattr(self, name)}"
                )
        if self.sink_frames < 0 or self.batch < 1 or self.max_prompts < 1:
            raise FrameCacheError("E_FRAMECACHE_CONFIG", "sink_frames >= 0, batch >= 1, max_prompts >= 1")


class PositionPolicy(Protocol):
    """Frame positions of the ring (logical order) and of the in-flight frames."""

    def ring(self, n_sink: int, n_win: int, committed: int) -> Tensor: ...

    def inflight(self, n_sink: int, n_win: int, committed: int, frames: int) -> Tensor: ...


class CacheRelative:
    """Positions inside the cache: sink 0..S-1, ring next, in flight after. Bounded by S + W + M."""

    def ring(self, n_sink: int, n_win: int, committed: int) -> Tensor:
        return torch.arange(n_sink, n_sink + n_win)

    def inflight(self, n_sink: int, n_win: int, committed: int, frames: int) -> Tensor:
        return torch.arange(n_sink + n_win, n_sink + n_win + frames)


class Absolute:
    """Global frame index since the last reset (grows without bound; the full-sequence oracle's view)."""

    def ring(self, n_sink: int, n_win: int, committed: int) -> Tensor:
        return torch.arange(committed - n_win, committed)

    def inflight(self, n_sink: int, n_win: int, committed: int, frames: int) -> Tensor:
        return torch.arange(committed, committed + frames)


@dataclass(frozen=True, slots=True)
class FrameCacheStats:
    """Pointers and sizes of a FrameCache (for logs, tests and benchmarks)."""

    committed: int
    sink_frames: int
    window_frames: int
    ring_head: int
    kv_bytes: int
    frame_bytes: int
    prompts_cached: int
    prompts_evicted: int


class FrameCache:
    """Sink + rolling-window K/V of a block-causal video diffusion transformer (see module docstring)."""

    def __init__(
        self,
        cfg: FrameCacheConfig,
        rotate: Rotate,
        *,
        policy: PositionPolicy | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        self.cfg = cfg
        self.rotate = rotate
        self.policy: PositionPolicy = policy or CacheRelative()
        c, t = cfg, cfg.tokens_per_frame
        shape = (c.layers, c.batch, c.heads, (c.sink_frames + c.window_frames + c.max_inflight_frames) * t)
        self.k_buf = torch.zeros(*shape, c.head_dim, dtype=dtype, device=device)  # rotated keys
        self.v_buf = torch.zeros_like(self.k_buf)
        self.k_master = torch.zeros(
            c.layers,
            c.batch,
            c.heads,
            (c.window_frames + c.max_inflight_frames) * t,
            c.head_dim,
            dtype=dtype,
            device=device,
        )  # un-rotated keys of ring + in flight
        self.frames: Tensor | None = None  # [B, S + W, *frame_shape], allocated at the first commit
        self._cross: OrderedDict[Hashable, list[tuple[Tensor, Tensor] | None]] = OrderedDict()
        self._prompt: Hashable | None = None
        self.prompts_evicted = 0
        self.reset()

    # ---- pointers -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every committed frame (buffers stay allocated; cross-attention K/V are kept)."""
        self.committed = 0  # frames committed since the last reset
        self.n_sink = 0
        self.n_win = 0
        self.ring_head = 0  # physical ring slot of the oldest window frame
        self._pass: _Pass | None = None

    @property
    def _t(self) -> int:
        return self.cfg.tokens_per_frame

    def _ring_slot_positions(self) -> tuple[Tensor, Tensor]:
        """Valid physical ring slots (0..n_win-1) and their frame positions (policy over the logical index)."""
        slots = torch.arange(self.n_win)
        logical = (slots - self.ring_head) % self.cfg.window_frames  # 0 = oldest window frame
        return slots, self.policy.ring(self.n_sink, self.n_win, self.committed)[logical]

    # ---- a pass (one model forward over the in-flight frames) -----------------------------------
    def begin_pass(
        self, sub_blocks: Sequence[int], *, clean_frames: int = 0, mask: InFlightMask = "causal"
    ) -> Tensor:
        """Declare the in-flight frames of the next forward; returns their frame positions `[F]`.

        `sub_blocks` are frame counts (one entry for a plain block; several for a rolling window or a
        stream batch). Inside the in-flight region `causal` lets sub-block i see sub-blocks <= i and
        `diagonal` only itself; every in-flight frame sees the whole sink and ring. The first
        `clean_frames` frames are declared clean (t = 0): only they can be committed after this pass.
        """
        frames = sum(sub_blocks)
        if not sub_blocks or min(sub_blocks) < 1 or frames > self.cfg.max_inflight_frames:
            raise FrameCacheError(
                "E_FRAMECACHE_BLOCK",
                f"sub-blocks {list(sub_blocks)} must be >= 1 frame and total <= {self.cfg.max_inflight_frames}",
            )
        if not 0 <= clean_frames <= frames:
            raise FrameCacheError("E_FRAMECACHE_BLOCK", f"clean_frames {clean_frames} not in [0, {frames}]")
        pos = self.policy.inflight(self.n_sink, self.n_win, self.committed, frames)
        ctx = (self.n_sink + self.n_win) * self._t
        attn_mask = None
        if len(sub_blocks) > 1:  # block structure inside the in-flight region
            sb = torch.repeat_interleave(
                torch.arange(len(sub_blocks)), torch.tensor(list(sub_blocks)) * self._t
            )
            inner = sb[None, :] <= sb[:, None] if mask == "causal" else sb[None, :] == sb[:, None]
            attn_mask = torch.cat([torch.ones(len(sb), ctx, dtype=torch.bool), inner], dim=1)
            attn_mask = attn_mask.to(self.k_buf.device)  # [N, ctx + N]
        self._pass = _Pass(frames, clean_frames, pos, attn_mask, set())
        return pos

    def self_attention(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Write the in-flight K/V of `layer` in place and attend to sink + ring + in flight.

        q: [B, H, N, D], k: [B, H, N, D] (normalised, un-rotated), v: [B, H, N, D]; N = in-flight
        frames * T. Returns [B, H, N, D]. No pointer moves: a later pass overwrites the same slots.
        """
        p = self._pass
        if p is None:
            raise FrameCacheError("E_FRAMECACHE_NO_PASS", "self_attention called before begin_pass")
        c, t = self.cfg, self._t
        n = p.frames * t
        if q.shape[-2] != n or k.shape != v.shape or k.shape[0] != c.batch:
            raise FrameCacheError(
                "E_FRAMECACHE_SHAPE",
                f"expected {n} in-flight tokens and batch {c.batch}, got q {tuple(q.shape)}",
            )
        base = (c.sink_frames + c.window_frames) * t
        self.k_master[layer, :, :, c.window_frames * t : c.window_frames * t + n] = k
        self.k_buf[layer, :, :, base : base + n] = self.rotate(k, p.pos)
        self.v_buf[layer, :, :, base : base + n] = v
        p.written.add(layer)
        kb, vb = self.k_buf[layer], self.v_buf[layer]
        if self.n_sink == c.sink_frames and self.n_win == c.window_frames:  # steady state: one view, no copy
            keys, vals = kb[:, :, : base + n], vb[:, :, : base + n]
        else:  # warm-up: valid pieces are not contiguous yet (allocation, only while the cache fills)
            s_end, r0, r1 = self.n_sink * t, c.sink_frames * t, (c.sink_frames + self.n_win) * t
            keys = torch.cat([kb[:, :, :s_end], kb[:, :, r0:r1], kb[:, :, base : base + n]], dim=2)
            vals = torch.cat([vb[:, :, :s_end], vb[:, :, r0:r1], vb[:, :, base : base + n]], dim=2)
        return F.scaled_dot_product_attention(self.rotate(q, p.pos), keys, vals, attn_mask=p.mask)

    def commit(self, frames: Tensor) -> None:
        """Move the clean frames of the last (complete, clean) pass into the sink / ring; advance once.

        frames: [B, clean_frames, *frame_shape], the clean model inputs of those frames (kept for recache).
        """
        p = self._pass
        c, t = self.cfg, self._t
        if p is None or p.clean_frames == 0:
            raise FrameCacheError("E_FRAMECACHE_NOT_CLEAN", "commit needs a pass begun with clean_frames > 0")
        if len(p.written) != c.layers:
            raise FrameCacheError(
                "E_FRAMECACHE_INCOMPLETE",
                f"commit after a pass that wrote {len(p.written)}/{c.layers} layers",
            )
        if frames.shape[:2] != (c.batch, p.clean_frames):
            raise FrameCacheError(
                "E_FRAMECACHE_SHAPE",
                f"commit frames {tuple(frames.shape)} != [{c.batch}, {p.clean_frames}, ...]",
            )
        if self.frames is None:  # allocation (once)
            self.frames = frames.new_zeros(c.batch, c.sink_frames + c.window_frames, *frames.shape[2:])
        base, mbase = (c.sink_frames + c.window_frames) * t, c.window_frames * t
        for j in range(p.clean_frames):
            src = slice(base + j * t, base + (j + 1) * t)
            if self.n_sink < c.sink_frames:  # sink: rotated keys at their final positions 0..S-1
                dst = slice(self.n_sink * t, (self.n_sink + 1) * t)
                self.k_buf[:, :, :, dst] = self.k_buf[:, :, :, src]
                self.v_buf[:, :, :, dst] = self.v_buf[:, :, :, src]
                self.frames[:, self.n_sink] = frames[:, j]
                self.n_sink += 1
            else:
                if self.n_win < c.window_frames:
                    slot = self.n_win
                    self.n_win += 1
                else:  # evict the oldest window frame
                    slot = self.ring_head
                    self.ring_head = (self.ring_head + 1) % c.window_frames
                msrc = slice(mbase + j * t, mbase + (j + 1) * t)
                self.k_master[:, :, :, slot * t : (slot + 1) * t] = self.k_master[:, :, :, msrc]
                self.v_buf[:, :, :, (c.sink_frames + slot) * t : (c.sink_frames + slot + 1) * t] = self.v_buf[
                    :, :, :, src
                ]
                self.frames[:, c.sink_frames + slot] = frames[:, j]
            self.committed += 1
        self._refresh_ring()
        self._pass = None

    def _refresh_ring(self) -> None:
        """Re-rotate the ring's keys from the master copy at their current positions (once per commit)."""
        if not self.n_win:
            return
        t, s = self._t, self.cfg.sink_frames
        slots, pos = self._ring_slot_positions()  # physical slots 0..n-1 and their positions
        span = slice(s * t, (s + len(slots)) * t)
        self.k_buf[:, :, :, span] = self.rotate(self.k_master[:, :, :, : len(slots) * t], pos)

    # ---- recache ------------------------------------------------------------------------------------
    def kept_frames(self) -> Tensor:
        """The clean frames of the sink and ring in stream order: [B, n_sink + n_win, *frame_shape]."""
        if self.frames is None or self.committed == 0:
            raise FrameCacheError("E_FRAMECACHE_EMPTY", "no committed frames to recache")
        s = self.cfg.sink_frames
        slots = (torch.arange(self.n_win) + self.ring_head) % self.cfg.window_frames
        idx = torch.cat([torch.arange(self.n_sink), s + slots]).to(self.frames.device)
        return self.frames.index_select(1, idx)

    # ---- cross-attention K/V per prompt -------------------------------------------------------------
    def set_prompt(self, key: Hashable) -> None:
        """Make `key` the current prompt (its cross-attention K/V are computed on first use)."""
        self._prompt = key
        if key in self._cross:
            self._cross.move_to_end(key)
            return
        self._cross[key] = [None] * self.cfg.layers
        while len(self._cross) > self.cfg.max_prompts:
            self._cross.popitem(last=False)
            self.prompts_evicted += 1

    def cross_kv(self, layer: int, compute: Callable[[], tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """Cross-attention K/V of the current prompt at `layer` ([B, H, L_text, D] each), cached."""
        if self._prompt is None:
            raise FrameCacheError("E_FRAMECACHE_NO_PROMPT", "set_prompt before the first forward")
        slot = self._cross[self._prompt]
        if slot[layer] is None:
            slot[layer] = compute()
        kv = slot[layer]
        assert kv is not None
        return kv

    # ---- reporting ------------------------------------------------------------------------------------
    def stats(self) -> FrameCacheStats:
        kv = sum(x.numel() * x.element_size() for x in (self.k_buf, self.v_buf, self.k_master))
        fb = 0 if self.frames is None else self.frames.numel() * self.frames.element_size()
        return FrameCacheStats(
            self.committed,
            self.n_sink,
            self.n_win,
            self.ring_head,
            kv,
            fb,
            len(self._cross),
            self.prompts_evicted,
        )


@dataclass(slots=True)
class _Pass:
    frames: int
    clean_frames: int
    pos: Tensor  # [frames] positions of the in-flight frames
    mask: Tensor | None  # [N, ctx + N] bool, None when every key is visible
    written: set[int]
