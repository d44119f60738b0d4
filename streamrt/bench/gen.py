"""`streamrt bench gen`: the streaming video generator's speed and latency, per schedule and for v2v.

Baseline: the sequential sampler without a KV cache (each denoise step re-runs the model over the kept
sink + window frames and the block: sliding-window recompute). Candidates, all with the built-in model
and the FrameCache: sequential (3 steps, 2-frame blocks), rolling and stream-batch (3 steps, 1-frame
blocks), sequential 1-step, video-to-video (shapes-world input, 1-frame blocks), and sequential at
128x128. Each case rolls out a fresh stream; extra figures per case: time to first frame, per-frame
latency p50/p99 (block entry to emission; v2v: input arrival to output), jitter (|diff latency|)
p50/p99, and the p99 latency of the last part of the rollout over the first ("later/first"; in the
full run the 10-minute case compares minute 10 with minute 1 at 8 fps).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from streamrt.bench.harness import Bench, register
from streamrt.gen.config import GenEngineConfig
from streamrt.gen.engine import GenEngine
from streamrt.gen.stream import Timed, generate, transform
from streamrt.models.gen.data import to_tensor
from streamrt.models.gen.dit import DenseContext, block_causal_mask
from streamrt.models.gen.flow import step, timesteps
from streamrt.models.gen.model import GenModel, load_builtin
from streamrt.synth import World, WorldConfig

PROMPT = "a red circle moving right"


def _figures(timed: list[Timed], split: int) -> dict[str, float]:
    lat = np.array([t.latency_s for t in timed]) * 1e3
    jit = np.abs(np.diff(lat)) if len(lat) > 1 else np.zeros(1)
    first, later = lat[:split], lat[-split:]
    return {
        "ttff_s": timed[0].wall_s,
        "lat_p50_ms": float(np.percentile(lat, 50)),
        "lat_p99_ms": float(np.percentile(lat, 99)),
        "jitter_p50_ms": float(np.percentile(jit, 50)),
        "jitter_p99_ms": float(np.percentile(jit, 99)),
        "later_over_first_p99": float(np.percentile(later, 99) / np.percentile(first, 99)),
    }


def _recompute(model: GenModel, cfg: GenEngineConfig, n: int) -> list[Timed]:
    """The sequential sampler with no cache: every pass recomputes the kept frames (the baseline)."""
    import time

    from streamrt.gen.types import GenFrame

    g = torch.Generator().manual_seed(cfg.seed)
    text = model.encode_prompts([PROMPT])
    grid = model.dit.grid(64, 64)
    b, kept, out, t0 = cfg.block_frames, [], [], time.perf_counter()
    with torch.no_grad():
        while len(out) < n:
            born = time.perf_counter()
            x = torch.randn(1, b, 3, 64, 64, generator=g)
            ts = timesteps(cfg.first_block_steps if not kept else cfg.steps, model.spec.shift)
            ctx = torch.cat(kept, dim=1) if kept else x[:, :0]
            c = ctx.shape[1]
            mask = block_causal_mask([1] * c + [b])
            dense = DenseContext(grid, torch.arange(c + b), mask)
            for i in range(len(ts) - 1):
                t = torch.cat([torch.zeros(1, c), ts[i].expand(1, b)], dim=1)
                x = step(x, model(torch.cat([ctx, x], dim=1), t, text, dense)[:, c:], ts[i], ts[i + 1])
            x = x.clamp(-1, 1)
            frames = [*torch.cat(kept, dim=1).unbind(1)] if kept else []
            frames += list(x.unbind(1))
            keep = frames[: cfg.sink_frames] + frames[cfg.sink_frames :][-cfg.window_frames :]
            kept = [f[:, None] for f in keep]
            now = time.perf_counter()
            for _ in range(b):
                frame = GenFrame(len(out), len(out) / cfg.fps, np.zeros(0, np.uint8), PROMPT)
                out.append(Timed(frame, now - born, now - t0))
    return out[:n]


@register("gen", "streaming video generation: frames/s, first frame, latency p50/p99 and jitter per schedule")
def bench_gen(bench: Bench) -> None:
    model = load_builtin()
    n = 24 if bench.quick else 480  # frames per rollout (8 fps: 3 s quick, 1 minute full)
    split = max(8, n // 6)
    base = GenEngineConfig.preset("quality")
    cases: dict[str, tuple[GenEngineConfig, int]] = {
        "sequential 3-step 64x64": (base, 64),
        "sequential 1-step 64x64": (GenEngineConfig.preset("fast"), 64),
        "rolling 3-step 64x64": (GenEngineConfig.preset("rolling"), 64),
        "stream-batch 3-step 64x64": (GenEngineConfig.preset("stream_batch"), 64),
        "sequential 3-step 128x128": (base, 128),
    }
    bench.config = {
        "model": "built-in (streamrt.assets/gen)",
        "frames_per_rollout": n,
        "prompt": PROMPT,
        "fps": base.fps,
    }

    def recompute() -> dict[str, float]:
        return _figures(_recompute(model, base, n), split)

    bench.case(
        "no cache (recompute window)",
        recompute,
        work=n,
        unit="frames",
        baseline=True,
        note="sequential, 3 steps",
    )

    def rollout(cfg: GenEngineConfig, size: int, frames: int) -> dict[str, float]:
        eng = GenEngine(model, cfg, height=size, width=size)
        return _figures(list(generate(eng, frames, {0: PROMPT})), split)

    for name, (cfg, size) in cases.items():
        bench.case(name, lambda c=cfg, s=size: rollout(c, s, n), work=n, unit="frames")

    world = WorldConfig.preset("simple", seed=7, max_objects=1)
    inputs = [to_tensor(f.pixels)[None, None] for f in itertools.islice(World(world).frames(), n)]

    def v2v() -> dict[str, float]:
        eng = GenEngine(model, base.replace(block_frames=1))
        eng.set_prompt("a white circle")
        return _figures(list(transform(eng, iter(inputs))), split)

    bench.case("video-to-video 3-step 64x64", v2v, work=n, unit="frames", note="strength 0.6, 1-frame blocks")
    if not bench.quick:
        long_n = 4800  # ten minutes at 8 fps

        def ten_minutes() -> dict[str, float]:
            eng = GenEngine(model, base)
            return _figures(list(generate(eng, long_n, {0: PROMPT})), 480)

        bench.case(
            "sequential 3-step 64x64, 10 min",
            ten_minutes,
            work=long_n,
            unit="frames",
            note="later = minute 10",
        )
