"""In-place RoPE shift of cached keys: rotate already-rotated keys by a per-token position delta.

Keys reach the cache rotated at their position p (rotate-half layout: frequency j pairs dims j and
j + D/2). Rotating such a key by a further angle d * inv_freq[j] gives exactly the key the model
would have produced at position p + d (DESIGN.md §3), so eviction with contiguous re-indexing is a
rotation of the survivors. For M-RoPE the frequency pairs are split into (t, h, w) sections and each
section turns by its own axis' delta. All angle and rotation math is fp32 whatever the key dtype.

`rope_shift_` is the one dispatch point (Triton on CUDA, the reference otherwise); `rope_shift_ref`
and `rope_shift_triton` are the two implementations. Owns no state.
"""

from __future__ import annotations

import torch
from streamrt.kernels._triton import HAVE_TRITON, use_triton


def freq_axes(half_dim: int, sections: tuple[int, ...] | None, device: torch.device) -> torch.Tensor:
    """For each frequency pair, the position axis that drives it: int64 `[half_dim]` (all 0 for 1-D)."""
    if sections is None:
        return torch.zeros(half_dim, dtype=torch.long, device=device)
    axes = torch.cat([torch.full((n,), i % 3, dtype=torch.long) for i, n in enumerate(sections)])
    if axes.numel() != half_dim:
        raise ValueError(f"sections {sections} sum to {axes.numel()}, want {half_dim}")
    return axes.to(device)


def rope_shift_ref(
    k: torch.Tensor, delta: torch.Tensor, inv_freq: torch.Tensor, sections: tuple[int, ...] | None = None
) -> torch.Tensor:
    """Reference: rotate `k` in place by `delta` positions and return it.

    k: [B, H, S, D] any float dtype; delta: [A, S] integer (A = 1, or 3 for M-RoPE t/h/w);
    inv_freq: [D/2] fp32.
    """
    half = k.shape[-1] // 2
    axes = freq_axes(half, sections, k.device)  # [D/2]
    d = delta.to(device=k.device, dtype=torch.float32)[axes.clamp(max=delta.shape[0] - 1)]  # [D/2, S]
    ang = d.t() * inv_freq.to(device=k.device, dtype=torch.float32)  # [S, D/2]
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = k[..., :half], k[..., half:]
    # Allocations: the two rotated halves (fp32), then written back in place.
    n1 = torch.addcmul(x1.float() * cos, x2.float(), sin, value=-1.0)
    n2 = torch.addcmul(x2.float() * cos, x1.float(), sin)
    x1.copy_(n1)
    x2.copy_(n2)
    return k


if HAVE_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _rope_shift_kernel(
        k_ptr,
        delta_ptr,
        inv_freq_ptr,
        axis_ptr,
        S,
        stride_bh,
        stride_s,
        stride_da,
        HALF: tl.constexpr,
        BLOCK_S: tl.constexpr,
        BLOCK_H: tl.constexpr,
    ):
        bh = tl.program_id(0)
        s = tl.program_id(1) * BLOCK_S + tl.arange(0, BLOCK_S)  # [BLOCK_S]
        j = tl.arange(0, BLOCK_H)  # [BLOCK_H]
        sm = s < S
        jm = j < HALF
        m = sm[:, None] & jm[None, :]
        axis = tl.load(axis_ptr + j, mask=jm, other=0)
        inv = tl.load(inv_freq_ptr + j, mask=jm, other=0.0)
        d = tl.load(delta_ptr + axis[None, :] * stride_da + s[:, None], mask=m, other=0).to(tl.float32)
        ang = d * inv[None, :]
        c = tl.cos(ang)
        sn = tl.sin(ang)
        base = k_ptr + bh * stride_bh + s[:, None] * stride_s + j[None, :]
        x1 = tl.load(base, mask=m, other=0.0).to(tl.float32)
        x2 = tl.load(base + HALF, mask=m, other=0.0).to(tl.float32)
        tl.store(base, (x1 * c - x2 * sn).to(k_ptr.dtype.element_ty), mask=m)
        tl.store(base + HALF, (x2 * c + x1 * sn).to(k_ptr.dtype.element_ty), mask=m)


def rope_shift_triton(
    k: torch.Tensor, delta: torch.Tensor, inv_freq: torch.Tensor, sections: tuple[int, ...] | None = None
) -> torch.Tensor:
    """Triton version of `rope_shift_ref` (same contract). k must have a unit last-dim stride and
    uniform (B*H) stride, which holds for any slice `buf[:, :, a:b]` of a contiguous buffer."""
    if not HAVE_TRITON:
        raise RuntimeError("triton is not installed")
    B, H, S, D = k.shape
    if S == 0:
        return k
    if k.stride(-1) != 1 or k.stride(0) != H * k.stride(1):
        raise ValueError("rope_shift_triton needs keys sliced from a contiguous [B, H, C, D] buffer")
    half = D // 2
    axes = freq_axes(half, sections, k.device)
    if delta.shape[0] == 1:
        axes = torch.zeros_like(axes)
    delta = delta.to(device=k.device, dtype=torch.int64).contiguous()  # [A, S]
    inv = inv_freq.to(device=k.device, dtype=torch.float32).contiguous()
    block_s = 16
    grid = (B * H, triton.cdiv(S, block_s))
    _rope_shift_kernel[grid](
        k, delta, inv, axes, S, k.stride(1), k.stride(2), delta.stride(0),
        HALF=half, BLOCK_S=block_s, BLOCK_H=triton.next_power_of_2(half),
    )  # fmt: skip
    return k


def rope_shift_(
    k: torch.Tensor, delta: torch.Tensor, inv_freq: torch.Tensor, sections: tuple[int, ...] | None = None
) -> torch.Tensor:
    """Rotate cached keys in place by per-token position deltas (dispatch: Triton on CUDA, else reference).

    k: [B, H, S, D]; delta: [A, S] integer; inv_freq: [D/2] fp32; sections: M-RoPE sections or None.
    """
    if use_triton(k):
        return rope_shift_triton(k, delta, inv_freq, sections)
    return rope_shift_ref(k, delta, inv_freq, sections)
