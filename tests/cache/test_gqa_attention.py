"""The packed grouped-query attention (`use_gqa_attention`) against transformers' stock SDPA
attention: the same model, the same inputs, inside the model (chunks over a StreamCache, a padded
batch) and the attention function alone (per-head masks, a non-causal module)."""

from __future__ import annotations

import torch
from streamrt.cache import StreamCacheConfig, attention_implementation, stream_cache_for, use_gqa_attention
from streamrt.cache.hf import GQA_ATTENTION_NAME, _gqa_attention
from torch.nn import functional as F

TOL = 1e-5
CHUNKS = [(0, 9), (9, 10), (10, 14), (14, 30)]  # a prefill, one token, a verify of 4, a long chunk


def _chunked(model, ids: torch.Tensor) -> torch.Tensor:
    """Logits [1, T, V] of `ids` fed chunk by chunk through a StreamCache."""
    cache, hf = stream_cache_for(model.config, StreamCacheConfig(capacity=64))
    outs = [
        model(input_ids=ids[:, a:b], position_ids=cache.append("text", b - a), past_key_values=hf).logits
        for a, b in CHUNKS
    ]
    return torch.cat(outs, 1)


def test_packed_attention_equals_stock_sdpa_over_the_stream_cache(tiny):
    model = tiny("qwen2")  # 4 query heads over 2 K/V heads
    ids = torch.randint(3, 120, (1, 30), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        stock = _chunked(model, ids)
        full = model(input_ids=ids).logits
        with attention_implementation(model, "sdpa"):  # a scope to restore the model after
            assert use_gqa_attention(model)
            assert not use_gqa_attention(model)  # already switched: nothing left to do
            packed = _chunked(model, ids)
            with attention_implementation(model, "sdpa", only=GQA_ATTENTION_NAME):
                assert model.config._attn_implementation == "sdpa"
            assert model.config._attn_implementation == GQA_ATTENTION_NAME
    assert model.config._attn_implementation == "sdpa"
    assert (packed - stock).abs().max().item() <= TOL
    assert (packed - full).abs().max().item() <= 1e-4


def test_packed_attention_honours_the_padding_mask(tiny):
    model = tiny("qwen2")
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(3, 120, (2, 12), generator=g)
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :5] = 0  # left padding in the second row
    with torch.no_grad():
        stock = model(input_ids=ids, attention_mask=mask).logits
        with attention_implementation(model, "sdpa"):
            use_gqa_attention(model)
            packed = model(input_ids=ids, attention_mask=mask).logits
    assert (packed[0] - stock[0]).abs().max().item() <= TOL
    assert (packed[1, 5:] - stock[1, 5:]).abs().max().item() <= TOL


class _Module(torch.nn.Module):
    def __init__(self, causal: bool) -> None:
        super().__init__()
        self.is_causal = causal


def test_attention_function_per_head_masks_and_non_causal():
    g = torch.Generator().manual_seed(5)
    q = torch.randn(2, 6, 5, 8, generator=g)  # [B, Hq, Q, D]: 3 query heads per K/V head
    k, v = torch.randn(2, 2, 11, 8, generator=g), torch.randn(2, 2, 11, 8, generator=g)  # [B, Hkv, L, D]
    kr, vr = k.repeat_interleave(3, 1), v.repeat_interleave(3, 1)  # [B, Hq, L, D]
    head_mask = torch.rand(2, 6, 5, 11, generator=g) > 0.3
    head_mask[..., 0] = True  # every row sees a key
    causal = torch.arange(11)[None] <= (6 + torch.arange(5))[:, None]  # bottom-right: [Q, L]
    cases = [
        (_Module(True), head_mask, head_mask),
        (_Module(True), head_mask[:, :1], head_mask[:, :1]),
        (_Module(True), None, causal),
        (_Module(False), None, None),
    ]
    for module, given, oracle_mask in cases:
        out, _ = _gqa_attention(module, q, k, v, given, scaling=0.3, dropout=0.0)  # [B, Q, Hq, D]
        oracle = F.scaled_dot_product_attention(q, kr, vr, attn_mask=oracle_mask, scale=0.3).transpose(1, 2)
        assert (out - oracle).abs().max().item() <= 1e-6
