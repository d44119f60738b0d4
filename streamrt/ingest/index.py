"""Demux-only packet index of a file's video stream, and the keyframe-aligned intervals built on it.

The index reads packets without decoding them (pts, keyframe flag, byte position, duration,
discard flag; one entry per video packet, in decode order). It can be built on a background thread
while decoding already runs: `IndexBuilder` appends under a lock and wakes waiters. A file that
ends early or has unreadable packets sets `problem` and stops there.

`Interval` is the unit of parallel work. Interval j starts at keyframe packet `key` and *owns* the
frames with pts in [lo, hi): hi is the next interval's keyframe pts. A worker seeks to the
keyframe, feeds `n_packets` packets in decode order (which may run past the next keyframe, to
reach an open GOP's leading pictures whose pts < hi), flushes, and keeps the frames it owns. Every
frame is thus owned by exactly one interval, and each is decoded from a keyframe with all its
references. This module does not decode.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av.stream import Discard

from streamrt.ingest.convert import open_file, video_stream
from streamrt.ingest.errors import SourceTimeout
from streamrt.ingest.sample_table import SampleIndex, sample_table_index

NOPTS = np.iinfo(np.int64).min
_INF = np.iinfo(np.int64).max


@dataclass(frozen=True, slots=True)
class Interval:
    """Keyframe-aligned piece of work; pts values are in the stream's time base."""

    seq: int  # position in delivery order
    key: int  # ordinal of the keyframe packet (decode order)
    key_pts: int
    key_pos: int  # byte position of the keyframe packet, -1 when unknown
    key_seek: int  # timestamp to seek to: min(pts, dts) of the keyframe packet
    n_packets: int  # packets to feed from the keyframe (decode order)
    lo: int  # owned frames: lo <= pts < hi
    hi: int
    wanted: tuple[int, ...] | None = None  # sampled decoding: only these pts (sorted)
    threads: int = 1  # decoder threads (frame threading) for this interval; 1 = single-threaded

    @property
    def last(self) -> bool:
        """True for the interval that owns the end of the stream."""
        return self.hi == _INF


class PacketIndex:
    """Growing arrays of the video packets; complete once `done` is set."""

    def __init__(self, source: str, stream_index: int, time_base: Fraction) -> None:
        self.source = source
        self.stream_index = stream_index
        self.time_base = time_base
        self._pts: list[int] = []
        self._key: list[bool] = []
        self._pos: list[int] = []
        self._dur: list[int] = []
        self._seek: list[int] = []
        self._discard: list[bool] = []
        self.keys: list[int] = []  # ordinals of keyframe packets
        self.done = False
        self.problem = ""  # why indexing stopped early ("" = clean end of file)
        self.source_tables = False  # True: built from the MP4 sample tables, not by demuxing
        self.cond = threading.Condition()

    def __len__(self) -> int:
        return len(self._pts)

    def extend(self, rows: list[tuple[int, int, bool, int, int, bool]]) -> None:
        """Append packets in decode order, each (pts, seek timestamp, keyframe, byte position,
        duration, discard); wakes waiters (they wait for keyframes). One lock round per batch."""
        if not rows:
            return
        pts, seek, key, pos, dur, discard = zip(*rows, strict=True)
        with self.cond:
            n = len(self._pts)
            self.keys.extend(n + i for i, k in enumerate(key) if k)
            self._pts.extend(pts)
            self._seek.extend(seek)
            self._key.extend(key)
            self._pos.extend(pos)
            self._dur.extend(dur)
            self._discard.extend(discard)
            self.cond.notify_all()

    def fill(self, rows: SampleIndex) -> None:
        """Set the complete index at once (from the MP4 sample tables) and mark it done."""
        with self.cond:
            assert not self._pts, "fill() builds an index from nothing"
            self._pts, self._seek = rows.pts.tolist(), rows.seek.tolist()
            self._pos, self._dur = rows.pos.tolist(), rows.dur.tolist()
            self._key, self._discard = rows.key.tolist(), rows.discard.tolist()
            self.keys = np.flatnonzero(rows.key).tolist()
            self.source_tables = True
        self.finish()

    def finish(self, problem: str = "") -> None:
        with self.cond:
            self.problem = problem
            self.done = True
            self.cond.notify_all()

    def wait_keys(self, n: int, timeout: float) -> bool:
        """Block until `n` keyframes are indexed or the index is complete; False on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: self.done or len(self.keys) >= n, timeout)

    def wait_done(self, timeout: float) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.done, timeout):
                raise SourceTimeout(
                    f"{self.source}: indexing took longer than {timeout:.0f} s", source=self.source
                )

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Snapshot: pts [P] int64, keyframe [P] bool, discard [P] bool (decode order)."""
        with self.cond:
            return (
                np.array(self._pts, np.int64),
                np.array(self._key, bool),
                np.array(self._discard, bool),
            )

    def frame_pts(self) -> np.ndarray:
        """Sorted pts of the displayable frames (non-discarded packets with a pts): [F] int64."""
        pts, _, discard = self.arrays()
        keep = (pts != NOPTS) & ~discard
        return np.sort(pts[keep])

    def end_pts(self) -> int:
        """pts just past the last frame (last pts + its duration, or + the median step)."""
        fp = self.frame_pts()
        if len(fp) == 0:
            return 0
        with self.cond:
            durs = [d for d in self._dur if d > 0]
        step = int(np.median(durs)) if durs else (int(np.median(np.diff(fp))) if len(fp) > 1 else 1)
        return int(fp[-1]) + max(step, 1)

    def key_facts(self, ordinal: int) -> tuple[int, int, int]:
        """(pts, byte position, seek timestamp) of a packet."""
        with self.cond:
            return self._pts[ordinal], self._pos[ordinal], self._seek[ordinal]

    def last_needed(self, start: int, stop: int, hi: int) -> int:
        """Largest ordinal in [start, stop) whose pts < hi (the last packet an interval must feed)."""
        with self.cond:
            pts = self._pts[start:stop]
        best = -1
        for i, p in enumerate(pts):
            if p != NOPTS and p < hi:
                best = start + i
        return best


