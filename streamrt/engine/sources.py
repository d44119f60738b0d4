"""Open a video source for a session: RGB frames sampled at the model's fps.

Files go through the parallel decoder with `EveryFps` sampling (conversion to RGB, and scaling
down of large frames, happen in the decode workers); webcams and network streams through the live grabbers (newest
frame only; the chunker puts them on the grid). Errors are ingest's typed errors (`IngestError`,
E_INGEST_*). The shipped demo clip's path is here too. Owns nothing once the source is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from streamrt.ingest import EveryFps, FileDecoder, PixelSpec, open_source, source_kind

DEMO_CLIP = ("demo", "shapes_demo.mp4")


def demo_clip() -> Path:
    """The shipped shapes-world demo clip (25 s, 640x360, 30 fps)."""
    return Path(str(resources.files("streamrt.assets").joinpath(*DEMO_CLIP)))


@dataclass(frozen=True, slots=True)
class OpenedSource:
    """A source ready to iterate, with what the session needs to know about it."""

    frames: object
    """The ingest source (iterable over `Frame`s, has `close()`)."""
    live: bool
    duration_s: float | None
    """Seconds of video (files, when the container says); None for live sources."""


MAX_SHORT_SIDE = 360
"""Files with a larger shorter side are scaled down (area filter) by the decode workers to this; the
adapter then resizes to the model's own input size with its own filter, as in training."""


def check_source(spec: str) -> None:
    """Fail early with ingest's typed error if `spec` is a file that cannot be opened as video
    (reads the container header only; live sources are checked when opened)."""
    if source_kind(spec) == "file":
        FileDecoder(spec).close()


def open_stream(spec: str, fps: float) -> OpenedSource:
    """Open `spec` (file path, URL or webcam) as RGB frames for a model sampling at `fps`.

    Frames keep their size (files: scaled down to a shorter side of MAX_SHORT_SIDE when larger); the
    adapter resizes them to its input size, with the filter its model was trained with.
    """
    if source_kind(spec) == "file":
        with FileDecoder(spec) as head:
            short = min(head.info.width, head.info.height)
        pixels = PixelSpec(format="rgb24")
        if short > MAX_SHORT_SIDE:
            pixels = PixelSpec(format="rgb24", short_side=MAX_SHORT_SIDE, interpolation="area")
        src = open_source(spec, pixels=pixels, sampling=EveryFps(fps))
        return OpenedSource(src, False, getattr(getattr(src, "info", None), "duration_s", None))
    return OpenedSource(open_source(spec, pixels=PixelSpec(format="rgb24")), True, None)
