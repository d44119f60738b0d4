"""Streaming engine == a cache-free reference that recomputes every forward densely (fp64).

The reference re-implements each schedule with the model run over all frames so far under an explicit
frame mask (no FrameCache): the sequential block loop with the block-causal sink + window mask, and the
pipelined schedules with the in-flight rows masked causally (rolling) or per stage (stream batch).
Both sides draw their noise from generators in the same state.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from streamrt.cache.frame import Absolute
from streamrt.models.gen.dit import DenseContext, block_causal_mask
from streamrt.models.gen.flow import step, timesteps
from streamrt.models.gen.model import GenModel

from streamrt.gen.config import GenEngineConfig
from streamrt.gen.engine import GenEngine

F64 = torch.float64


def _ts(model: GenModel, steps: int) -> torch.Tensor:
    return timesteps(steps, model.spec.shift).to(F64)


def _dense(model: GenModel, xs, ts, text, mask) -> torch.Tensor:
    return model(xs, ts, text, DenseContext(model.dit.grid(8, 8), torch.arange(xs.shape[1]), mask))


def _step(cfg: GenEngineConfig, x, x0, t_from, t_to, g) -> torch.Tensor:
    """The denoise step written from its definition: euler follows the flow; renoise puts x0 at the
    next level with fresh noise from the stream's generator (none drawn for the last step)."""
    if cfg.sampler == "renoise" and t_to > 0:
        return (1 - t_to) * x0 + t_to * torch.randn(x.shape, generator=g).to(F64)
    return step(x, x0, t_from, t_to)


def _sequential_reference(
    model: GenModel, cfg: GenEngineConfig, prompt: str, n_blocks: int, guided_blocks: int = 0
) -> torch.Tensor:
    """The block loop recomputed densely; the first `guided_blocks` blocks use classifier-free guidance
    with the empty prompt at `cfg.guidance`. Exact against the engine for 0 or 1 guided blocks only: a
    later block's null forward here recomputes its context under the empty prompt, while the engine
    reads the context as committed under the prompt."""
    g = torch.Generator().manual_seed(cfg.seed)
    text = model.encode_prompts([prompt]).to(F64)
    null = model.encode_null().to(F64)
    b, frames = cfg.block_frames, []
    for n in range(n_blocks):
        x = torch.randn(1, b, 3, 8, 8, generator=g).to(F64)
        ts = _ts(model, cfg.first_block_steps if n == 0 else cfg.steps)
        mask = block_causal_mask([b] * (n + 1), sink=cfg.sink_frames, window=cfg.window_frames)
        for i in range(len(ts) - 1):
            xs = torch.cat([*frames, x], dim=1)
            t = torch.cat([torch.zeros(1, n * b, dtype=F64), ts[i].expand(1, b)], dim=1)
            x0 = _dense(model, xs, t, text, mask)[:, -b:]
            if n < guided_blocks:
                x0_null = _dense(model, xs, t, null, mask)[:, -b:]
                x0 = x0_null + cfg.guidance * (x0 - x0_null)
            x = _step(cfg, x, x0, ts[i], ts[i + 1], g)
        frames.append(x.clamp(-1, 1))
    return torch.cat(frames, dim=1)


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("sampler", ["euler", "renoise"])
def test_sequential_streaming_equals_dense_block_causal(tiny: GenModel, steps: int, sampler: str) -> None:
    cfg = GenEngineConfig(
        steps=steps, first_block_steps=4, block_frames=2, sink_frames=1, window_frames=3, sampler=sampler
    )  # type: ignore[arg-type]
    eng = GenEngine(tiny, cfg, policy=Absolute(), dtype=F64)
    eng.set_prompt("a red circle")
    out = torch.cat([eng.next_block() for _ in range(7)], dim=1)  # window fills after 2 blocks, then rolls
    ref = _sequential_reference(tiny, cfg, "a red circle", 7)
    assert (out - ref).abs().max() < 1e-10
    assert eng.cache.committed == 14 and eng.cache.n_win == 3


def test_guided_first_block_equals_dense_guidance(tiny: GenModel) -> None:
    """Guidance on the first block (no context yet, so the dense oracle is exact), plain after it: the
    later blocks read the guided block's K/V as committed under the prompt."""
    cfg = GenEngineConfig(
        steps=2,
        first_block_steps=3,
        block_frames=2,
        sink_frames=1,
        window_frames=3,
        guidance=2.5,
        guidance_frames=2,
    )
    eng = GenEngine(tiny, cfg, policy=Absolute(), dtype=F64)
    eng.set_prompt("a red circle")
    out = torch.cat([eng.next_block() for _ in range(4)], dim=1)
    ref = _sequential_reference(tiny, cfg, "a red circle", 4, guided_blocks=1)
    plain = _sequential_reference(tiny, cfg, "a red circle", 4)
    assert (out - ref).abs().max() < 1e-10
    assert (out[:, :2] - plain[:, :2]).abs().max() > 1e-3  # guidance changed the first block


