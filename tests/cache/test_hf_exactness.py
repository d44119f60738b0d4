"""StreamCache inside real (tiny, random, fp32) Hugging Face models against independent oracles.

Oracles: one monolithic forward of the whole sequence in which the model computes its own positions
(Qwen2-VL / Qwen2.5-VL `get_rope_index`, 1-D arange); the same forward with a 4-D mask hiding the
evicted span from later chunks (`gap`); a from-scratch forward over only the kept tokens (`compact`,
on one-layer models, where cached K/V do not depend on context and the equality is exact); and, for
deeper models without sinks, the masked full forward again (uniform shifts keep every relative
distance). Tolerance 1e-4 absolute on logits throughout.
"""

from __future__ import annotations

import pytest
import torch
from streamrt.cache import (
    CompactPositions,
    GapPositions,
    MasterPositions,
    RetentionPolicy,
    StreamCacheConfig,
    register_attention,
    stream_cache_for,
)

TOL = 1e-4
VIDEO_TOKEN = 121  # the tiny configs' video pad id (tests/cache/conftest.py)
# A stream: ("text", kind, ids) or ("video", grid_patches, seed)
VL_PLAN = [
    ("text", "system", list(range(3, 9))),
    ("video", (2, 4, 4), 1),
    ("text", "user", [10, 11, 12]),
    ("video", (2, 4, 6), 2),
    ("text", "assistant", [20, 21]),
    ("video", (4, 2, 2), 3),
    ("text", "user", [30, 31, 32, 33]),
]


def _merge(grid: tuple[int, int, int]) -> tuple[int, int, int]:
    t, h, w = grid
    return t, h // 2, w // 2


def _time_interval(model) -> float:
    """Temporal position step per grid t: 1 for Qwen2-VL, tokens_per_second * 0.5 s for Qwen2.5-VL."""
    tps = getattr(model.config.vision_config, "tokens_per_second", None)
    return 1.0 if tps is None else tps * 0.5


def vl_stream(model, plan, video_pixels, cache_config: StreamCacheConfig | None = None):
    """Stream `plan` chunk by chunk; returns (per-chunk logits, cache)."""
    cache, hf = stream_cache_for(model.config, cache_config or StreamCacheConfig(capacity=512))
    emb = model.get_input_embeddings()
    outs = []
    for item in plan:
        if item[0] == "text":
            _, kind, ids = item
            pos = cache.append(kind, len(ids))
            x = emb(torch.tensor([ids]))
        else:
            _, grid, seed = item
            feats = model.model.get_video_features(
                video_pixels(grid, seed), torch.tensor([grid])
            ).pooler_output[0]
            p, span = cache.vision_positions_for(_merge(grid), _time_interval(model))
            pos = cache.append("vision", positions=p, span=span)
            x = feats[None]
        with torch.no_grad():
            outs.append(model(inputs_embeds=x, position_ids=pos, past_key_values=hf).logits)
    return outs, cache


def vl_monolithic(model, plan, video_pixels, mask_fn=None):
    """One forward over the whole plan; the model computes positions itself unless given."""
    ids, types, pix, grids = [], [], [], []
    for item in plan:
        if item[0] == "text":
            ids += item[2]
            types += [0] * len(item[2])
        else:
            _, grid, seed = item
            n = grid[0] * grid[1] * grid[2] // 4
            ids += [VIDEO_TOKEN] * n
            types += [2] * n
            pix.append(video_pixels(grid, seed))
            grids.append(grid)
    kw = dict(
        input_ids=torch.tensor([ids]),
        mm_token_type_ids=torch.tensor([types]),
        pixel_values_videos=torch.cat(pix),
        video_grid_thw=torch.tensor(grids),
    )
    if "qwen2_5" in model.config.model_type:
        kw["second_per_grid_ts"] = torch.tensor([0.5] * len(grids))
    if mask_fn is not None:  # the model's own rope index, computed before the 4-D mask hides anything
        rope_kw = {k: kw[k] for k in ("video_grid_thw", "second_per_grid_ts") if k in kw}
        kw["position_ids"], _ = model.model.get_rope_index(
            kw["input_ids"], kw["mm_token_type_ids"], **rope_kw
        )
        kw["attention_mask"] = mask_fn(len(ids))
    with torch.no_grad():
        return model(**kw).logits


@pytest.mark.parametrize("kind", ["qwen2_vl", "qwen2_5_vl"])
def test_vl_streaming_equals_monolithic(tiny, video_pixels, kind):
    model = tiny(kind)
    outs, cache = vl_stream(model, VL_PLAN, video_pixels)
    full = vl_monolithic(model, VL_PLAN, video_pixels)
    assert (torch.cat(outs, 1) - full).abs().max().item() <= TOL
    assert cache.memory().evictions == 0


