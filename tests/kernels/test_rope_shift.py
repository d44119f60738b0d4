"""RoPE algebra: rotating cached (already rotated) keys by a shift == the model's own rotary at the
shifted position. Oracle: the Hugging Face rotary modules and `apply_rotary_pos_emb` of Llama (1-D)
and Qwen2-VL (M-RoPE, uniform and per-axis shifts). fp32 keys: 1e-4 absolute (positions up to ~800:
the model's own fp32 angle p * inv_freq already carries ~3e-5 of rounding); bf16 storage: one bf16
rounding step (3e-2)."""

from __future__ import annotations

import pytest
import torch
from streamrt.kernels.rope_shift import rope_shift_, rope_shift_ref
from transformers import LlamaConfig, Qwen2VLTextConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as llama_apply
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLRotaryEmbedding
from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb as qwen_apply

D = 32
ROPE = {"rope_type": "default", "rope_theta": 10000.0}


def _llama():
    cfg = LlamaConfig(hidden_size=4 * D, num_attention_heads=4, rope_parameters=ROPE)
    return LlamaRotaryEmbedding(cfg)


def _qwen():
    cfg = Qwen2VLTextConfig(
        hidden_size=4 * D, num_attention_heads=4, rope_parameters=dict(ROPE, mrope_section=[4, 6, 6])
    )
    return Qwen2VLRotaryEmbedding(cfg)


def _rot_1d(rot, k, pos):  # k: [1, H, S, D], pos: [S]
    cos, sin = rot(k, pos[None])
    return llama_apply(k, k, cos, sin)[1]


def _rot_mrope(rot, k, pos):  # pos: [3, S]
    cos, sin = rot(k, pos[:, None, :])
    return qwen_apply(k, k, cos, sin)[1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_1d_shift_equals_rotary_at_shifted_position(dtype):
    rot = _llama()
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(1, 2, 50, D, generator=g)
    pos = torch.randint(0, 500, (50,), generator=g)
    delta = torch.randint(-300, 300, (50,), generator=g).clamp(min=-pos)
    cached = _rot_1d(rot, raw, pos).to(dtype)
    want = _rot_1d(rot, raw, pos + delta)
    got = rope_shift_(cached.clone(), delta[None], rot.inv_freq).float()
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    assert (got - want).abs().max().item() <= tol


@pytest.mark.parametrize("per_axis", [False, True])
def test_mrope_shift_equals_rotary_at_shifted_positions(per_axis):
    rot = _qwen()
    g = torch.Generator().manual_seed(1)
    raw = torch.randn(1, 2, 40, D, generator=g)
    pos = torch.randint(0, 400, (3, 40), generator=g)
    if per_axis:
        delta = torch.randint(-200, 200, (3, 40), generator=g)
    else:
        delta = torch.randint(-200, 200, (1, 40), generator=g).expand(3, 40)
    cached = _rot_mrope(rot, raw, pos)
    want = _rot_mrope(rot, raw, pos + delta)
    got = rope_shift_ref(cached.clone(), delta, rot.inv_freq, (4, 6, 6))
    assert (got - want).abs().max().item() <= 1e-4


def test_shift_is_in_place_and_composes():
    rot = _llama()
    k = torch.randn(2, 3, 7, D)
    view = k[:, :, 2:5]
    before = k.clone()
    rope_shift_(view, torch.full((1, 3), 5), rot.inv_freq)
    assert torch.equal(k[:, :, :2], before[:, :, :2]) and not torch.equal(k[:, :, 2:5], before[:, :, 2:5])
    rope_shift_(view, torch.full((1, 3), -5), rot.inv_freq)
    assert (k - before).abs().max().item() <= 1e-5