def _pipelined_reference(
    model: GenModel, cfg: GenEngineConfig, prompt: str, ticks: int
) -> list[torch.Tensor]:
    """Rolling / stream-batch with dense forwards: committed frames + [pending clean | noisy stages]."""
    g = torch.Generator().manual_seed(cfg.seed)
    text = model.encode_prompts([prompt]).to(F64)
    s, ts = cfg.steps, _ts(model, cfg.steps)
    committed: list[torch.Tensor] = []
    pending: torch.Tensor | None = None
    noisy: list[list] = []  # [x, step]
    out = []
    for _ in range(ticks):
        if len(noisy) < s:
            noisy.append([torch.randn(1, 1, 3, 8, 8, generator=g).to(F64), 0])
        parts = ([pending] if pending is not None else []) + [x for x, _ in noisy]
        c, k = len(committed), len(parts)
        n = c + k
        mask = torch.zeros(n, n, dtype=torch.bool)
        mask[:c, :c] = (
            block_causal_mask([1] * c, sink=cfg.sink_frames, window=cfg.window_frames) if c else mask[:0, :0]
        )
        visible = [j for j in range(c) if j < cfg.sink_frames or j >= c - cfg.window_frames]
        for i in range(k):
            mask[c + i, visible] = True
            if cfg.schedule == "rolling":
                mask[c + i, c : c + i + 1] = True
            else:
                mask[c + i, c + i] = True
        clean = 0 if pending is None else 1
        t = torch.cat([torch.zeros(c + clean, dtype=F64), torch.stack([ts[st] for _, st in noisy])])[None]
        v = _dense(model, torch.cat([*committed, *parts], dim=1), t, text, mask)[:, c:]
        if pending is not None:
            committed.append(pending)
            pending = None
        for i, blk in enumerate(noisy):
            blk[0] = _step(cfg, blk[0], v[:, clean + i : clean + i + 1], ts[blk[1]], ts[blk[1] + 1], g)
            blk[1] += 1
        if noisy[0][1] == s:
            pending = noisy.pop(0)[0].clamp(-1, 1)
            out.append(pending)
    return out


@pytest.mark.parametrize("schedule", ["rolling", "stream_batch"])
@pytest.mark.parametrize("sampler", ["euler", "renoise"])
def test_pipelined_schedules_equal_dense_reference(tiny: GenModel, schedule: str, sampler: str) -> None:
    cfg = GenEngineConfig(schedule=schedule, steps=3, sink_frames=1, window_frames=3, sampler=sampler)  # type: ignore[arg-type]
    eng = GenEngine(tiny, cfg, policy=Absolute(), dtype=F64)
    eng.set_prompt("a blue square")
    got = [b for b in (eng.next_block() for _ in range(12)) if b is not None]
    ref = _pipelined_reference(tiny, cfg, "a blue square", 12)
    assert len(got) == len(ref) == 12 - 2  # the pipeline fills in steps - 1 ticks
    for a, b in zip(got, ref, strict=True):
        assert (a - b).abs().max() < 1e-10


def test_recache_equals_rebuild_and_hard_cut_equals_fresh_start(tiny: GenModel) -> None:
    cfg = GenEngineConfig(steps=2, first_block_steps=2, block_frames=2, sink_frames=1, window_frames=3)
    eng = GenEngine(tiny, cfg, dtype=F64)
    eng.set_prompt("a red circle")
    frames = torch.cat([eng.next_block() for _ in range(5)], dim=1)
    eng.set_prompt("a green triangle")  # KV-recache (default)
    assert eng.counters["recaches"] == 1
    kept = torch.cat([frames[:, :1], frames[:, -3:]], dim=1)
    assert torch.equal(eng.cache.kept_frames(), kept)
    state = eng.gen.get_state()
    out = eng.next_block()
    # reference: dense forward over the kept frames (re-encoded in blocks of 2) under the new prompt
    g = torch.Generator()
    g.set_state(state)
    text = tiny.encode_prompts(["a green triangle"]).to(F64)
    x = torch.randn(1, 2, 3, 8, 8, generator=g).to(F64)
    ts = _ts(tiny, 2)
    mask = block_causal_mask([2, 2, 2])
    for i in range(2):
        t = torch.cat([torch.zeros(1, 4, dtype=F64), ts[i].expand(1, 2)], dim=1)
        x = step(x, _dense(tiny, torch.cat([kept, x], dim=1), t, text, mask)[:, -2:], ts[i], ts[i + 1])
    assert (out - x.clamp(-1, 1)).abs().max() < 1e-10

    state = eng.gen.get_state()
    eng.set_prompt("a white square", mode="hard_cut")
    assert eng.cache.committed == 0 and eng.counters["hard_cuts"] == 1
    cut = eng.next_block()
    fresh = GenEngine(tiny, cfg, dtype=F64)
    fresh.gen.set_state(state)
    fresh.set_prompt("a white square")
    assert torch.equal(cut, fresh.next_block())


