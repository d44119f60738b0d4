"""3-D rotary position embedding over (time, height, width), Wan-style head-dim split.

The head dimension D is split into a time part D - 4*(D//6) and height/width parts 2*(D//6) each;
each part rotates consecutive channel pairs by position * theta^(-2i/d). Time positions are frame
indices handed in by the caller (a dense forward or a FrameCache position policy); height/width
positions are the patch grid. Math only: no cache, no position policy. Angles are computed in fp64
and the rotation runs in fp32 (fp64 inputs stay fp64), so a cached key can be re-rotated exactly.
The rotation is evaluated as x * cos2 + swap(x) * sin2 with full-width tables (cos repeated per pair,
sin signed -/+), three elementwise kernels instead of six plus a stack: every output element is the
same IEEE expression as the pairwise form (a cos - b sin, a sin + b cos), so results are bit-identical.
"""

from __future__ import annotations

import torch
from torch import Tensor


class Rope3D:
    """Rotary embedding of a (t, h, w) token grid; `for_grid(h, w)` binds the spatial grid."""

    def __init__(self, head_dim: int, theta: float = 10000.0) -> None:
        if head_dim % 2 or head_dim < 6:
            raise ValueError(f"head_dim must be even and >= 6, got {head_dim}")
        hw = 2 * (head_dim // 6)
        self.dims = (head_dim - 2 * hw, hw, hw)
        self.inv = [theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d) for d in self.dims]

    def for_grid(self, h: int, w: int) -> GridRope:
        return GridRope(self, h, w)


class GridRope:
    """Rotation of tokens laid out frame by frame over an h x w patch grid (callable as `Rotate`)."""

    def __init__(self, rope: Rope3D, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.tokens_per_frame = h * w
        ii, jj = torch.meshgrid(
            torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
        )
        self._inv_t = rope.inv[0]
        self._hw = torch.cat(
            [ii.reshape(-1, 1) * rope.inv[1], jj.reshape(-1, 1) * rope.inv[2]], dim=1
        )  # [T, (Dh+Dw)/2]
        self._cache: dict[tuple[object, ...], tuple[Tensor, Tensor]] = {}

    def tables(self, frame_pos: Tensor, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        """Full-width rotation tables cos2, sin2: [F*T, D] for frames at `frame_pos` (see `rotation_tables`).

        Memoised (bounded) by the positions' values: positions repeat every block.
        """
        key = (*frame_pos.tolist(), dtype, device)  # host sync: frame_pos is a small CPU tensor
        out = self._cache.get(key)
        if out is None:
            t_ang = frame_pos.to(torch.float64).reshape(-1, 1) * self._inv_t  # [F, Dt/2]
            t_ang = t_ang.repeat_interleave(self.tokens_per_frame, dim=0)  # [F*T, Dt/2]
            ang = torch.cat([t_ang, self._hw.repeat(len(frame_pos), 1)], dim=1)  # [F*T, D/2]
            cos2, sin2 = rotation_tables(ang.cos().to(dtype), ang.sin().to(dtype))
            out = (cos2.to(device), sin2.to(device))
            if len(self._cache) > 256:  # bounded memo (positions repeat every block)
                self._cache.clear()
            self._cache[key] = out
        return out

    def __call__(self, x: Tensor, frame_pos: Tensor) -> Tensor:
        """x: [..., F*T, D] -> rotated copy, same shape and dtype."""
        cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
        return rotate_pairs(x, *self.tables(frame_pos, cdt, x.device))


def rotation_tables(cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    """Half-width cos, sin [N, D/2] -> full-width cos2 = (c, c, ...), sin2 = (-s, +s, ...): [N, D]."""
    return cos.repeat_interleave(2, dim=-1), torch.stack([-sin, sin], dim=-1).flatten(-2)


def rotate_pairs(x: Tensor, cos2: Tensor, sin2: Tensor) -> Tensor:
    """Rotate consecutive channel pairs of x: [..., N, D] by full-width tables cos2, sin2: [N, D].

    (a, b) -> (a c + b (-s), b c + a s) = (a c - b s, a s + b c): computed in the tables' dtype.
    """
    xc = x.to(cos2.dtype)
    swapped = xc.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # (b, a) per pair; allocation: one copy
    return (xc * cos2 + swapped * sin2).to(x.dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate consecutive channel pairs of x: [..., N, D] by angles given as cos, sin: [N, D/2]."""
    return rotate_pairs(x, *rotation_tables(cos, sin))
