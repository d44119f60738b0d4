"""Drive a GenEngine for a number of frames: prompt changes on schedule, timing, the degrade ladder.

Per emitted frame it reports the latency (wall time from the moment its block entered the pipeline to
its emission; for video-to-video, from the input's arrival) and the wall time since the start. The
degrade ladder (optional) sees every block's wall time against its real-time budget (frames / fps).
Owns: the timing records. Does not know how frames are encoded or shown.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch

from streamrt.gen.degrade import DegradeLadder
from streamrt.gen.engine import GenEngine
from streamrt.gen.types import GenFrame


@dataclass(frozen=True, slots=True)
class Timed:
    """An output frame with its timing."""

    frame: GenFrame
    latency_s: float
    wall_s: float
    """Seconds since the stream started when the frame came out."""


def generate(
    engine: GenEngine,
    frames: int,
    prompts: Mapping[int, str],
    *,
    ladder: DegradeLadder | None = None,
) -> Iterator[Timed]:
    """Emit `frames` frames; `prompts` maps a frame index to the prompt that starts there (0 required)."""
    if 0 not in prompts:
        raise ValueError("prompts needs an entry for frame 0")
    pending = sorted(prompts.items())
    t0 = time.perf_counter()
    idx = 0
    while idx < frames:
        while pending and pending[0][0] <= idx:
            engine.set_prompt(pending.pop(0)[1])
        tick = time.perf_counter()
        block = engine.next_block()
        now = time.perf_counter()
        if ladder is not None:
            budget = (block.shape[1] if block is not None else 1) / engine.cfg.fps
            level = ladder.observe(now - tick, budget, idx)
            if level is not None:
                engine.set_level(level)
        if block is None:
            continue
        for f in engine.frames_of(block, idx):
            if idx >= frames:
                break
            yield Timed(f, now - engine.last_born, now - t0)
            idx += 1


def transform(
    engine: GenEngine, inputs: Iterator[torch.Tensor], *, ladder: DegradeLadder | None = None
) -> Iterator[Timed]:
    """Video-to-video over input blocks [1, b, 3, H, W] in [-1, 1] (latency counted from each input's arrival)."""
    t0 = time.perf_counter()
    idx = 0
    for x in inputs:
        arrived = time.perf_counter()
        out, repeated = engine.transform(x)
        now = time.perf_counter()
        if ladder is not None:
            level = ladder.observe(now - arrived, x.shape[1] / engine.cfg.fps, idx)
            if level is not None:
                engine.set_level(level)
        for f in engine.frames_of(out, idx, repeated):
            yield Timed(f, now - arrived, now - t0)
            idx += 1
