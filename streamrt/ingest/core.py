"""Decoding one keyframe-aligned interval of a file: the loop every worker (and the head thread) runs.

`IntervalDecoder` keeps one container open per file and, per interval, seeks to the keyframe,
verifies it landed on exactly that packet (falling back to a scan from the start when the
container's seek overshoots, as MPEG-TS can), feeds the interval's packets to a single-threaded
decoder, flushes it, and yields the owned (or wanted) frames converted to output pixels. Decode
problems end the interval with a status instead of raising, so the caller decides what strict
means. Knows nothing about processes, shared memory or delivery order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np
from av.stream import Discard

from streamrt.ingest.convert import (
    Geometry,
    geometry,
    native_nbytes,
    open_file,
    rotation_degrees,
    to_pixels,
    write_native,
)
from streamrt.ingest.index import Interval
from streamrt.ingest.types import PixelSpec


@dataclass(frozen=True, slots=True)
class Decoded:
    pixels: np.ndarray | None  # see Frame.pixels; None when the caller writes them itself (`write_into`)
    pts: int  # stream time base
    duration: int
    keyframe: bool
    width: int
    height: int
    pix_fmt: str


@dataclass(slots=True)
class IntervalStatus:
    ok: bool = True
    problem: str = ""  # what went wrong (decoder error text), empty when ok
    last_pts: int | None = None  # pts of the last frame delivered before the problem


class IntervalDecoder:
    """One open file and its video decoder; decodes intervals one after another."""

    def __init__(self, path: str, stream_index: int, spec: PixelSpec) -> None:
        self.path = path
        self.spec = spec
        self.container = open_file(path)
        self.stream = self.container.streams[stream_index]
        for s in self.container.streams:
            if s.index != stream_index:
                s.discard = Discard.all
        self.ctx = self.stream.codec_context
        self.ctx.thread_count = 1  # parallelism comes from intervals: total threads <= cores
        self.geo: Geometry | None = None
        self._current: av.VideoFrame | None = None
        self._materialize = True
        self.status = IntervalStatus()

    def close(self) -> None:
        self.container.close()

    def _packets_from(self, iv: Interval) -> Iterator[av.Packet]:
        """Video packets in decode order starting exactly at the interval's keyframe.

        Seeks to the keyframe's dts; when the container lands past it (MPEG-TS seeks are
        approximate), reopens the file and scans from the first byte instead.
        """
        for attempt in ("seek", "scan"):
            if attempt == "seek":
                self.container.seek(iv.key_seek, stream=self.stream, backward=True, any_frame=False)
            else:
                self.container.close()
                self.container = open_file(self.path)
                self.stream = self.container.streams[self.stream.index]
                for s in self.container.streams:
                    if s.index != self.stream.index:
                        s.discard = Discard.all
                self.ctx = self.stream.codec_context
                self.ctx.thread_count = 1
            self.ctx.flush_buffers()
            it = self.container.demux(self.stream)
            found = False
            for pkt in it:
                if pkt.size == 0:
                    continue
                if pkt.is_keyframe and pkt.pts == iv.key_pts and (iv.key_pos < 0 or pkt.pos == iv.key_pos):
                    found = True
                    break
                if attempt == "seek" and iv.key_pos >= 0 and pkt.pos is not None and pkt.pos > iv.key_pos:
                    break  # overshot the keyframe
            if found:
                yield pkt
                yield from it
                return
        raise av.error.InvalidDataError(0, f"keyframe at pts {iv.key_pts} not found")

    def run(self, iv: Interval, materialize: bool = True) -> Iterator[Decoded]:
        """Frames the interval owns (or wants), in presentation order; sets `self.status` at the end.

        materialize=False yields `pixels=None`; call `write_into(out)` before the next frame to
        convert straight into the caller's buffer (a worker's shared-memory slot: one copy less).
        """
        self.status = st = IntervalStatus()
        self._materialize = materialize
        wanted = set(iv.wanted) if iv.wanted is not None else None
        fed = 0
        try:
            for pkt in self._packets_from(iv):
                if pkt.size == 0:
                    continue
                fed += 1
                for fr in self.ctx.decode(pkt):
                    yield from self._emit(fr, iv, wanted, st)
                if fed >= iv.n_packets:
                    break
        except av.error.FFmpegError as e:
            st.ok, st.problem = False, f"{e.strerror or e} after {fed} packets of interval {iv.seq}"
        try:
            for fr in self.ctx.decode(None):  # flush: the reorder buffer holds the last frames
                yield from self._emit(fr, iv, wanted, st)
        except av.error.FFmpegError as e:
            if st.ok:
                st.ok, st.problem = False, f"{e.strerror or e} while flushing interval {iv.seq}"
        self.ctx.flush_buffers()

    def _emit(self, fr: av.VideoFrame, iv: Interval, wanted: set[int] | None, st: IntervalStatus):
        pts = fr.pts if fr.pts is not None else fr.dts
        if pts is None or not (iv.lo <= pts < iv.hi) or (wanted is not None and pts not in wanted):
            return
        if self.geo is None:
            self.geo = geometry(self.spec, fr.width, fr.height, rotation_degrees(fr), native_nbytes(fr))
        self._current = fr
        px = to_pixels(fr, self.spec, self.geo) if self._materialize else None
        st.last_pts = pts
        yield Decoded(
            px,
            pts,
            int(fr.duration or 0),
            bool(fr.key_frame),
            self.geo.width,
            self.geo.height,
            self.spec.format if self.spec.format != "native" else fr.format.name,
        )

    def write_into(self, out: np.ndarray) -> int:
        """Convert the frame last yielded by `run(..., materialize=False)` into `out` [>= N] uint8."""
        assert self.geo is not None
        if self.spec.format == "native":
            return write_native(self._current, out)
        px = to_pixels(self._current, self.spec, self.geo)
        out[: px.nbytes] = px.reshape(-1)
        return px.nbytes
