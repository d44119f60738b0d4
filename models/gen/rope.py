"""3-D rotary position embedding over (time, height, width), Wan-style head-dim split.

The head dimension D is split into a time part D - 4*(D//6) and height/width parts 2*(D//6) each;
each part rotates consecutive channel pairs by position * theta^(-2i/d). Time positions are frame
indices handed in by the caller (a dense forward or a FrameCache position policy); height/width
positions are the patch grid. Math only: no cache, no position policy. Angles are computed in fp64
and the rotation runs in fp32 (fp64 inputs stay fp64), so a cached key can be re-rotated exactly.
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
        self._cache: dict[tuple[int, ...], tuple[Tensor, Tensor]] = {}

    def _cos_sin(self, frame_pos: Tensor, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        key = (*frame_pos.tolist(), id(dtype), hash(device))  # host sync: frame_pos is a small CPU tensor
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        t_ang = frame_pos.to(torch.float64).reshape(-1, 1) * self._inv_t  # [F, Dt/2]
        t_ang = t_ang.repeat_interleave(self.tokens_per_frame, dim=0)  # [F*T, Dt/2]
        ang = torch.cat([t_ang, self._hw.repeat(len(frame_pos), 1)], dim=1)  # [F*T, D/2]
        out = (ang.cos().to(dtype=dtype, device=device), ang.sin().to(dtype=dtype, device=device))
        if len(self._cache) > 256:  # bounded memo (positions repeat every block)
            self._cache.clear()
        self._cache[key] = out
        return out

    def tables(self, frame_pos: Tensor, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        """cos, sin: [F*T, D/2] for frames at `frame_pos` (memoised: positions repeat every block)."""
        return self._cos_sin(frame_pos, dtype, device)

    def __call__(self, x: Tensor, frame_pos: Tensor) -> Tensor:
        """x: [..., F*T, D] -> rotated copy, same shape and dtype."""
        cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
        return apply_rope(x, *self._cos_sin(frame_pos, cdt, x.device))


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate consecutive channel pairs of x: [..., N, D] by angles given as cos, sin: [N, D/2]."""
    xp = x.to(cos.dtype).unflatten(-1, (-1, 2))
    a, b = xp[..., 0], xp[..., 1]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2).to(x.dtype)
