"""Shapes-world streams as training and evaluation data for the built-in model.

A stream is a `World` sampled at the model's fps (every `stride`-th simulation frame, each sample
carrying all events since the previous one) and cut into chunks of `frames_per_chunk` frames. Each
`ChunkSample` holds the chunk's frames (rendered at `render_size`), their times, the events that
happened during it (their `describe()` sentences are the target commentary; none means silence),
and, sometimes, one question about the state at the chunk's end with its ground-truth answer (the
engine answers questions at the next chunk boundary, so that is when the truth is taken).

Owns the split between training and held-out seeds (`TRAIN_SEED_BASE`: training never uses a seed
below it; the benchmark only uses seeds below it). Does not know tokens or tensors.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from streamrt.synth import QA, Event, World, WorldConfig, describe, questions

TRAIN_SEED_BASE = 1_000_000
"""Training worlds use seeds >= this; held-out evaluation uses seeds below it."""
RECENT_SECONDS = 2.0
"""Window of 'what just happened?' (the same default as `streamrt.synth.state_at`)."""


@dataclass(frozen=True, slots=True)
class ChunkSample:
    """One chunk of a stream with its ground truth."""

    frames: np.ndarray  # [T, H, W, 3] uint8 RGB at the render size
    times: tuple[float, ...]  # stream time of each frame (s)
    events: tuple[Event, ...]  # everything that happened since the previous chunk's last frame
    qa: QA | None  # a question asked at the chunk's end, answered from the state at its last frame

    @property
    def commentary(self) -> str | None:
        """The target commentary: the events' sentences joined by '. ', or None (silence)."""
        return commentary(self.events)


def commentary(events: tuple[Event, ...]) -> str | None:
    """'. '-joined `describe()` of the events in time order; None when nothing happened."""
    return ". ".join(describe(e) for e in events) if events else None


def world_config(seed: int) -> WorldConfig:
    """The world the built-in model is trained and evaluated on: the "demo" preset (the demo clip's)."""
    return WorldConfig.preset("demo", seed=seed)


def stream_chunks(
    config: WorldConfig,
    *,
    fps: float,
    frames_per_chunk: int,
    render_size: tuple[int, int],
    question_rate: float,
    qa_seed: int,
    start: float = 0.0,
) -> Iterator[ChunkSample]:
    """Endless chunks of one world (see module docstring). render_size is (h, w); `start` skips
    ahead (no rendering) to that stream time first; questions come with probability `question_rate`
    per chunk, of a uniformly drawn answerable type."""
    stride = round(config.fps / fps)
    if stride < 1 or abs(config.fps / stride - fps) > 1e-6:
        raise ValueError(f"world fps {config.fps} is not a multiple of the model's {fps}")
    world = World(config)
    if start > 0:
        world.skip_to(start)
    qrng = random.Random(qa_seed)
    h, w = render_size
    frames = world.frames(w, h, stride=stride)
    while True:
        got = [next(frames) for _ in range(frames_per_chunk)]
        qa = None
        if qrng.random() < question_rate:
            qa = qrng.choice(questions(got[-1].scene, qrng, world.recent(RECENT_SECONDS)))
        yield ChunkSample(
            frames=np.stack([f.pixels for f in got]),
            times=tuple(f.t for f in got),
            events=tuple(e for f in got for e in f.events),
            qa=qa,
        )