def rope_index(model, plan) -> torch.Tensor:
    """The model's own M-RoPE positions for a plan: [3, S]."""
    ids, types, grids = [], [], []
    for item in plan:
        if item[0] == "text":
            ids += item[2]
            types += [0] * len(item[2])
        else:
            n = item[1][0] * item[1][1] * item[1][2] // 4
            ids += [VIDEO_TOKEN] * n
            types += [2] * n
            grids.append(item[1])
    kw = (
        {"second_per_grid_ts": torch.tensor([0.5] * len(grids))}
        if "qwen2_5" in model.config.model_type
        else {}
    )
    ref, _ = model.model.get_rope_index(
        torch.tensor([ids]), torch.tensor([types]), video_grid_thw=torch.tensor(grids), **kw
    )
    return ref[:, 0]


@pytest.mark.parametrize("kind", ["qwen2_vl", "qwen2_5_vl"])
def test_vl_position_table_matches_rope_index(tiny, video_pixels, kind):
    model = tiny(kind)
    _, cache = vl_stream(model, VL_PLAN, video_pixels)
    assert torch.equal(cache.positions(), rope_index(model, VL_PLAN))


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_text_streaming_equals_monolithic(tiny, kind):
    model = tiny(kind)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 120, (1, 40), generator=g)
    cache, hf = stream_cache_for(model.config, StreamCacheConfig(capacity=64))
    outs = []
    with torch.no_grad():
        for a, b in [(0, 7), (7, 8), (8, 20), (20, 21), (21, 40)]:
            pos = cache.append("text", b - a)
            outs.append(model(input_ids=ids[:, a:b], position_ids=pos, past_key_values=hf).logits)
        full = model(input_ids=ids).logits
    assert (torch.cat(outs, 1) - full).abs().max().item() <= TOL


def test_idefics3_streams_images_and_text(tiny):
    """SmolVLM / Idefics3: a Llama text model, images as embeddings, 1-D positions. Oracle: the full
    model on input_ids with image tokens + pixel_values (it encodes and merges the images itself)."""
    model = tiny("idefics3")
    img = model.config.image_token_id
    pix = torch.randn(1, 2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    feats = model.model.get_image_features(pix).pooler_output[0].detach()  # [2 * 4, hidden]
    emb = model.get_input_embeddings()
    pieces = [
        ("system", [3, 4, 5]),
        ("vision", feats[:4]),
        ("user", [6, 7]),
        ("vision", feats[4:]),
        ("user", [8]),
    ]
    cache, hf = stream_cache_for(model.config, StreamCacheConfig(capacity=64))
    outs, ids = [], []
    with torch.no_grad():
        for kind, item in pieces:
            x = item[None] if kind == "vision" else emb(torch.tensor([item]))
            ids += [img] * 4 if kind == "vision" else item
            pos = cache.append(kind, x.shape[1])
            outs.append(model(inputs_embeds=x, position_ids=pos, past_key_values=hf).logits)
        full = model(input_ids=torch.tensor([ids]), pixel_values=pix).logits
    assert (torch.cat(outs, 1) - full).abs().max().item() <= TOL


# ---- eviction ------------------------------------------------------------------------------------
TEXT_CHUNKS = [(0, 6, "system"), (6, 14, "text"), (14, 22, "text"), (22, 30, "text")]


def _text_stream(model, ids, policy, sink_tokens=6, first_kind="system"):
    cfg = StreamCacheConfig(
        capacity=64, retention=RetentionPolicy(sink_tokens=sink_tokens, text_window=16), positions=policy
    )
    cache, hf = stream_cache_for(model.config, cfg)
    with torch.no_grad():
        for i, (a, b, kind) in enumerate(TEXT_CHUNKS):
            pos = cache.append(first_kind if i == 0 else kind, b - a)
            out = model(input_ids=ids[:, a:b], position_ids=pos, past_key_values=hf).logits
    return out, cache


def _hide(evicted: range, rows_from: int, *more: tuple[range, int]):
    """A 4-D causal bool mask (True = attend) in which rows from `rows_from` on cannot see `evicted`."""

    def mask(n: int) -> torch.Tensor:
        m = torch.ones(n, n, dtype=torch.bool).tril()
        for span, rows in [(evicted, rows_from), *more]:
            m[rows:, span.start : span.stop] = False
        return m[None, None]

    return mask


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_gap_eviction_equals_masked_full_forward(tiny, kind):
    model = tiny(kind)
    ids = torch.randint(3, 120, (1, 30), generator=torch.Generator().manual_seed(2))
    out, cache = _text_stream(model, ids, GapPositions())
    assert cache.evicted_tokens == 8 and cache.next_position == 30
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=_hide(range(6, 14), 22)(30)).logits
    assert (out - full[:, 22:]).abs().max().item() <= TOL


