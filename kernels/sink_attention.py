"""Attention over a sink + ring-buffer KV cache, read in place (no concatenated copy).

Layout (shared with the frame cache of video generation): rows `[0, sink_len)` of the K/V buffers
hold the sink tokens; rows `[sink_len, C)` are a ring of R = C - sink_len slots in which logical
window token i lives at row `sink_len + (ring_start + i) % R`. The logical sequence is the sinks
followed by the `ring_len` window tokens, and the query chunk is its last Q tokens (already written
into the ring). Mask: causal (query i sees logical keys up to L - Q + i, L = sink_len + ring_len) or
`causal=False` for block attention (the chunk sees the whole cache and itself). GQA: query head h
reads KV head h // (Hq / Hkv).

`sink_ring_attention` is the dispatch point (Triton on CUDA, the reference otherwise);
`sink_ring_attention_ref` gathers the logical order and calls SDPA in fp32; `sink_ring_attention_triton`
streams key blocks through an online softmax, computing each block's physical rows on the fly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from streamrt.kernels._triton import HAVE_TRITON, use_triton


def logical_rows(
    sink_len: int, ring_start: int, ring_len: int, capacity: int, device: torch.device
) -> torch.Tensor:
    """Physical rows of the logical sequence (sinks, then window oldest first): int64 [sink_len + ring_len]."""
    ring = capacity - sink_len
    if ring_len > ring or not 0 <= ring_start < max(ring, 1):
        raise ValueError(f"ring_len {ring_len} / ring_start {ring_start} do not fit a ring of {ring}")
    win = sink_len + (ring_start + torch.arange(ring_len, device=device)) % max(ring, 1)
    return torch.cat([torch.arange(sink_len, device=device), win])


def sink_ring_attention_ref(
    q: torch.Tensor,
    k_buf: torch.Tensor,
    v_buf: torch.Tensor,
    *,
    sink_len: int,
    ring_start: int,
    ring_len: int,
    causal: bool = True,
    scale: float | None = None,
) -> torch.Tensor:
    """Reference. q: [B, Hq, Q, D]; k_buf, v_buf: [B, Hkv, C, D]. Returns [B, Hq, Q, D] in q's dtype."""
    B, Hq, Q, D = q.shape
    Hkv, C = k_buf.shape[1], k_buf.shape[2]
    rows = logical_rows(sink_len, ring_start, ring_len, C, q.device)  # [L]
    L = rows.numel()
    k = k_buf.index_select(2, rows).float().repeat_interleave(Hq // Hkv, dim=1)  # [B, Hq, L, D]
    v = v_buf.index_select(2, rows).float().repeat_interleave(Hq // Hkv, dim=1)
    mask = None
    if causal:
        mask = (
            torch.arange(L, device=q.device)[None, :] <= (L - Q + torch.arange(Q, device=q.device))[:, None]
        )
    out = F.scaled_dot_product_attention(q.float(), k, v, attn_mask=mask, scale=scale)
    return out.to(q.dtype)


if HAVE_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _sink_ring_kernel(
        q_ptr, k_ptr, v_ptr, o_ptr,
        sq_b, sq_h, sq_q, sk_b, sk_h, sk_c, so_b, so_h, so_q,
        Hq, Q, L, sink_len, ring_start, ring, group, scale,
        CAUSAL: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    ):  # fmt: skip
        pid_bh = tl.program_id(0)
        b = pid_bh // Hq
        h = pid_bh % Hq
        hk = h // group
        m_idx = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)  # query rows
        d = tl.arange(0, BLOCK_D)
        dm = d < D
        qm = m_idx < Q
        q = tl.load(
            q_ptr + b * sq_b + h * sq_h + m_idx[:, None] * sq_q + d[None, :],
            mask=qm[:, None] & dm[None, :],
            other=0.0,
        ).to(tl.float32)
        q = q * scale
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        q_logical = L - Q + m_idx  # [BLOCK_M]
        for start in range(0, L, BLOCK_N):
            j = start + tl.arange(0, BLOCK_N)  # logical key index
            jm = j < L
            row = tl.where(j < sink_len, j, sink_len + (ring_start + j - sink_len) % ring)
            kv_off = b * sk_b + hk * sk_h + row[:, None] * sk_c + d[None, :]
            kv_m = jm[:, None] & dm[None, :]
            k = tl.load(k_ptr + kv_off, mask=kv_m, other=0.0).to(tl.float32)  # [BLOCK_N, BLOCK_D]
            v = tl.load(v_ptr + kv_off, mask=kv_m, other=0.0).to(tl.float32)
            s = tl.dot(q, tl.trans(k))  # [BLOCK_M, BLOCK_N]
            ok = jm[None, :]
            if CAUSAL:
                ok = ok & (j[None, :] <= q_logical[:, None])
            s = tl.where(ok, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.exp(s - m_safe[:, None])
            alpha = tl.exp(m_i - m_safe)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot(p, v)
            m_i = m_new
        out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
        tl.store(
            o_ptr + b * so_b + h * so_h + m_idx[:, None] * so_q + d[None, :],
            out.to(o_ptr.dtype.element_ty),
            mask=qm[:, None] & dm[None, :],
        )


def sink_ring_attention_triton(
    q: torch.Tensor,
    k_buf: torch.Tensor,
    v_buf: torch.Tensor,
    *,
    sink_len: int,
    ring_start: int,
    ring_len: int,
    causal: bool = True,
    scale: float | None = None,
) -> torch.Tensor:
    """Triton version of `sink_ring_attention_ref` (same contract; last dims must be contiguous)."""
    if not HAVE_TRITON:
        raise RuntimeError("triton is not installed")
    B, Hq, Q, D = q.shape
    Hkv, C = k_buf.shape[1], k_buf.shape[2]
    logical_rows(sink_len, ring_start, ring_len, C, q.device)  # validates the layout
    if q.stride(-1) != 1 or k_buf.stride(-1) != 1 or v_buf.stride() != k_buf.stride():
        raise ValueError("sink_ring_attention_triton needs unit last-dim strides and K/V of the same layout")
    o = torch.empty_like(q)
    block_m = 16
    grid = (B * Hq, triton.cdiv(Q, block_m))
    _sink_ring_kernel[grid](
        q, k_buf, v_buf, o,
        q.stride(0), q.stride(1), q.stride(2), k_buf.stride(0), k_buf.stride(1), k_buf.stride(2),
        o.stride(0), o.stride(1), o.stride(2),
        Hq, Q, sink_len + ring_len, sink_len, ring_start, max(C - sink_len, 1), Hq // Hkv,
        scale if scale is not None else 1.0 / math.sqrt(D),
        CAUSAL=causal, D=D, BLOCK_D=max(16, triton.next_power_of_2(D)), BLOCK_M=block_m, BLOCK_N=16,
    )  # fmt: skip
    return o


def sink_ring_attention(
    q: torch.Tensor,
    k_buf: torch.Tensor,
    v_buf: torch.Tensor,
    *,
    sink_len: int,
    ring_start: int,
    ring_len: int,
    causal: bool = True,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention of a query chunk over sinks + ring window in place (dispatch point; see module doc).

    q: [B, Hq, Q, D]; k_buf, v_buf: [B, Hkv, C, D]; returns [B, Hq, Q, D].
    """
    fn = sink_ring_attention_triton if use_triton(q) else sink_ring_attention_ref
    return fn(
        q,
        k_buf,
        v_buf,
        sink_len=sink_len,
        ring_start=ring_start,
        ring_len=ring_len,
        causal=causal,
        scale=scale,
    )