def build_index(
    index: PacketIndex,
    path: str,
    stop: threading.Event | None = None,
    container: av.container.InputContainer | None = None,
) -> None:
    """Demux every video packet of `path` into `index` (run on a thread; never raises).

    `container`: `path` already opened and not yet read (this function takes it over and closes it).
    """
    rows: list[tuple[int, int, bool, int, int, bool]] = []  # read, not yet published
    try:
        with container or open_file(path) as container:
            stream = container.streams[index.stream_index]
            for stream_ in container.streams:
                if stream_.index != stream.index:
                    stream_.discard = Discard.all  # demux only the video packets
            for pkt in container.demux(stream):
                if stop is not None and stop.is_set():
                    index.extend(rows)
                    index.finish("cancelled")
                    return
                if pkt.size == 0 and pkt.pts is None and pkt.dts is None:
                    continue  # the demuxer's end-of-stream marker
                pts, dts, key = pkt.pts if pkt.pts is not None else NOPTS, pkt.dts, bool(pkt.is_keyframe)
                rows.append(
                    (
                        pts,
                        min(pts, dts) if dts is not None and pts != NOPTS else pts,
                        key,
                        pkt.pos if pkt.pos is not None else -1,
                        pkt.duration or 0,
                        bool(pkt.is_discard),
                    )
                )
                if key or len(rows) >= 4096:  # publish up to each keyframe: planners wait for those
                    index.extend(rows)
                    rows = []
        index.extend(rows)
        index.finish()
    except av.error.FFmpegError as e:
        index.extend(rows)
        index.finish(f"demuxing stopped: {e}")
    except Exception as e:  # noqa: BLE001 - reported to the consumer through `problem`
        index.extend(rows)
        index.finish(f"demuxing stopped: {type(e).__name__}: {e}")


