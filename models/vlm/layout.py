"""Position ids of the sequence layout, shared by the adapters (chunk by chunk, into a StreamCache)
and by training (a whole sequence in one forward), so both give every token the same position.

M-RoPE (Qwen2-VL, transformers 5.x `get_rope_index`): text tokens take one position on all three
axes, consecutive; a vision block of grid (t, h, w) merged tokens starting at `s` takes
t = s + floor(i_t * interval), h = s + i_h, w = s + i_w and advances the counter by max(h, w).
1-D RoPE (Idefics3): every token, visual or not, takes the next position.

Owns nothing; knows no model, only these rules.
"""

from __future__ import annotations

import torch


def text_positions(start: int, n: int, axes: int) -> torch.Tensor:
    """Positions of `n` text tokens from `start`: [axes, n]."""
    return torch.arange(start, start + n).expand(axes, n).clone()


def vision_positions(
    start: int, grid_thw: tuple[int, int, int], interval: float, axes: int
) -> tuple[torch.Tensor, int]:
    """Positions of a vision block from `start` and how far it advances the counter.

    Returns ([axes, t*h*w], advance): M-RoPE advance max(h, w); 1-D advance t*h*w.
    """
    t, h, w = grid_thw
    if axes == 1:
        return text_positions(start, t * h * w, 1), t * h * w
    tt = (torch.arange(t) * interval).long() + start
    grid = torch.meshgrid(tt, torch.arange(h) + start, torch.arange(w) + start, indexing="ij")
    return torch.stack(grid).reshape(3, -1), max(h, w)


def chunk_positions(
    start: int,
    n_prefix: int,
    grid_thw: tuple[int, int, int],
    n_suffix: int,
    *,
    interval: float,
    axes: int,
    kept: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """Positions of one vision segment: `n_prefix` text tokens, the (kept) vision tokens, `n_suffix`
    text tokens. kept: int64 [K] indices into the t*h*w vision tokens (None: all). Dropped tokens
    leave holes: kept ones keep the positions they would have without drop, and the span is the
    undropped one. Returns ([axes, n_prefix + K + n_suffix], span)."""
    pre = text_positions(start, n_prefix, axes)
    vis, adv = vision_positions(start + n_prefix, grid_thw, interval, axes)
    if kept is not None:
        vis = vis[:, kept.cpu()]
    post = text_positions(start + n_prefix + adv, n_suffix, axes)
    return torch.cat([pre, vis, post], dim=1), n_prefix + adv + n_suffix
