"""SmolVLM / Idefics3 adapter: chunked streaming path (1-D positions, StreamCache) equals one
monolithic Hugging Face forward with image tokens and pixel values; the fixed position limit is
enforced with a typed error."""

from __future__ import annotations

import pytest
import torch
from streamrt.cache import StreamCacheConfig
from streamrt.models.vlm import AdapterError, load_adapter


@pytest.mark.parametrize("model_type", ["idefics3", "smolvlm"])
def test_chunked_equals_monolithic(frames, tiny_checkpoints, model_type):
    adapter = load_adapter(tiny_checkpoints[model_type])
    assert adapter.fps == 1.0 and adapter.frames_per_chunk == 1 and adapter.settings.max_positions == 256
    chunks = [(frames(1, 30 + 10 * s, 50, s), (float(s),)) for s in range(3)]
    cache = adapter.new_cache(StreamCacheConfig(capacity=512))
    outs = [adapter.prefill_text(cache, adapter.system_ids(), kind="system")]
    for f, t in chunks:
        c = adapter.encode_chunk(f, t)
        assert c.grid_thw == (1, 2, 2) and c.features.shape == (1, 4, 64)
        outs.append(adapter.prefill_vision(cache, c))
    q = adapter.forward_text(cache, adapter.user_ids("what colour is the square?"), kind="user")

    model = adapter.model
    image = model.config.image_token_id
    ids, ends = adapter.system_ids(), []
    ends.append(len(ids) - 1)
    prefix, suffix = (
        adapter.encode(adapter.template.vision_prefix),
        adapter.encode(adapter.template.vision_suffix),
    )
    for _ in chunks:
        ids = ids + prefix + [image] * 4 + suffix
        ends.append(len(ids) - 1)
    qids = adapter.user_ids("what colour is the square?")
    ids = ids + qids
    px = torch.from_numpy(__import__("numpy").concatenate([adapter.pixel_values(f) for f, _ in chunks]))[
        None
    ]  # [1, images, 3, S, S]
    with torch.no_grad():
        ref = model(input_ids=torch.tensor([ids]), pixel_values=px).logits[0].float()
    for i, e in enumerate(ends):
        torch.testing.assert_close(outs[i], ref[e], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(q, ref[-len(qids) :], atol=2e-5, rtol=1e-4)


def test_pixel_values_match_processor(frames, tiny_checkpoints):
    """Our resize + normalise equals Idefics3ImageProcessorPil without image splitting, bit for bit."""
    import numpy as np
    from transformers import Idefics3ImageProcessorPil

    adapter = load_adapter(tiny_checkpoints["idefics3"])
    proc = Idefics3ImageProcessorPil(
        do_image_splitting=False, size={"longest_edge": 32}, max_image_size={"longest_edge": 32}
    )
    for h, w in [(30, 50), (77, 41), (32, 32), (200, 120)]:
        img = frames(1, h, w, h)[0]
        ref = proc(images=[[img]], return_tensors="np")["pixel_values"][0]
        assert np.array_equal(adapter.pixel_values(img[None]), ref), (h, w)


def test_position_limit(frames, tiny_checkpoints):
    adapter = load_adapter(tiny_checkpoints["idefics3"])
    cache = adapter.new_cache(StreamCacheConfig(capacity=1024))
    adapter.prefill_text(cache, [5] * 250, kind="system")
    with pytest.raises(AdapterError) as e:
        adapter.prefill_vision(cache, adapter.encode_chunk(frames(1, 32, 32, 0), (0.0,)))
    assert e.value.code == "E_MODEL_POSITIONS"