def start_index(
    path: str,
    stop: threading.Event | None = None,
    container: av.container.InputContainer | None = None,
) -> PacketIndex:
    """Start indexing `path` on a daemon thread; returns the (growing) index at once.

    `container`: `path` already opened and not yet read; the index thread takes it over (saves an
    open: FFmpeg's stream probing decodes a frame, ~20 ms for 1080p H.264, all before the first frame).
    An MP4/MOV whose sample tables prove exact (`sample_table`) is indexed at once, on this thread.
    """
    container = container or open_file(path)
    try:
        vs = video_stream(container, path)
    except BaseException:
        container.close()
        raise
    index = PacketIndex(path, vs.index, Fraction(vs.time_base.numerator, vs.time_base.denominator))
    try:
        tables = sample_table_index(container, vs, path)
    except BaseException:
        container.close()
        raise
    if tables is not None:  # MP4/MOV: complete at once, no packet read
        container.close()
        index.fill(tables)
        return index
    threading.Thread(
        target=build_index, args=(index, path, stop, container), name="ingest-index", daemon=True
    ).start()
    return index


def plan_full(index: PacketIndex, min_frames: int, timeout: float):
    """Yield the intervals of a full decode in order, as soon as the index allows (a generator).

    Consecutive GOPs are merged until an interval holds at least `min_frames` packets. An interval
    is ready once the index has reached the keyframe after its successor's keyframe (to see the
    successor's leading pictures) or the end of the file.
    """
    seq = 0
    start_k = 0  # index into index.keys of the current interval's keyframe
    while True:
        if not index.wait_keys(start_k + 1, timeout):
            raise SourceTimeout(
                f"{index.source}: no keyframe indexed within {timeout:.0f} s", source=index.source
            )
        if start_k >= len(index.keys):
            return  # no (more) keyframes
        key = index.keys[start_k]
        nxt_k = start_k + 1
        while True:  # find the next interval's keyframe: at least min_frames packets later
            if not index.wait_keys(nxt_k + 2, timeout):
                raise SourceTimeout(f"{index.source}: indexing stalled", source=index.source)
            if nxt_k >= len(index.keys) or index.keys[nxt_k] - key >= min_frames:
                break
            nxt_k += 1
        last = nxt_k >= len(index.keys)
        key_pts, key_pos, key_seek = index.key_facts(key)
        lo = NOPTS if seq == 0 else key_pts
        if last:
            hi, stop = _INF, len(index)
        else:
            hi = index.key_facts(index.keys[nxt_k])[0]
            stop = index.keys[nxt_k + 1] if nxt_k + 1 < len(index.keys) else len(index)
        n = index.last_needed(key, stop, hi) - key + 1
        yield Interval(seq, key, key_pts, key_pos, key_seek, max(n, 1), lo, hi)
        if last:
            return
        seq += 1
        start_k = nxt_k


def plan_wanted(index: PacketIndex, wanted_pts: np.ndarray) -> list[Interval]:
    """Intervals for sampled decoding: one per GOP that owns a wanted frame; GOPs without one are skipped.

    Needs the complete index. `wanted_pts` [M] int64, sorted and unique.
    """
    pts, _, _ = index.arrays()
    keys = index.keys
    key_pts = np.array([pts[k] for k in keys], np.int64)
    # owner GOP of each wanted pts: the last keyframe (in decode order) whose pts <= it; pts before
    # the first keyframe belong to GOP 0 (lo = -inf)
    owner = np.searchsorted(key_pts, wanted_pts, side="right") - 1
    owner = np.maximum(owner, 0)
    # decode-order ordinal of each wanted pts (the last packet when several share it)
    by_pts = np.argsort(pts, kind="stable")
    at = by_pts[np.searchsorted(pts[by_pts], wanted_pts, "right") - 1]
    ordinal = dict(zip(wanted_pts.tolist(), at.tolist(), strict=True))
    out = []
    for g in np.unique(owner):
        g = int(g)
        want = tuple(int(p) for p in wanted_pts[owner == g])
        last = max(ordinal[p] for p in want)
        lo = NOPTS if g == 0 else int(key_pts[g])
        hi = int(key_pts[g + 1]) if g + 1 < len(keys) else _INF
        _, key_pos, key_seek = index.key_facts(keys[g])
        out.append(
            Interval(len(out), keys[g], int(key_pts[g]), key_pos, key_seek, last - keys[g] + 1, lo, hi, want)
        )
    return out
