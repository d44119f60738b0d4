"""Decoding one keyframe-aligned interval of a file: the loop every worker (and the head thread) runs.

`IntervalDecoder` keeps one container open per file and, per interval, seeks to the keyframe,
verifies it landed on exactly that packet (falling back to a scan from the start when the
container's seek overshoots, as MPEG-TS can), feeds the interval's packets to a single-threaded
decoder (frame-threaded when the interval asks for threads), flushes it, and yields the owned (or wanted) frames converted to output pixels. Decode
problems end the interval with a status instead of raising, so the caller decides what strict
means. Knows nothing about processes, shared memory or delivery order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np
from av.stream import Discard
from av.video.reformatter import VideoReformatter

from streamrt.ingest.convert import (
    Geometry,
    geometry,
    native_nbytes,
    open_file,
    rotation_degrees,
    to_pixels,
    write_pixels,
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
    ok: bool = True  # False: the interval stopped early (demux/flush failure; `problem` says why)
    problem: str = ""  # what went wrong first (decoder error text), empty when clean
    last_pts: int | None = None  # pts of the last frame delivered
    corrupt: int = 0  # frames skipped: packets the decoder rejected + owned frames it flagged corrupt
    fed: int = 0  # packets given to the decoder
    decoded: int = 0  # frames it returned (fewer than `fed` when non-reference packets were skipped)


# decoders whose skip_frame=NONREF is exact and may change packet by packet (H.264 ref_idc == 0 means
# no other picture references it; HEVC "non-reference" NAL types may still be referenced by higher
# temporal layers, and libdav1d reads the option only when it opens)
_NONREF_SKIP_CODECS = frozenset({"h264"})


class IntervalDecoder:
    """One open file and its video decoder; decodes intervals one after another."""

    def __init__(self, path: str, stream_index: int, spec: PixelSpec, threads: int = 1) -> None:
        self.path = path
        self.spec = spec
        self.threads = threads
        self._open(stream_index)
        self.geo: Geometry | None = None
        self.sws = VideoReformatter()  # one swscale context for the whole file, not one per frame
        self._current: av.VideoFrame | None = None
        self._materialize = True
        self.status = IntervalStatus()

    def _open(self, stream_index: int) -> None:
        self.container = open_file(self.path)
        self.stream = self.container.streams[stream_index]
        for s in self.container.streams:
            if s.index != stream_index:
                s.discard = Discard.all
        self.ctx = self.stream.codec_context
        # parallelism comes from intervals (total threads <= cores); a decoder with threads > 1 runs
        # the tail of a full decode, when no other interval is left to run beside it
        self.ctx.thread_count = self.threads
        if self.threads > 1:
            self.ctx.thread_type = "FRAME"  # bit-exact; the codec opens lazily, so this still applies

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
                self._open(self.stream.index)
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
        A packet the decoder rejects and an owned frame it flags corrupt are skipped and counted
        (`status.corrupt`); decoding goes on with the next packet. For sampled intervals of codecs
        where it is exact, non-reference packets that are not wanted are not decoded at all.
        """
        self.status = st = IntervalStatus()
        self._materialize = materialize
        wanted = set(iv.wanted) if iv.wanted is not None else None
        skip_nonref = wanted is not None and self.ctx.name in _NONREF_SKIP_CODECS
        mode = "DEFAULT"
        try:
            for pkt in self._packets_from(iv):
                if pkt.size == 0:
                    continue
                st.fed += 1
                if skip_nonref:
                    m = "DEFAULT" if pkt.pts in wanted else "NONREF"
                    if m != mode:
                        self.ctx.skip_frame = mode = m
                try:
                    frames = self.ctx.decode(pkt)
                except av.error.FFmpegError as e:  # undecodable data: skip this packet, go on
                    if self._owns(pkt.pts, iv, wanted):  # a frame of another interval is its to count
                        st.corrupt += 1
                        st.problem = st.problem or f"{e.strerror or e} at pts {pkt.pts} (interval {iv.seq})"
                    frames = []
                for fr in frames:
                    yield from self._emit(fr, iv, wanted, st)
                if st.fed >= iv.n_packets:
                    break
        except av.error.FFmpegError as e:  # the demuxer failed: the rest of the interval is unreadable
            st.ok, st.problem = False, f"{e.strerror or e} after {st.fed} packets of interval {iv.seq}"
        finally:
            if mode != "DEFAULT":
                self.ctx.skip_frame = "DEFAULT"
        try:
            for fr in self.ctx.decode(None):  # flush: the reorder buffer holds the last frames
                yield from self._emit(fr, iv, wanted, st)
        except av.error.FFmpegError as e:
            if st.ok:
                st.ok, st.problem = False, f"{e.strerror or e} while flushing interval {iv.seq}"
        self.ctx.flush_buffers()

    @staticmethod
    def _owns(pts: int | None, iv: Interval, wanted: set[int] | None) -> bool:
        return pts is not None and iv.lo <= pts < iv.hi and (wanted is None or pts in wanted)

    def _emit(self, fr: av.VideoFrame, iv: Interval, wanted: set[int] | None, st: IntervalStatus):
        st.decoded += 1
        pts = fr.pts if fr.pts is not None else fr.dts
        if not self._owns(pts, iv, wanted):
            return
        if fr.is_corrupt:  # the decoder concealed missing or damaged data in this picture
            st.corrupt += 1
            st.problem = st.problem or f"corrupt frame at pts {pts} (interval {iv.seq})"
            return
        if self.geo is None:
            self.geo = geometry(self.spec, fr.width, fr.height, rotation_degrees(fr), native_nbytes(fr))
        self._current = fr
        px = to_pixels(fr, self.spec, self.geo, self.sws) if self._materialize else None
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
        return write_pixels(self._current, self.spec, self.geo, out, self.sws)
