"""Triton kernels against their PyTorch references, under `TRITON_INTERPRET=1` on CPU tensors.

Triton picks the interpreter when a kernel is decorated, i.e. when `streamrt.kernels.*` is first
imported, so the parity cases run in a child pytest process whose environment sets the variable
before anything imports Triton; the parent test only launches it and reports its output. Shapes are
tiny (the interpreter is ~1000x slower than torch). Tolerances: fp32 1e-5, fp16 2e-3, bf16 3e-2 (about
one ulp; attention, RoPE shift), similarity 1e-6; kept indices exactly equal.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = pytest.mark.triton

if not INTERPRETED:

    def test_triton_kernels_match_references_in_interpreter():
        pytest.importorskip("triton")
        env = dict(os.environ, TRITON_INTERPRET="1")
        args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "triton", __file__]
        res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
        assert " passed" in res.stdout and "skipped" not in res.stdout.splitlines()[-1], res.stdout[-2000:]

else:
    from streamrt.kernels.rope_shift import rope_shift_ref, rope_shift_triton
    from streamrt.kernels.sink_attention import sink_ring_attention_ref, sink_ring_attention_triton
    from streamrt.kernels.token_drop import select_kept, token_similarity_ref, token_similarity_triton

    TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 3e-2}  # bf16: about one ulp at |x| < 4

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
    @pytest.mark.parametrize(
        "shape,sections,axes",
        [
            ((1, 2, 5, 16), None, 1),
            ((2, 3, 17, 8), None, 1),
            ((1, 2, 9, 16), (2, 3, 3), 3),
            ((1, 1, 4, 16), (2, 3, 3), 1),
        ],
    )
    def test_rope_shift(dtype, shape, sections, axes):
        g = torch.Generator().manual_seed(0)
        buf = torch.randn(shape[0], shape[1], shape[2] + 3, shape[3], generator=g).to(dtype)
        delta = torch.randint(-50, 50, (axes, shape[2]), generator=g)
        inv = 1.0 / (10000 ** (torch.arange(0, shape[3], 2).float() / shape[3]))
        a, b = buf.clone(), buf.clone()
        rope_shift_ref(a[:, :, 2 : 2 + shape[2]], delta, inv, sections)
        rope_shift_triton(b[:, :, 2 : 2 + shape[2]], delta, inv, sections)
        assert (a.float() - b.float()).abs().max().item() <= TOL[dtype]
        assert torch.equal(a[:, :, :2], b[:, :, :2]) and torch.equal(a[:, :, -1], b[:, :, -1])

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
    @pytest.mark.parametrize(
        "B,Hq,Hkv,D,sink,cap,ring_len,ring_start,Q,causal",
        [
            (1, 4, 2, 16, 4, 20, 16, 5, 1, True),
            (2, 2, 2, 8, 2, 12, 7, 9, 3, True),
            (1, 2, 1, 16, 3, 40, 33, 30, 18, True),
            (1, 4, 2, 16, 0, 16, 10, 12, 10, False),
        ],
    )
    def test_sink_ring_attention(dtype, B, Hq, Hkv, D, sink, cap, ring_len, ring_start, Q, causal):
        g = torch.Generator().manual_seed(1)
        q = torch.randn(B, Hq, Q, D, generator=g).to(dtype)
        kb = torch.randn(B, Hkv, cap, D, generator=g).to(dtype)
        vb = torch.randn(B, Hkv, cap, D, generator=g).to(dtype)
        kw = dict(sink_len=sink, ring_start=ring_start, ring_len=ring_len, causal=causal)
        ref = sink_ring_attention_ref(q, kb, vb, **kw)
        got = sink_ring_attention_triton(q, kb, vb, **kw)
        assert (ref.float() - got.float()).abs().max().item() <= TOL[dtype]

    @pytest.mark.parametrize("M,C", [(7, 8), (40, 96), (16, 200)])
    def test_token_similarity_and_kept_indices(M, C):
        g = torch.Generator().manual_seed(2)
        a = torch.randn(M, C, generator=g)
        b = torch.where(
            torch.rand(M, 1, generator=g) < 0.5,
            a + 0.05 * torch.randn(M, C, generator=g),
            torch.randn(M, C, generator=g),
        )
        ref, got = token_similarity_ref(a, b), token_similarity_triton(a, b)
        assert (ref - got).abs().max().item() <= 1e-6
        assert torch.equal(select_kept(ref, 0.9, 5), select_kept(got, 0.9, 5))
