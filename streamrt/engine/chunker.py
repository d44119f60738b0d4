"""Frames at any rate -> frames on the model's time grid -> chunks.

`Chunker` owns the grid position (next sample index), the frames of the chunk being filled and a
skip counter. A frame is taken for grid index k when its stream time is at least k / fps minus half
a period (files arrive already sampled at the model's fps by the decoder, at or just before each grid
time; live sources deliver faster or slower than the grid); frames between grid points are skipped
(counted). A chunk is complete with `frames_per_chunk` frames; its `ready` time is the capture time
of its last frame and its deadline `ready + budget_s`. At the end of a stream a partial chunk is
padded by repeating its last frame (on the grid), as Qwen2-VL's processor pads. Knows nothing about
models or threads.
"""

from __future__ import annotations

import math

import numpy as np

from streamrt.engine.types import Chunk, SampledFrame


class Chunker:
    """Sample frames onto the model's grid and group them into chunks."""

    def __init__(self, fps: float, frames_per_chunk: int, budget_s: float) -> None:
        self.fps = fps
        self.frames_per_chunk = frames_per_chunk
        self.budget_s = budget_s
        self.skipped = 0
        """Frames that fell between grid points (not an error: the source is faster than the model)."""
        self.sampled = 0
        self._next = 0
        self._frames: list[SampledFrame] = []
        self._chunks = 0

    def push(self, pixels: np.ndarray, t: float, capture: float) -> Chunk | None:
        """Offer one frame ([H, W, 3] uint8 RGB, stream time t); returns a chunk when one completes."""
        if t < (self._next - 0.5) / self.fps:
            self.skipped += 1
            return None
        index = max(self._next, math.floor(t * self.fps + 0.5))
        self._next = index + 1
        self.sampled += 1
        self._frames.append(SampledFrame(pixels, t, capture, index))
        return self._emit() if len(self._frames) == self.frames_per_chunk else None

    def flush(self) -> Chunk | None:
        """The partial chunk at the end of a stream, padded with its last frame; None if empty."""
        if not self._frames:
            return None
        last = self._frames[-1]
        while len(self._frames) < self.frames_per_chunk:
            index = self._frames[-1].index + 1
            self._frames.append(SampledFrame(last.pixels, index / self.fps, last.capture, index))
        return self._emit()

    def _emit(self) -> Chunk:
        frames = tuple(self._frames)
        self._frames = []
        ready = frames[-1].capture
        chunk = Chunk(
            self._chunks,
            frames,
            frames[0].t,
            frames[-1].t + 1.0 / self.fps,
            ready,
            ready + self.budget_s,
        )
        self._chunks += 1
        return chunk
