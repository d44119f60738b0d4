"""Open a video source for a session: sampled at the model's fps and decoded at its frame size.

Files go through the parallel decoder with `EveryFps` sampling (conversion to RGB at the model's
size happens in the decode workers); webcams and network streams through the live grabbers (newest
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


def check_source(spec: str) -> None:
    """Fail early with ingest's typed error if `spec` is a file that cannot be opened as video
    (reads the container header only; live sources are checked when opened)."""
    if source_kind(spec) == "file":
        FileDecoder(spec).close()


def open_stream(spec: str, frame_size: tuple[int, int] | None, fps: float) -> OpenedSource:
    """Open `spec` (file path, URL or webcam) for a model taking (height, width) frames at `fps`
    (None: native size; the adapter resizes each frame itself)."""
    pixels = PixelSpec(format="rgb24", size=(frame_size[1], frame_size[0]) if frame_size else None)
    kind = source_kind(spec)
    if kind == "file":
        src = open_source(spec, pixels=pixels, sampling=EveryFps(fps))
        info = getattr(src, "info", None)
        return OpenedSource(src, False, getattr(info, "duration_s", None))
    return OpenedSource(open_source(spec, pixels=pixels), True, None)
