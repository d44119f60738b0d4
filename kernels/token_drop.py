"""Differential token drop (TimeChat-Online style): keep the visual tokens that changed.

For a chunk of T frames of N tokens each (the same (h, w) grid every frame), token (t, n) is compared
with token (t-1, n) of the previous frame (for t = 0, with `prev`, the last frame of the previous
chunk) by cosine similarity in fp32; it is dropped when the similarity exceeds `threshold`. With no
previous frame, the first frame is kept whole. A per-chunk `budget` then caps the kept count, keeping
the least similar (most changed) tokens. Kept tokens keep their positions: the result is indices into
the chunk's T*N tokens, ascending, which select both embeddings and M-RoPE position columns.

`token_drop` is the dispatch point; the similarity is computed by `token_similarity_ref` (PyTorch) or
`token_similarity_triton`; thresholding and the budget are shared code (`select_kept`).
"""

from __future__ import annotations

import torch
from streamrt.kernels._triton import HAVE_TRITON, use_triton

EPS = 1e-8


def token_similarity_ref(cur: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    """Cosine similarity per token, fp32. cur, prev: [M, C] -> [M]."""
    a, b = cur.float(), prev.float()
    dot = (a * b).sum(-1)
    return dot / torch.sqrt(torch.clamp((a * a).sum(-1) * (b * b).sum(-1), min=EPS * EPS))


if HAVE_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _similarity_kernel(
        a_ptr, b_ptr, o_ptr, M, C, sa, sb, EPS2: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr
    ):
        m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        mm = m < M
        dot = tl.zeros([BLOCK_M], tl.float32)
        na = tl.zeros([BLOCK_M], tl.float32)
        nb = tl.zeros([BLOCK_M], tl.float32)
        for c0 in range(0, C, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)
            msk = mm[:, None] & (c < C)[None, :]
            a = tl.load(a_ptr + m[:, None] * sa + c[None, :], mask=msk, other=0.0).to(tl.float32)
            b = tl.load(b_ptr + m[:, None] * sb + c[None, :], mask=msk, other=0.0).to(tl.float32)
            dot += tl.sum(a * b, 1)
            na += tl.sum(a * a, 1)
            nb += tl.sum(b * b, 1)
        tl.store(o_ptr + m, dot / tl.sqrt(tl.maximum(na * nb, EPS2)), mask=mm)


def token_similarity_triton(cur: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    """Triton version of `token_similarity_ref` (rows need a unit last-dim stride)."""
    if not HAVE_TRITON:
        raise RuntimeError("triton is not installed")
    cur, prev = cur.contiguous(), prev.contiguous()
    M, C = cur.shape
    out = torch.empty(M, dtype=torch.float32, device=cur.device)
    if M:
        block_m = 16
        _similarity_kernel[(triton.cdiv(M, block_m),)](
            cur, prev, out, M, C, cur.stride(0), prev.stride(0),
            EPS2=EPS * EPS, BLOCK_M=block_m, BLOCK_C=min(128, triton.next_power_of_2(C)),
        )  # fmt: skip
    return out


def select_kept(sim: torch.Tensor, threshold: float, budget: int | None) -> torch.Tensor:
    """From per-token similarities [M] (NaN = no previous frame, always kept), the kept indices:
    similarity <= threshold, then at most `budget` of them, least similar first. int64 [K] ascending."""
    sim = torch.nan_to_num(sim, nan=float("-inf"))  # first frame: most changed, never dropped by threshold
    kept = torch.nonzero(sim <= threshold).flatten()
    if budget is not None and kept.numel() > budget:
        order = torch.argsort(sim[kept], stable=True)[:budget]
        kept = kept[order].sort().values
    return kept


def token_drop(
    tokens: torch.Tensor,
    prev: torch.Tensor | None,
    *,
    threshold: float,
    budget: int | None = None,
) -> torch.Tensor:
    """Indices of the tokens to keep in a chunk (dispatch point: Triton similarity on CUDA).

    tokens: [T, N, C] (T frames of N tokens); prev: [N, C] the previous frame or None (first chunk:
    frame 0 kept whole). Returns int64 [K] ascending indices into the T*N flattened tokens.
    """
    T, N, C = tokens.shape
    if prev is None:
        ref = torch.cat([tokens[:1], tokens[:-1]])  # frame 0 compared to itself, then masked below
    else:
        ref = torch.cat([prev[None], tokens[:-1]])
    sim_fn = token_similarity_triton if use_triton(tokens) else token_similarity_ref
    sim = sim_fn(tokens.reshape(T * N, C), ref.reshape(T * N, C))  # [T*N]
    if prev is None:
        sim[:N] = float("nan")
    return select_kept(sim, threshold, budget)
