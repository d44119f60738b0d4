"""Sampling by timestamp: turn a request (fps grid, N uniform, explicit times) into frames to decode.

All requests are in seconds since the stream's first frame (`t`). For each requested time the
chosen frame is the one at or before it (the first frame for times before it). This module only
does that arithmetic on sorted frame pts; it knows nothing about decoding.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from streamrt.ingest.errors import BadRequest
from streamrt.ingest.types import AtTimes, EveryFps, Full, Sampling, Uniform


def request_times(sampling: Sampling, duration_s: float, source: str = "") -> np.ndarray:
    """The requested times in seconds since the first frame: [R] float64, sorted."""
    if isinstance(sampling, EveryFps):
        if not (sampling.fps > 0 and math.isfinite(sampling.fps)):
            raise BadRequest(f"{source}: fps must be a positive number, got {sampling.fps}", source=source)
        n = max(1, math.ceil(duration_s * sampling.fps - 1e-9))
        return np.arange(n, dtype=np.float64) / sampling.fps
    if isinstance(sampling, Uniform):
        if sampling.n < 1:
            raise BadRequest(f"{source}: number of frames must be >= 1, got {sampling.n}", source=source)
        return np.arange(sampling.n, dtype=np.float64) * (duration_s / sampling.n)
    if isinstance(sampling, AtTimes):
        ts = np.asarray(sampling.times, dtype=np.float64)
        if ts.size == 0 or not np.all(np.isfinite(ts)) or np.any(ts < 0):
            raise BadRequest(
                f"{source}: timestamps must be finite and >= 0, got {sampling.times}", source=source
            )
        return np.sort(ts)
    if isinstance(sampling, Full):
        raise BadRequest("full decoding has no request times", source=source)
    raise BadRequest(f"{source}: unknown sampling {sampling!r}", source=source)


def pick(
    frame_pts: np.ndarray,
    start_pts: int,
    time_base: Fraction,
    times_s: np.ndarray,
    below: int | None = None,
) -> np.ndarray:
    """Unique pts of the frames at or before each time: frame_pts [F] sorted int64 -> [M] int64.

    Times are compared exactly in the stream time base (a time equal to a frame's pts picks it).
    below: use only the times before this pts (a partial index knows every frame before it).
    """
    if frame_pts.size == 0:
        return frame_pts
    # t in ticks, rounded down so a time at a frame's exact pts is not pushed past it by float error
    ticks = start_pts + np.floor(times_s / float(time_base) + 1e-6).astype(np.int64)
    if below is not None:
        ticks = ticks[ticks < below]
    idx = np.searchsorted(frame_pts, ticks, side="right") - 1
    return np.unique(frame_pts[np.maximum(idx, 0)])
