"""`streamrt bench serve-batch`: cross-session batching of generate-mode blocks, solo against batched.

N server-side generate sessions (the built-in model, `GenerateEngine` as `streamrt serve` builds them)
step their next block either one after another (`engine.step`, what the scheduler does with batching
off: `--max-batch 1`) or all at once (`GenerateEngine.step_batch`, one forward per denoise step for
the N sessions). Workloads: text to video with the "fast" preset (1 step + the clean pass, 2-frame
blocks) and "quality" (3 steps), and video to video (moving 64x64 input, 1-frame blocks), for N = 4
and 8. Throughput is in frames per second of all sessions together; compare a batched case with the
solo case of the same workload and N (the baseline is the first solo case). One torch thread, as the
server runs under `streamrt bench serve`. The outputs of both paths are checked equal (within one
uint8 level) before timing, so the benchmark never times a wrong batch.
"""

from __future__ import annotations

import numpy as np
import torch

from streamrt.bench.harness import Bench, register
from streamrt.server.engine import InputFrame
from streamrt.server.generate import GenerateEngine, generate_factory

PROMPTS = ("a red circle moving right", "a blue square", "a green triangle moving left", "two circles")


class _Sessions:
    """N engines of one workload, and their inputs."""

    def __init__(self, factory, n: int, params: dict[str, object]) -> None:
        self.engines = [
            factory({**params, "seed": i, "prompt": PROMPTS[i % len(PROMPTS)], "degrade": False})
            for i in range(n)
        ]
        self.v2v = params.get("input") == "video"
        self.base = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        self.k = 0

    def frames(self) -> list[InputFrame | None]:
        self.k += 1
        if not self.v2v:
            return [None] * len(self.engines)
        return [
            InputFrame(self.k, self.k * 125_000, np.roll(self.base, 4 * self.k + 7 * i, axis=1), 0.0, 1e9)
            for i in range(len(self.engines))
        ]


def _check(factory, params: dict[str, object]) -> None:
    """Batched and solo give the same frames (one uint8 level: fp32 GEMM rounding, tests/server/test_batch.py)."""
    a, b = _Sessions(factory, 3, params), _Sessions(factory, 3, params)
    for _ in range(3):
        fa, fb = a.frames(), b.frames()
        solo = [e.step(f) for e, f in zip(a.engines, fa, strict=True)]
        bat = GenerateEngine.step_batch(b.engines, fb)
        for s, t in zip(solo, bat, strict=True):
            for x, y in zip(s.outputs, t.outputs, strict=True):
                if np.abs(x.pixels.astype(int) - y.pixels.astype(int)).max() > 1:  # type: ignore[union-attr]
                    raise AssertionError("batched generate blocks differ from solo ones")


@register("serve-batch", "cross-session batching of generate blocks: N sessions stepped solo vs in one batch")
def bench_serve_batch(bench: Bench) -> None:
    from streamrt.models.gen.model import load_builtin

    torch.set_num_threads(1)
    factory = generate_factory(load_builtin())
    blocks = 2 if bench.quick else 6
    workloads = {
        "t2v fast": {"preset": "fast"},
        "t2v quality": {"preset": "quality"},
        "v2v": {"input": "video", "preset": "fast"},
    }
    if bench.quick:
        workloads = {"t2v fast": workloads["t2v fast"]}
    sizes = (4,) if bench.quick else (4, 8)
    for params in workloads.values():
        _check(factory, params)
    first = True
    for wname, params in workloads.items():
        for n in sizes:
            solo, bat = _Sessions(factory, n, params), _Sessions(factory, n, params)
            for s in (solo, bat):  # past the first block (its extra steps) before timing
                for e, f in zip(s.engines, s.frames(), strict=True):
                    e.step(f)
            per_block = solo.engines[0].engine.level.block_frames

            def run_solo(s=solo) -> None:
                with torch.no_grad():
                    for _ in range(blocks):
                        for e, f in zip(s.engines, s.frames(), strict=True):
                            e.step(f)

            def run_batched(s=bat) -> None:
                with torch.no_grad():
                    for _ in range(blocks):
                        GenerateEngine.step_batch(s.engines, s.frames())

            work = blocks * n * per_block
            bench.case(f"{wname} N={n} solo", run_solo, work=work, unit="frames", baseline=first)
            bench.case(f"{wname} N={n} batched", run_batched, work=work, unit="frames")
            first = False
    bench.config = {"blocks_per_call": blocks, "sessions": sizes, "workloads": workloads, "threads": 1}
