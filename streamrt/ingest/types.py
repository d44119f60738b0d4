"""Data passed between ingest and its consumers: frames, pixel specs, sampling requests, stream facts.

`Frame` is the one object every source yields. Times are seconds: `pts` is the container's own
presentation time (start offset included), `t` is seconds since the stream's first frame, and
sampling requests are always in `t`. Nothing here decodes or knows where frames come from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

PixelFormat = Literal["rgb24", "bgr24", "gray", "native"]


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame.

    pixels: rgb24/bgr24 -> [H, W, 3] uint8; gray -> [H, W] uint8; native -> [N] uint8 holding the
    decoder's own pixel format (`pix_fmt`) with its planes packed one after another without row
    padding (the layout `ffmpeg -f framemd5` hashes).
    """

    pixels: np.ndarray
    pts: float  # seconds, container time (includes a non-zero start time)
    t: float  # seconds since the stream's first frame
    index: int  # presentation-order rank among the stream's frames (see the decoder docs)
    keyframe: bool
    source_id: str
    pix_fmt: str  # "rgb24", "bgr24", "gray" or the native name (e.g. "yuv420p")
    width: int
    height: int
    capture_time: float | None = None  # time.monotonic() when a live frame was grabbed; None for files
    duration: float | None = None  # seconds, when the container says


@dataclass(frozen=True, slots=True)
class PixelSpec:
    """What the workers turn each decoded frame into (conversion happens where decoding happens).

    size: exact output (width, height); short_side: scale so the shorter side has this many pixels
    (aspect kept, even sizes); neither: native size. crop: (x, y, w, h) in source pixels, applied
    before scaling. autorotate: apply the stream's rotation metadata like `ffmpeg` does by default
    (never for "native").
    """

    format: PixelFormat = "rgb24"
    size: tuple[int, int] | None = None
    short_side: int | None = None
    crop: tuple[int, int, int, int] | None = None
    autorotate: bool = True
    interpolation: Literal["bilinear", "bicubic", "area", "fast_bilinear"] = "bilinear"


@dataclass(frozen=True, slots=True)
class Full:
    """Every frame."""


@dataclass(frozen=True, slots=True)
class EveryFps:
    """For each grid time k/fps (k = 0, 1, ...) before the end, the frame at or before it."""

    fps: float


@dataclass(frozen=True, slots=True)
class Uniform:
    """N grid times k * duration / N (k = 0..N-1); the frame at or before each."""

    n: int


@dataclass(frozen=True, slots=True)
class AtTimes:
    """Explicit times (seconds since the first frame); the frame at or before each."""

    times: tuple[float, ...]


Sampling = Full | EveryFps | Uniform | AtTimes


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """Facts about one stream of a container, as `probe` reports them."""

    index: int
    kind: str  # "video", "audio", "subtitle", "data"
    codec: str
    time_base: str
    start_s: float | None
    duration_s: float | None
    width: int = 0
    height: int = 0
    pix_fmt: str = ""
    avg_fps: float | None = None
    rotation: int = 0  # degrees, as the display matrix says (counter-clockwise)
    sample_rate: int = 0
    channels: int = 0


@dataclass(slots=True)
class DecodeReport:
    """Filled in while a decoder runs; final once its iterator is exhausted or closed."""

    frames: int = 0
    truncated: bool = False
    stopped_at_s: float | None = None  # `t` of the last valid frame when the stream stopped early
    problem: str = ""  # what stopped it (empty when the file decoded cleanly)
    intervals: int = 0
    workers: int = 0
    local_intervals: int = 0  # intervals decoded in this process while the workers started
    first_frame_s: float | None = None  # seconds from the first next() to the first delivered frame
    corrupt_frames: int = 0  # frames skipped: packets the decoder rejected + frames it flagged corrupt
    worker_restarts: int = 0  # decode workers that died and were replaced (their intervals redone)
    packets_fed: int = 0  # video packets given to decoders (all intervals, head thread included)
    frames_decoded: int = 0  # frames decoders returned (< packets_fed when non-reference ones were skipped)
    worker_packets: list[int] = field(default_factory=list)  # packets fed per worker (balance)
    threaded_intervals: int = 0  # intervals decoded by one frame-threaded decoder (the tail of a full decode)
    speculated_intervals: int = 0  # sampled: intervals dispatched before the packet index was complete
    replanned: bool = False  # sampled: the speculative plan was wrong and the exact one was decoded instead
    index_from_tables: bool = False  # the packet index came from the MP4 sample tables (no demux pass)
