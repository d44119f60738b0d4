"""Sink + ring attention reference against plain SDPA on the explicitly concatenated sequence.

Oracle: the logical sequence (sinks then window, oldest first) is built first as contiguous K/V and
attended with SDPA (causal for the last Q rows, or full); the ring buffer is then filled by
scattering that sequence at a wrapped offset, so the kernel's in-place addressing is what is tested.
Tolerance 1e-5 (fp32)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from streamrt.kernels.sink_attention import sink_ring_attention


def make_case(B, Hq, Hkv, D, sink, cap, ring_len, ring_start, Q, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    L = sink + ring_len
    seq_k = torch.randn(B, Hkv, L, D, generator=g)
    seq_v = torch.randn(B, Hkv, L, D, generator=g)
    q = torch.randn(B, Hq, Q, D, generator=g)
    k_buf = torch.randn(B, Hkv, cap, D, generator=g)  # garbage outside the valid rows
    v_buf = torch.randn(B, Hkv, cap, D, generator=g)
    ring = cap - sink
    k_buf[:, :, :sink] = seq_k[:, :, :sink]
    v_buf[:, :, :sink] = seq_v[:, :, :sink]
    for i in range(ring_len):
        r = sink + (ring_start + i) % ring
        k_buf[:, :, r] = seq_k[:, :, sink + i]
        v_buf[:, :, r] = seq_v[:, :, sink + i]
    return q.to(dtype), k_buf.to(dtype), v_buf.to(dtype), seq_k, seq_v


def oracle(q, seq_k, seq_v, causal):
    Hq, Hkv = q.shape[1], seq_k.shape[1]
    k = seq_k.repeat_interleave(Hq // Hkv, 1)
    v = seq_v.repeat_interleave(Hq // Hkv, 1)
    Q, L = q.shape[2], k.shape[2]
    mask = None
    if causal:
        mask = torch.ones(Q, L, dtype=torch.bool).tril(diagonal=L - Q)
    return F.scaled_dot_product_attention(q.float(), k, v, attn_mask=mask)


@pytest.mark.parametrize(
    "B,Hq,Hkv,D,sink,cap,ring_len,ring_start,Q",
    [
        (1, 4, 2, 16, 4, 20, 16, 5, 1),  # decode, full wrapped ring, GQA 2
        (2, 4, 4, 8, 2, 12, 7, 9, 3),  # partly filled ring wrapping, MHA
        (1, 6, 2, 32, 0, 16, 16, 0, 16),  # no sinks, chunk prefill = whole window
        (1, 2, 1, 16, 5, 9, 4, 3, 4),  # MQA
    ],
)
@pytest.mark.parametrize("causal", [True, False])
def test_reference_matches_sdpa_on_concatenated_sequence(
    B, Hq, Hkv, D, sink, cap, ring_len, ring_start, Q, causal
):
    q, kb, vb, sk, sv = make_case(B, Hq, Hkv, D, sink, cap, ring_len, ring_start, Q)
    got = sink_ring_attention(
        q, kb, vb, sink_len=sink, ring_start=ring_start, ring_len=ring_len, causal=causal
    )
    assert (got - oracle(q, sk, sv, causal)).abs().max().item() <= 1e-5