def test_gap_eviction_equals_masked_full_forward_mrope(tiny, video_pixels):
    model = tiny("qwen2_vl")
    plan = VL_PLAN[:5] + [("video", (2, 4, 4), 9)]  # sys, A(8), user, B(12), asst, C(8): C evicts A
    cfg = StreamCacheConfig(
        capacity=512, retention=RetentionPolicy(vision_chunks=2), positions=GapPositions()
    )
    outs, cache = vl_stream(model, plan, video_pixels, cfg)
    assert cache.evicted_tokens == 8
    # positions of the full sequence: the model's own, unchanged by gap eviction
    full = vl_monolithic(model, plan, video_pixels, mask_fn=_hide(range(6, 14), 31))
    assert (outs[-1] - full[:, -8:]).abs().max().item() <= TOL


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("policy", [CompactPositions(), MasterPositions()])
def test_compact_eviction_equals_from_scratch_over_kept(tiny, kind, policy):
    """One layer: cached K/V are functions of token and position only, so re-indexed survivors are
    exactly what a fresh forward over the kept tokens at contiguous positions computes."""
    model = tiny(kind, layers=1)
    ids = torch.randint(3, 120, (1, 30), generator=torch.Generator().manual_seed(3))
    out, cache = _text_stream(model, ids, policy)
    assert cache.next_position == 22 and torch.equal(cache.positions()[0], torch.arange(22))
    kept = torch.cat([ids[:, :6], ids[:, 14:]], 1)
    with torch.no_grad():
        fresh = model(input_ids=kept).logits
    assert (out - fresh[:, 14:]).abs().max().item() <= TOL


@pytest.mark.parametrize("policy", [CompactPositions(), MasterPositions()])
def test_compact_eviction_equals_from_scratch_mrope(tiny, video_pixels, policy):
    model = tiny("qwen2_vl", layers=1)
    plan = VL_PLAN[:5] + [("video", (2, 4, 4), 9)]
    cfg = StreamCacheConfig(capacity=512, retention=RetentionPolicy(vision_chunks=2), positions=policy)
    outs, cache = vl_stream(model, plan, video_pixels, cfg)
    kept_plan = [plan[0], *plan[2:]]  # the evicted chunk A gone; the model re-derives all positions
    fresh = vl_monolithic(model, kept_plan, video_pixels)
    assert (outs[-1] - fresh[:, -8:]).abs().max().item() <= TOL
    assert torch.equal(cache.positions(), rope_index(model, kept_plan))  # compacted == fresh rope index


@pytest.mark.parametrize("kind", ["llama", "qwen2_vl"])
def test_compact_without_sinks_equals_masked_full_forward(tiny, video_pixels, kind):
    """Deep model, no pinned tokens: every survivor shifts by the same amount, every relative distance
    is kept, so compact == gap == the masked full forward."""
    model = tiny(kind, layers=2)
    if kind == "llama":
        ids = torch.randint(3, 120, (1, 30), generator=torch.Generator().manual_seed(4))
        out, cache = _text_stream(model, ids, CompactPositions(), sink_tokens=0, first_kind="text")
        # window 16 (incoming counts): the first chunk goes before B arrives, A before C
        assert cache.evicted_tokens == 14
        with torch.no_grad():
            full = model(input_ids=ids, attention_mask=_hide(range(0, 6), 14, (range(0, 14), 22))(30)).logits
        assert (out - full[:, 22:]).abs().max().item() <= TOL
    else:
        plan = [
            ("video", (2, 4, 4), 1),
            ("text", "user", [5]),
            ("video", (2, 4, 6), 2),
            ("text", "user", [6]),
        ]
        plan.append(("video", (2, 4, 4), 3))
        cfg = StreamCacheConfig(
            capacity=512,
            retention=RetentionPolicy(sink_tokens=0, vision_chunks=2),
            positions=CompactPositions(),
        )
        outs, cache = vl_stream(model, plan, video_pixels, cfg)
        assert cache.evicted_tokens == 8 and cache.positions()[0, 0].item() == 0
        full = vl_monolithic(model, plan, video_pixels, mask_fn=_hide(range(0, 8), 22))
        assert (outs[-1] - full[:, -8:]).abs().max().item() <= TOL


def test_kernel_attention_inside_the_model_equals_sdpa(tiny):
    """`attn_implementation="streamrt"`: attention through the sink/ring kernel's dispatch point
    reading the cache rows in place; oracle: the stock SDPA monolithic forward."""
    model = tiny("qwen2")
    ids = torch.randint(3, 120, (1, 30), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        full = model(input_ids=ids).logits
        model.set_attn_implementation(register_attention())
        try:
            cache, hf = stream_cache_for(model.config, StreamCacheConfig(capacity=64))
            outs = [
                model(
                    input_ids=ids[:, a:b], position_ids=cache.append("text", b - a), past_key_values=hf
                ).logits
                for a, b in [(0, 9), (9, 10), (10, 30)]
            ]
        finally:
            model.set_attn_implementation("sdpa")
    assert (torch.cat(outs, 1) - full).abs().max().item() <= TOL
