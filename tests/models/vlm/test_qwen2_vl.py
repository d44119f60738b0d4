"""Qwen2-VL / Qwen2.5-VL adapter: the chunked streaming path (StreamCache, explicit M-RoPE positions,
our patchify) equals one monolithic Hugging Face forward over the same interleaved sequence, with
and without differential token drop (oracle: HF's own get_rope_index and vision tower)."""

from __future__ import annotations

import pytest
import torch
from streamrt.cache import StreamCacheConfig
from streamrt.models.vlm import AdapterError, load_adapter

QUESTION = "what colour is the square?"


def _stream(adapter, chunks, kept=None):
    """Chunked path: system, chunks (with optional kept indices), a question. Returns the logits
    after each segment ([V] each) and all logits of the question [n, V]."""
    cache = adapter.new_cache(StreamCacheConfig(capacity=1024))
    outs = [adapter.prefill_text(cache, adapter.system_ids(), kind="system")]
    for i, (f, t) in enumerate(chunks):
        c = adapter.encode_chunk(f, t)
        outs.append(adapter.prefill_vision(cache, c, None if kept is None else kept[i]))
    q = adapter.forward_text(cache, adapter.user_ids(QUESTION), kind="user")
    return outs, q, cache


def _monolithic(adapter, chunks, kept=None):
    """One HF pass: input ids with video pads, HF vision features over all chunks, HF get_rope_index
    positions; dropped tokens are removed from embeddings and positions afterwards."""
    model = adapter.model
    pad = model.config.video_token_id
    ids, patches, grids, ends = list(adapter.system_ids()), [], [], []
    ends.append(len(ids) - 1)
    prefix, suffix = (
        adapter.encode(adapter.template.vision_prefix),
        adapter.encode(adapter.template.vision_suffix),
    )
    for f, _ in chunks:
        p, g = adapter.pixel_patches(f)
        patches.append(torch.from_numpy(p))
        grids.append(g)
        ids += prefix + [pad] * (g[0] * g[1] * g[2] // adapter.merge**2) + suffix
        ends.append(len(ids) - 1)
    q = adapter.user_ids(QUESTION)
    ids += q
    ids_t = torch.tensor([ids])
    grid = torch.tensor(grids)
    mm = (ids_t == pad).int() * 2
    with torch.no_grad():
        vis = torch.cat(model.model.get_video_features(torch.cat(patches), grid).pooler_output)
        pos, _ = model.model.get_rope_index(ids_t, mm, video_grid_thw=grid)  # [3, 1, L]
        x = model.model.language_model.embed_tokens(ids_t)
        x = x.masked_scatter((ids_t == pad)[..., None], vis)
        keep = torch.ones(len(ids), dtype=torch.bool)
        if kept is not None:
            vis_rows = torch.nonzero(ids_t[0] == pad).flatten()
            n = len(vis_rows) // len(chunks)
            for i, k in enumerate(kept):
                drop = torch.ones(n, dtype=torch.bool)
                drop[k] = False
                keep[vis_rows[i * n : (i + 1) * n][drop]] = False
        h = model.model.language_model(
            inputs_embeds=x[:, keep], position_ids=pos[:, :, keep]
        ).last_hidden_state
        logits = model.lm_head(h)[0].float()
    new_index = torch.cumsum(keep, 0) - 1
    return [logits[new_index[e]] for e in ends], logits[-len(q) :]


@pytest.mark.parametrize("model_type", ["qwen2_vl", "qwen2_5_vl"])
def test_chunked_equals_monolithic(frames, tiny_checkpoints, model_type):
    adapter = load_adapter(tiny_checkpoints[model_type])
    chunks = [(frames(2, 40, 56, s), (s * 1.0, s + 0.5)) for s in range(3)]
    outs, q, cache = _stream(adapter, chunks)
    ref_outs, ref_q = _monolithic(adapter, chunks)
    for a, b in zip(outs, ref_outs, strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(q, ref_q, atol=2e-5, rtol=1e-4)
    kinds = [s.kind for s in cache.store.segments]
    assert kinds == ["system", "vision", "vision", "vision", "user"]
    assert [s.timestamp for s in cache.store.segments[1:4]] == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("model_type", ["qwen2_vl", "qwen2_5_vl"])
def test_token_drop_keeps_positions(frames, tiny_checkpoints, model_type):
    """Kept tokens keep the positions HF gives them in the undropped sequence; dropping nothing
    (all indices kept) is exactly the no-drop path."""
    adapter = load_adapter(tiny_checkpoints[model_type])
    chunks = [(frames(2, 64, 64, s), (s * 1.0, s + 0.5)) for s in range(3)]  # 4 x 4 tokens each
    g = torch.Generator().manual_seed(0)
    kept = [torch.arange(16)] + [torch.randperm(16, generator=g)[:4].sort().values for _ in range(2)]
    outs, q, cache = _stream(adapter, chunks, kept)
    ref_outs, ref_q = _monolithic(adapter, chunks, kept)
    for a, b in zip(outs, ref_outs, strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(q, ref_q, atol=2e-5, rtol=1e-4)
    seg = cache.store.segments[2]
    assert seg.kept is not None and seg.kept.sum() == 4 and seg.length == 4 + 2
    all_kept, _, _ = _stream(adapter, chunks, [torch.arange(16)] * 3)
    none_kept, _, _ = _stream(adapter, chunks)
    for a, b in zip(all_kept, none_kept, strict=True):
        assert torch.equal(a, b)


def test_chunk_shapes_and_features(frames, tiny_checkpoints):
    adapter = load_adapter(tiny_checkpoints["qwen2_vl"])
    c = adapter.encode_chunk(frames(2, 64, 96, 1), (3.0, 3.5))
    assert c.grid_thw == (1, 4, 6) and c.embeds.shape == (24, 64) and c.features.shape == (1, 24, 64)
    assert c.timestamp == 3.0 and c.num_tokens == 24
    assert adapter.fps == 2.0 and adapter.frames_per_chunk == 2
    assert adapter.special.eos_id == adapter.tokenizer.convert_tokens_to_ids("<|im_end|>")


@pytest.mark.parametrize("case", ["length", "dtype", "channels", "times"])
def test_bad_frames(frames, tiny_checkpoints, case):
    adapter = load_adapter(tiny_checkpoints["qwen2_vl"])
    bad, times = {
        "length": (frames(3, 32, 32, 0), (0.0, 0.5, 1.0)),
        "dtype": (frames(2, 32, 32, 0).astype("float32"), (0.0, 0.5)),
        "channels": (frames(2, 32, 32, 0)[..., :2], (0.0, 0.5)),
        "times": (frames(2, 32, 32, 0), (0.0,)),
    }[case]
    with pytest.raises(AdapterError) as e:
        adapter.encode_chunk(bad, times)
    assert e.value.code == "E_MODEL_INPUT"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_close_to_fp32(frames, tiny_checkpoints, dtype):
    """bf16/fp16 load and run; their logits stay near the fp32 ones (same weights)."""
    ref = load_adapter(tiny_checkpoints["qwen2_vl"])
    half = load_adapter(tiny_checkpoints["qwen2_vl"], dtype=dtype)
    assert half.dtype == dtype
    chunks = [(frames(2, 32, 32, s), (float(s), s + 0.5)) for s in range(2)]
    a, qa, _ = _stream(ref, chunks)
    b, qb, _ = _stream(half, chunks)
    torch.testing.assert_close(qb, qa, atol=0.05, rtol=0.05)