def test_prompt_switch_mode_follows_the_checkpoint_unless_configured(tiny: GenModel, tmp_path) -> None:
    """A checkpoint that names `prompt_switch: hard_cut` gets hard cuts by default (saved and loaded);
    the engine config and an explicit mode still override it."""
    cut_model = GenModel(dataclasses.replace(tiny.spec, prompt_switch="hard_cut"))
    cut_model.load_state_dict(tiny.state_dict())
    cut_model.save(tmp_path / "m")
    loaded = GenModel.load(tmp_path / "m")
    assert loaded.spec.prompt_switch == "hard_cut"
    cfg = GenEngineConfig(steps=1, first_block_steps=1, block_frames=2)
    for model, config, mode, cuts in [
        (loaded, cfg, None, 1),
        (loaded, cfg.replace(prompt_switch="recache"), None, 0),
        (loaded, cfg, "recache", 0),
        (tiny, cfg, None, 0),
    ]:
        eng = GenEngine(model, config, dtype=next(model.parameters()).dtype)
        eng.set_prompt("a red circle")
        eng.next_block()
        eng.set_prompt("a blue square", mode=mode)
        assert (eng.counters["hard_cuts"], eng.counters["recaches"]) == (cuts, 1 - cuts)


def test_prompt_switch_flushes_in_flight_frames(tiny: GenModel) -> None:
    eng = GenEngine(tiny, GenEngineConfig(schedule="rolling", steps=3, window_frames=3), dtype=F64)
    eng.set_prompt("a red circle")
    for _ in range(6):
        eng.next_block()
    assert len(eng._noisy) == 2 and eng._pending is not None  # steady state after a tick
    eng.set_prompt("a blue circle")
    assert eng.counters["flushed_blocks"] == 2 and not eng._noisy and eng._pending is None
    assert eng.cache.committed == eng.cache.n_sink + eng.cache.n_win  # the emitted frames, re-encoded


def test_v2v_skips_near_identical_inputs(tiny: GenModel) -> None:
    eng = GenEngine(tiny, GenEngineConfig(steps=2, block_frames=1, v2v_strength=0.5), dtype=F64)
    eng.set_prompt("a red circle")
    g = torch.Generator().manual_seed(3)
    a = torch.rand(1, 1, 3, 8, 8, generator=g, dtype=F64) * 2 - 1
    out_a, rep = eng.transform(a)
    assert not rep and eng.cache.committed == 1
    out_b, rep = eng.transform(a + 1e-3)  # below the similarity threshold: repeated, cache untouched
    assert rep and torch.equal(out_a, out_b) and eng.cache.committed == 1 and eng.counters["v2v_skipped"] == 1
    _, rep = eng.transform(-a)
    assert not rep and eng.cache.committed == 2


def test_samplers_differ_only_with_more_than_one_step(tiny: GenModel) -> None:
    """One step lands on x0 under both samplers; with more, renoise draws other noise than euler's flow."""

    def frames(sampler: str, steps: int) -> torch.Tensor:
        cfg = GenEngineConfig(steps=steps, first_block_steps=steps, sampler=sampler)  # type: ignore[arg-type]
        eng = GenEngine(tiny, cfg, dtype=F64)
        eng.set_prompt("a red circle")
        return torch.cat([eng.next_block() for _ in range(3)], dim=1)

    assert torch.equal(frames("euler", 1), frames("renoise", 1))
    assert (frames("euler", 3) - frames("renoise", 3)).abs().max() > 1e-3


def test_sampler_follows_the_checkpoint_unless_configured(tiny: GenModel, tmp_path) -> None:
    tiny.save(tmp_path)
    cfg = (tmp_path / "config.json").read_text()
    (tmp_path / "config.json").write_text(cfg.replace('"sampler": "euler"', '"sampler": "renoise"'))
    model = GenModel.load(tmp_path)
    assert model.spec.sampler == "renoise" and tiny.spec.sampler == "euler"
    assert GenEngine(model).sampler == "renoise"
    assert GenEngine(model, GenEngineConfig(sampler="euler")).sampler == "euler"
    with pytest.raises(ValueError, match="E_GEN_CONFIG"):
        GenEngineConfig(sampler="ddim")  # type: ignore[arg-type]
