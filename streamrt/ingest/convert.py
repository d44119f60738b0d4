"""Opening media with typed errors, and turning a decoded `av.VideoFrame` into output pixels.

Shared by the worker processes, the in-process decoder and the live sources, so every path
produces the same bytes for the same frame. Owns the mapping from FFmpeg failures to ingest errors
and the output geometry (crop, scale, rotation). Knows nothing about intervals or scheduling.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from streamrt.ingest.errors import (
    CorruptData,
    EmptyFile,
    NoVideoStream,
    SourceNotFound,
    UnsupportedFormat,
)
from streamrt.ingest.types import PixelSpec

_INTERP = {"bilinear": "BILINEAR", "bicubic": "BICUBIC", "area": "AREA", "fast_bilinear": "FAST_BILINEAR"}


def open_file(path: str) -> av.container.InputContainer:
    """Open a local media file, mapping each failure to its typed error."""
    if not os.path.exists(path):
        raise SourceNotFound(f"{path}: no such file", source=path)
    if os.path.isdir(path):
        raise UnsupportedFormat(f"{path}: is a directory, not a media file", source=path)
    if os.path.getsize(path) == 0:
        raise EmptyFile(f"{path}: file is empty (0 bytes)", source=path)
    try:
        return av.open(path, mode="r", metadata_errors="replace")
    except av.error.InvalidDataError as e:
        raise UnsupportedFormat(
            f"{path}: not a media file FFmpeg can read ({e.strerror or e})", source=path
        ) from None
    except av.error.FFmpegError as e:
        raise CorruptData(f"{path}: cannot open ({e})", source=path) from None


_TEXT_FORMATS = {"tty"}  # FFmpeg renders any text file as ANSI-art "video": that is not a video file


def video_stream(container: av.container.InputContainer, source: str) -> av.VideoStream:
    if container.format.name in _TEXT_FORMATS:
        raise UnsupportedFormat(
            f"{source}: a text file, not a video (FFmpeg format {container.format.name!r})", source=source
        )
    if not container.streams.video:
        kinds = ", ".join(s.type for s in container.streams) or "none"
        raise NoVideoStream(f"{source}: no video stream (streams: {kinds})", source=source)
    vs = container.streams.video[0]
    if vs.codec_context is None:  # the container names a codec FFmpeg does not know
        raise UnsupportedFormat(
            f"{source}: video stream {vs.index} uses a codec this FFmpeg build does not know", source=source
        )
    return vs


def rotation_degrees(frame: av.VideoFrame) -> int:
    """Clockwise rotation to apply for display (ffmpeg's autorotate convention), in {0, 90, 180, 270}."""
    return int(round(-frame.rotation)) % 360 // 90 * 90


@dataclass(frozen=True, slots=True)
class Geometry:
    """Output size of one stream under a PixelSpec (computed once from the first frame's shape)."""

    width: int  # after rotation
    height: int
    scale_w: int  # what swscale produces, before rotation
    scale_h: int
    rotate: int  # clockwise degrees applied after scaling
    nbytes: int


def native_nbytes(frame: av.VideoFrame) -> int:
    return sum(_plane_row_bytes(frame, i) * p.height for i, p in enumerate(frame.planes))


def _plane_row_bytes(frame: av.VideoFrame, plane: int) -> int:
    comps = [c for c in frame.format.components if c.plane == plane]
    per_px = sum((c.bits + 7) // 8 for c in comps) if len(comps) > 1 else (comps[0].bits + 7) // 8
    return frame.planes[plane].width * per_px


def geometry(spec: PixelSpec, width: int, height: int, rotation_cw: int, native_bytes: int) -> Geometry:
    if spec.format == "native":
        return Geometry(width, height, width, height, 0, native_bytes)
    w, h = (spec.crop[2], spec.crop[3]) if spec.crop else (width, height)
    rot = rotation_cw if spec.autorotate else 0
    disp_w, disp_h = (h, w) if rot in (90, 270) else (w, h)
    if spec.size:
        disp_w, disp_h = spec.size
    elif spec.short_side:
        s = spec.short_side / min(disp_w, disp_h)
        disp_w, disp_h = max(2, round(disp_w * s / 2) * 2), max(2, round(disp_h * s / 2) * 2)
    sw, sh = (disp_h, disp_w) if rot in (90, 270) else (disp_w, disp_h)
    ch = 1 if spec.format == "gray" else 3
    return Geometry(disp_w, disp_h, sw, sh, rot, disp_w * disp_h * ch)


def _scaled(frame: av.VideoFrame, spec: PixelSpec, geo: Geometry, sws: VideoReformatter | None) -> np.ndarray:
    """Crop + swscale to the output format and size, not yet rotated: [h, w, 3] or [h, w] uint8.

    The result is a view of the scaled frame's plane (rows may be padded): nothing is copied here.
    `sws` reused across frames keeps one swscale context (single-threaded: the caller's process
    or thread is the unit of parallelism); None makes a fresh one, like `frame.reformat`.
    """
    if spec.crop:
        x, y, w, h = spec.crop
        arr = frame.to_ndarray(format="rgb24")[y : y + h, x : x + w]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
    fmt = "gray8" if spec.format == "gray" else spec.format
    sws = sws or VideoReformatter()
    return sws.reformat(
        frame, geo.scale_w, geo.scale_h, fmt, interpolation=_INTERP[spec.interpolation], threads=1
    ).to_ndarray()


def to_pixels(
    frame: av.VideoFrame, spec: PixelSpec, geo: Geometry, sws: VideoReformatter | None = None
) -> np.ndarray:
    """Convert one decoded frame into a new array: native -> [N] packed planes; rgb/bgr -> [H, W, 3];
    gray -> [H, W]."""
    if spec.format == "native":
        return packed_planes(frame)
    out = _scaled(frame, spec, geo, sws)
    if geo.rotate:
        out = np.rot90(out, k=-geo.rotate // 90)
    return np.ascontiguousarray(out)  # allocation: the one copy out of the scaled frame


def write_pixels(
    frame: av.VideoFrame, spec: PixelSpec, geo: Geometry, out: np.ndarray, sws: VideoReformatter | None
) -> int:
    """Convert one decoded frame straight into `out` [>= N] uint8 (one copy: scaled plane -> out)."""
    if spec.format == "native":
        return write_native(frame, out)
    if geo.nbytes > out.size:
        raise ValueError(
            f"frame needs {geo.nbytes} bytes, the slot holds {out.size} (size changed mid-stream?)"
        )
    src = _scaled(frame, spec, geo, sws)
    if geo.rotate:
        src = np.rot90(src, k=-geo.rotate // 90)
    shape = (geo.height, geo.width) if spec.format == "gray" else (geo.height, geo.width, 3)
    if src.shape != shape:
        raise ValueError(
            f"frame converts to {src.shape}, the stream's first frame to {shape} (size changed?)"
        )
    out[: geo.nbytes].reshape(shape)[...] = src  # strided copy: drops swscale's row padding on the way
    return geo.nbytes


def write_native(frame: av.VideoFrame, out: np.ndarray) -> int:
    """Pack the frame's planes (rows without padding) straight into `out` [>= N] uint8; returns N."""
    off = 0
    for i, plane in enumerate(frame.planes):
        row = _plane_row_bytes(frame, i)
        n = row * plane.height
        if off + n > out.size:
            raise ValueError(f"frame needs more than {out.size} bytes (size changed mid-stream?)")
        src = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :row]
        out[off : off + n].reshape(plane.height, row)[...] = src
        off += n
    return off


def packed_planes(frame: av.VideoFrame) -> np.ndarray:
    """The frame's planes in its native pixel format, rows without padding: [N] uint8."""
    parts = []
    for i, plane in enumerate(frame.planes):
        row = _plane_row_bytes(frame, i)
        buf = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        parts.append(buf[:, :row].reshape(-1))
    return np.concatenate(parts) if len(parts) > 1 else parts[0].copy()
