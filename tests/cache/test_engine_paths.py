"""The paths the streaming engine will take, end to end on tiny models (fp32, 1e-4 on logits):

- differential token drop then append: a Qwen2-VL stream whose video chunks keep only changed tokens
  equals one forward over exactly the kept tokens at their original M-RoPE positions (oracle
  positions: the model's own `get_rope_index` of the undropped sequence, selected at kept columns);
- speculative decoding: draft tokens appended, verified, rolled back to the accepted prefix; the
  next step equals a run that only ever appended the accepted tokens.
"""

from __future__ import annotations

import torch
from streamrt.cache import StreamCacheConfig, stream_cache_for
from streamrt.kernels.token_drop import token_drop

TOL = 1e-4
VIDEO_TOKEN = 121


def test_token_drop_stream_equals_forward_over_kept_tokens(tiny, video_pixels):
    model = tiny("qwen2_vl")
    emb = model.get_input_embeddings()
    plan = [
        ("text", [3, 4, 5, 6]),
        ("video", (4, 4, 4), 1),
        ("text", [7, 8]),
        ("video", (4, 4, 4), 2),
        ("text", [9]),
    ]
    cache, hf = stream_cache_for(model.config, StreamCacheConfig(capacity=256))
    outs, xs, cols, ids, types, grids = [], [], [], [], [], []
    prev = None
    dropped = 0
    for kind, arg, *rest in plan:
        start = len(ids)
        if kind == "text":
            pos = cache.append("user", len(arg))
            x = emb(torch.tensor([arg]))
            ids += arg
            types += [0] * len(arg)
            keep = torch.arange(len(arg))
        else:
            grid = arg
            feats = model.model.get_video_features(
                video_pixels(grid, rest[0]), torch.tensor([grid])
            ).pooler_output[0]
            t, h, w = grid[0], grid[1] // 2, grid[2] // 2
            frames = feats.detach().view(t, h * w, -1).clone()
            frames[1] = frames[0] + 0.01 * frames[1]  # a nearly static second frame
            keep = token_drop(frames, prev, threshold=0.5)
            prev = frames[-1]
            p, span = cache.vision_positions_for((t, h, w))
            mask = torch.zeros(t * h * w, dtype=torch.bool)
            mask[keep] = True
            pos = cache.append("vision", positions=p[:, keep], span=span, kept=mask)
            x = frames.reshape(1, t * h * w, -1)[:, keep]
            ids += [VIDEO_TOKEN] * (t * h * w)
            types += [2] * (t * h * w)
            grids.append(grid)
            dropped += t * h * w - keep.numel()
        with torch.no_grad():
            outs.append(model(inputs_embeds=x, position_ids=pos, past_key_values=hf).logits)
        xs.append(x)
        cols.append(start + keep)
    assert dropped >= 8
    full_pos, _ = model.model.get_rope_index(
        torch.tensor([ids]), torch.tensor([types]), video_grid_thw=torch.tensor(grids)
    )
    kept_cols = torch.cat(cols)
    assert torch.equal(cache.positions(), full_pos[:, 0, kept_cols])
    with torch.no_grad():
        ref = model(inputs_embeds=torch.cat(xs, 1), position_ids=full_pos[:, :, kept_cols]).logits
    assert (torch.cat(outs, 1) - ref).abs().max().item() <= TOL


def test_speculation_rollback_then_continue_equals_plain_decoding(tiny):
    model = tiny("llama")
    ids = torch.randint(3, 120, (1, 12), generator=torch.Generator().manual_seed(5))
    draft = torch.tensor([[40, 41, 42, 43]])
    nxt = torch.tensor([[50]])

    def prompt():
        cache, hf = stream_cache_for(model.config, StreamCacheConfig(capacity=64))
        model(input_ids=ids, position_ids=cache.append("system", 12), past_key_values=hf)
        return cache, hf

    with torch.no_grad():
        cache, hf = prompt()
        mark = cache.begin_speculation()
        model(input_ids=draft, position_ids=cache.append("assistant", 4), past_key_values=hf)
        cache.rollback(mark + 2)  # the target accepted two draft tokens
        got = model(input_ids=nxt, position_ids=cache.append("assistant", 1), past_key_values=hf).logits

        ref_cache, ref_hf = prompt()
        model(input_ids=draft[:, :2], position_ids=ref_cache.append("assistant", 2), past_key_values=ref_hf)
        want = model(
            input_ids=nxt, position_ids=ref_cache.append("assistant", 1), past_key_values=ref_hf
        ).logits
    assert cache.next_position == ref_cache.next_position == 15
    assert (got - want).abs().max().item() <= TOL
