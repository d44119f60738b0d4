"""`open_source(spec)`: one entry point for every kind of video source.

Spec forms: an int, "webcam:N" or "/dev/videoN" -> WebcamSource; "push" -> PushedSource;
rtsp/rtsps/rtmp/http/https/udp/tcp/srt/rtp URLs -> NetworkSource; anything else is a file path ->
FileDecoder. Every source is iterable over `Frame`s, has `close()` and is a context manager. This
module only dispatches.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from streamrt.ingest.decoder import FileDecoder
from streamrt.ingest.live import NetworkSource, WebcamSource
from streamrt.ingest.pushed import PushedSource
from streamrt.ingest.types import Frame, PixelSpec, Sampling

URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt", "rtp")


class Source(Protocol):
    source_id: str

    def __iter__(self): ...  # Iterator[Frame]

    def close(self) -> None: ...


def source_kind(spec: str | int | Path) -> str:
    """'webcam', 'push', 'network' or 'file'."""
    if isinstance(spec, int):
        return "webcam"
    s = str(spec)
    if re.fullmatch(r"\d+|webcam:\d+|/dev/video\d+", s):
        return "webcam"
    if s in ("push", "push:"):
        return "push"
    scheme = s.split("://", 1)[0].lower() if "://" in s else ""
    if scheme in URL_SCHEMES:
        return "network"
    return "file"


def open_source(
    spec: str | int | Path,
    *,
    pixels: PixelSpec | None = None,
    sampling: Sampling | None = None,
    **options: object,
) -> FileDecoder | WebcamSource | NetworkSource | PushedSource:
    """Open `spec` as the right source; `options` go to that source's constructor.

    `sampling` applies to files only (live sources deliver the newest frame as it comes).
    """
    kind = source_kind(spec)
    px = {"pixels": pixels} if pixels is not None else {}
    if kind == "webcam":
        s = str(spec)
        dev: int | str = int(s.split(":")[-1]) if re.fullmatch(r"\d+|webcam:\d+", s) else s
        return WebcamSource(dev, **px, **options)  # type: ignore[arg-type]
    if kind == "push":
        return PushedSource(**px, **options)  # type: ignore[arg-type]
    if kind == "network":
        return NetworkSource(str(spec), **px, **options)  # type: ignore[arg-type]
    smp = {"sampling": sampling} if sampling is not None else {}
    return FileDecoder(str(spec), **px, **smp, **options)  # type: ignore[arg-type]


__all__ = ["Frame", "Source", "open_source", "source_kind"]
