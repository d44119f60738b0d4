"""`streamrt bench gen`: the streaming video generator's speed and latency, per schedule and for v2v.

Baseline: the sequential sampler without a KV cache (each denoise step re-runs the model over the kept
sink + window frames and the block: sliding-window recompute). Candidates, all with the built-in model
and the FrameCache: sequential (the "quality" preset: 4 steps, 2-frame blocks; with the model's
guidance scale and without), rolling and stream-batch (3 steps, 1-frame blocks), sequential 1-step,
video-to-video (shapes-world input, 1-frame blocks), and sequential at 128x128; every case samples with
the model's sampler (`GenSpec.sampler`). Each case rolls out a fresh stream; extra figures per case: time to first frame, per-frame
latency p50/p99 (block entry to emission; v2v: input arrival to output), jitter (|diff latency|)
p50/p99, and the p99 latency of the last part of the rollout over the first ("later/first").

Long-rollout drift ("aged vs fresh"): one stream is first rolled out alone (ten minutes of video at
8 fps in the full run), then it and a fresh stream of the same configuration generate alternately,
frame by frame, in the same process; the aged stream's next minute and the fresh stream's first
minute are compared. Run this way, a loaded machine slows both sides alike (a first-minute vs
tenth-minute comparison made one after the other measures the machine's load as much as the engine).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from streamrt.bench.harness import Bench, register
from streamrt.gen.config import GenEngineConfig
from streamrt.gen.engine import GenEngine, advance
from streamrt.gen.stream import Timed, generate, transform
from streamrt.models.gen.data import to_tensor
from streamrt.models.gen.dit import DenseContext, block_causal_mask
from streamrt.models.gen.flow import timesteps
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
    sampler = cfg.sampler or model.spec.sampler
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
                x0 = model(torch.cat([ctx, x], dim=1), t, text, dense)[:, c:]
                x = advance(
                    sampler, x, x0, ts[i], ts[i + 1], lambda f: torch.randn(1, f, 3, 64, 64, generator=g)
                )
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
    fast, rolling, batch = (GenEngineConfig.preset(p) for p in ("fast", "rolling", "stream_batch"))
    cases: dict[str, tuple[GenEngineConfig, int]] = {
        f"sequential {base.steps}-step 64x64": (base, 64),
        f"sequential {base.steps}-step 64x64, no guidance": (base.replace(guidance=1.0), 64),
        f"sequential {fast.steps}-step 64x64": (fast, 64),
        f"rolling {rolling.steps}-step 64x64": (rolling, 64),
        f"stream-batch {batch.steps}-step 64x64": (batch, 64),
        f"sequential {base.steps}-step 128x128": (base, 128),
    }
    bench.config = {
        "model": "built-in (streamrt.assets/gen)",
        "frames_per_rollout": n,
        "prompt": PROMPT,
        "fps": base.fps,
        "guidance": model.spec.guidance,  # the sequential cases' default: one more forward per step when > 1
    }

    def recompute() -> dict[str, float]:
        return _figures(_recompute(model, base, n), split)

    bench.case(
        "no cache (recompute window)",
        recompute,
        work=n,
        unit="frames",
        baseline=True,
        note=f"sequential, {base.steps} steps, no guidance",
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

    bench.case(
        f"video-to-video {base.steps}-step 64x64",
        v2v,
        work=n,
        unit="frames",
        note="strength 0.6, 1-frame blocks",
    )
    age, span = (48, 24) if bench.quick else (4320, 480)  # full: minute 10 vs minute 1 at 8 fps
    bench.case(
        f"sequential {base.steps}-step 64x64, aged vs fresh",
        lambda: aged_vs_fresh(model, base, age, span),
        work=age + 2 * span,
        unit="frames",
        note=f"aged {age} frames; then {span} frames of each, interleaved",
    )


def aged_vs_fresh(model: GenModel, cfg: GenEngineConfig, age: int, span: int) -> dict[str, float]:
    """Latency of a stream after `age` frames vs a fresh stream, `span` frames each, generated alternately.

    Every frame is kept by the consumer (as a recorder would), so Python objects accumulate as in a
    long run. Figures: p50/p99 of both, their p99 ratio, and the aged stream's own first `span` frames.
    """
    old = generate(GenEngine(model, cfg), age + span, {0: PROMPT})
    kept = list(itertools.islice(old, age))
    fresh = generate(GenEngine(model, cfg), span, {0: PROMPT})
    aged_lat, fresh_lat = [], []
    for a, f in zip(old, fresh, strict=True):
        kept += [a, f]
        aged_lat.append(a.latency_s)
        fresh_lat.append(f.latency_s)
    aged, new, own_first = (
        np.array(x) * 1e3 for x in (aged_lat, fresh_lat, [t.latency_s for t in kept[:span]])
    )
    return {
        "aged_p50_ms": float(np.percentile(aged, 50)),
        "aged_p99_ms": float(np.percentile(aged, 99)),
        "fresh_p50_ms": float(np.percentile(new, 50)),
        "fresh_p99_ms": float(np.percentile(new, 99)),
        "aged_over_fresh_p99": float(np.percentile(aged, 99) / np.percentile(new, 99)),
        "aged_over_own_first_p99": float(np.percentile(aged, 99) / np.percentile(own_first, 99)),
    }
