"""`FileDecoder`: a file as an ordered iterator of timestamped frames, decoded in parallel.

Pipeline: a background thread builds the demux-only packet index; intervals are planned from it
(keyframe-aligned, see `index`); each interval is assigned to a worker process of a `DecodePool`
(or, while the workers are still starting, to an in-process head thread) and its frames come back
through the worker's shared-memory ring. Delivery is strictly in interval order, so frames come out
in presentation order; at most `lookahead` intervals are in flight and each ring holds a bounded
number of frames, so memory is bounded whatever the file's length. Intervals go to the worker with
the least work assigned so far; the last interval of a full decode is decoded frame-threaded.
Sampled decoding dispatches GOPs planned from the growing index and delivers once the complete
index confirms them (`speculate`).

Frame index: in full decoding the n-th delivered frame has index n (equal to a sequential decode);
in sampled decoding it is the frame's rank among the index's displayable packets by pts.

Errors: bad files raise typed errors at the first `next()`. With `strict=True` corrupt data raises
`CorruptData` and an early end raises `Truncated` once every valid frame before it was delivered;
with `strict=False` both are recorded in `report` (problem, stopped_at_s) and decoding goes on:
a packet the decoder rejects or a frame it flags corrupt is skipped and counted
(`report.corrupt_frames`). A worker process that dies is replaced and the intervals it held are
decoded again (frames already delivered are not repeated), at most `max_restarts` times per
decode; after that `WorkerFailed` is raised. Nothing waits without a timeout.
Cleanup (workers' tasks cancelled, shared memory unlinked, private pool stopped) runs on
exhaustion, `close()`, exceptions, KeyboardInterrupt and garbage collection of the iterator.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from fractions import Fraction

import av
import numpy as np

from streamrt.ingest.convert import geometry, native_nbytes, open_file, video_stream
from streamrt.ingest.errors import CorruptData, SourceTimeout, Truncated, WorkerFailed, from_wire
from streamrt.ingest.head import HeadThread
from streamrt.ingest.index import NOPTS, Interval, PacketIndex, plan_full, start_index
from streamrt.ingest.pool import (
    KIND_END,
    STATUS_CORRUPT,
    STATUS_ERROR,
    STATUS_OK,
    DecodePool,
    Record,
    RingLayout,
    Session,
)
from streamrt.ingest.probe import stream_info
from streamrt.ingest.sampling import pick, request_times
from streamrt.ingest.speculate import Replan, SampledPlan
from streamrt.ingest.types import DecodeReport, Frame, Full, PixelSpec, Sampling, StreamInfo

log = logging.getLogger(__name__)

_POLL_S = 0.02
# fixed cost of an interval in packets (seek, decoder flush, its keyframe: the dearest picture)
_INTERVAL_COST = 8
FULL = Full()
RGB = PixelSpec()


class FileDecoder:
    """Iterate over a file's frames (all, or sampled by time) decoded by worker processes.

    sampling: Full() | EveryFps(f) | Uniform(n) | AtTimes(ts); pixels: what workers convert to;
    workers: processes for a private pool (default: cores) unless `pool` is given (reused, not
    closed); buffer_bytes: bound on decoded frames held in the rings; timeout: longest wait for any
    progress before `SourceTimeout`; interval_frames: merge GOPs until an interval has this many
    packets (default from the ring size); head_thread: decode the start in-process while workers start;
    max_restarts: worker deaths survived per decode (the dead worker is replaced, its work redone);
    borrow: frames decoded by workers are read-only views of their shared-memory slot, valid until
    the next frame is requested (no copy in this process; copy `pixels` to keep them longer).
    """

    def __init__(
        self,
        path: str,
        *,
        sampling: Sampling = FULL,
        pixels: PixelSpec = RGB,
        workers: int | None = None,
        pool: DecodePool | None = None,
        strict: bool = True,
        buffer_bytes: int = 512 << 20,
        timeout: float = 30.0,
        interval_frames: int | None = None,
        head_thread: bool = True,
        max_restarts: int = 2,
        borrow: bool = False,
        source_id: str | None = None,
    ) -> None:
        self.path = str(path)
        self.sampling = sampling
        self.spec = pixels
        self.strict = strict
        self.timeout = timeout
        self.source_id = source_id or self.path
        # kept open for the index thread, which takes it over (one open less before the first frame)
        self._container: av.container.InputContainer | None = open_file(self.path)
        try:
            c = self._container
            vs = video_stream(c, self.path)
            self.info: StreamInfo = stream_info(vs)
            self._declared_frames = int(vs.frames or 0)
            self._header_duration_s = (
                c.duration / 1e6 if c.duration and c.format.name.startswith("matroska") else None
            )
            self._stream_index = vs.index
            # duration from the sample tables of MP4/MOV: good enough to start sampled decoding
            # before the index is complete (`speculate`); other containers' headers often estimate
            self._header_span = int(vs.duration) if vs.duration and "mp4" in c.format.name else None
            self._tb = Fraction(vs.time_base.numerator, vs.time_base.denominator)
            # per-frame seconds as int * num / den: Python's int division is correctly rounded, so
            # this equals float(pts * Fraction) at a fraction of its cost
            self._tb_num, self._tb_den = self._tb.numerator, self._tb.denominator
        except BaseException:
            self._close_container()
            raise
        self._own_pool = pool is None
        self._pool = pool
        self._workers = pool.workers if pool else workers
        self._buffer_bytes = buffer_bytes
        self._interval_frames = interval_frames
        self._head_thread = head_thread
        self._max_restarts = max_restarts
        self._borrow = borrow
        self._pending_corrupt: tuple[str, int, float] | None = None
        self.report = DecodeReport()
        self._gen: Iterator[Frame] | None = None
        self._cleanup: list = []
        self._last_t = 0.0

    # ------------------------------------------------------------------ lifecycle
    def __iter__(self) -> Iterator[Frame]:
        if self._gen is None:
            self._gen = self._run()
        return self._gen

    def close(self) -> None:
        """Stop decoding now and release everything (idempotent)."""
        if self._gen is not None:
            self._gen.close()
        self._release()
        self._close_container()

    def _close_container(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> FileDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _release(self) -> None:
        while self._cleanup:
            fn = self._cleanup.pop()
            try:
                fn()
            except Exception:  # noqa: BLE001 - cleanup must run to the end
                log.exception("ingest cleanup step failed")

    # ------------------------------------------------------------------ the pipeline
    def _slot_bytes(self) -> int:
        """Bytes of one output frame (rotation never changes it). When the header does not name the
        pixel format, native slots get room for the largest common one (4:4:4, 16 bits)."""
        w, h = self.info.width, self.info.height
        if w <= 0 or h <= 0:
            raise CorruptData(
                f"{self.path}: the video stream has no frame size in its header", source=self.path
            )
        native = native_nbytes(av.VideoFrame(w, h, self.info.pix_fmt)) if self.info.pix_fmt else w * h * 6
        return geometry(self.spec, w, h, 0, native).nbytes

    def _run(self) -> Iterator[Frame]:
        t0 = time.perf_counter()
        try:
            stop_index = threading.Event()
            self._cleanup.append(stop_index.set)
            container, self._container = self._container, None
            if container is None:  # closed before iterating: open again
                container = open_file(self.path)
            try:
                if self._pool is None:
                    self._pool = DecodePool(self._workers)
                    self._cleanup.append(self._pool.close)
                pool = self._pool
                slot_bytes = self._slot_bytes()
                slots = max(4, min(1024, self._buffer_bytes // (pool.workers * slot_bytes)))
                # announced first: the workers open the file while this thread indexes it
                session = pool.begin(
                    self.path, self._stream_index, self.spec, RingLayout(pool.workers, slots, slot_bytes)
                )
            except BaseException:
                container.close()
                raise
            self._cleanup.append(session.end)
            index = start_index(self.path, stop_index, container)
            self.report.index_from_tables = index.source_tables
            pool.poll()
            head = None
            if self._head_thread and len(pool.ready) < pool.workers:
                head = HeadThread(self.path, self._stream_index, self.spec, slots)
                self._cleanup.append(head.close)
            self.report.workers = pool.workers
            self.report.worker_packets = [0] * pool.workers
            sampled = None
            if isinstance(self.sampling, Full):
                per = self._interval_frames or min(slots, 90)  # short intervals balance the workers
                plan = plan_full(index, per, self.timeout)
            else:
                sampled = SampledPlan(index, self._wanted, self._header_span, self.timeout)
                plan = iter(sampled)
            try:
                yield from self._deliver(
                    index, plan, pool, session, head, sampled and sampled.confirmed_frame_pts, t0
                )
            except Replan:  # nothing was delivered: drop the speculative work, decode the exact plan
                assert sampled is not None and sampled.frame_pts is not None
                log.info("%s: the header's duration misled the sampling plan: planning again", self.path)
                self.report.replanned = True
                session.end()
                if head is not None:
                    head.close()
                session = pool.begin(
                    self.path, self._stream_index, self.spec, RingLayout(pool.workers, slots, slot_bytes)
                )
                self._cleanup.append(session.end)
                exact_pts = sampled.frame_pts
                yield from self._deliver(
                    index, iter(sampled.exact), pool, session, None, lambda: exact_pts, t0
                )
            if sampled is not None:
                self.report.speculated_intervals = len(sampled.speculated)
            self._check_end(index)
            if self._pending_corrupt is not None:
                msg, skipped, where = self._pending_corrupt
                if self.report.truncated:
                    self.report.corrupt_frames += skipped
                else:
                    self._corrupt(msg, skipped, where)
        finally:
            self._release()

    def _wanted(self, frame_pts: np.ndarray, end_pts: int, below: int | None) -> np.ndarray:
        """The request's picks for frames `frame_pts` [F] of a stream ending at `end_pts`: [M] int64."""
        dur = float((end_pts - int(frame_pts[0])) * self._tb)
        times = request_times(self.sampling, dur, self.path)
        return pick(frame_pts, int(frame_pts[0]), self._tb, times, below)

    def _deliver(self, index: PacketIndex, plan, pool: DecodePool, session, head, gate, t0):
        """Dispatch `plan`'s intervals and yield their frames in order. `gate` (sampled decoding)
        returns the sorted frame pts [F] before the first record is used (it may raise Replan)."""
        frame_pts: np.ndarray | None = None
        # Intervals in flight: full-decode intervals hold many frames each (2W + 1 keep every worker
        # busy); sampled ones are many and short (1-2 frames, very different lengths), so more are
        # queued for the workers to stay busy while the oldest is delivered. Memory is bounded by
        # the rings either way (a worker blocks on a full ring).
        lookahead = 2 * pool.workers + 1 if gate is None else 4 * pool.workers + 1
        inflight: deque[tuple[Interval, int]] = deque()  # (interval, target): -1 = head thread
        # list scheduling: each interval goes to the worker with the least work assigned so far in
        # this decode, counted in packets to decode (intervals differ a lot: a sampled one ends at
        # its wanted frame). Workers decode without pause, so a worker's finish time is its assigned
        # work; counting only undelivered intervals instead ties whenever the in-order delivery lags
        # (it always does), and ties then pile onto one worker.
        assigned = [0] * pool.workers
        long_interval = 2 * session.layout.slots
        plan_done = False
        start_pts: int | None = None
        n = 0
        last_pts: int | None = None  # pts of the last frame delivered from inflight[0]
        redo_after: int | None = None  # inflight[0] was redone: drop its frames up to this pts
        last_progress = time.monotonic()
        while True:
            # dispatch: keep up to `lookahead` intervals in flight
            while not plan_done and len(inflight) < lookahead:
                pool.poll()
                ready = sorted(pool.ready)
                head_backlog = sum(1 for _, t in inflight if t < 0)
                if not ready and (head is None or head_backlog >= 2):
                    break
                try:
                    iv = next(plan)
                except StopIteration:
                    plan_done = True
                    break
                if ready:
                    target = min(ready, key=lambda w: (assigned[w], w))
                    if iv.wanted is None and pool.workers > 1 and (iv.last or iv.n_packets > long_interval):
                        # frame-threaded (bit-exact): the tail of a full decode, where nothing is
                        # left to run beside it, and intervals more than twice a worker's ring (a
                        # long GOP of large frames): the worker after it fills its ring and waits
                        # for delivery longer than it decodes, so each decoder takes every core
                        # while it can proceed
                        iv = replace(iv, threads=pool.workers)
                        self.report.threaded_intervals += 1
                    assigned[target] += iv.n_packets + _INTERVAL_COST
                    session.submit(target, iv)
                else:
                    target = -1
                    head.submit(iv)
                    self.report.local_intervals += 1
                inflight.append((iv, target))
                self.report.intervals += 1
            if not inflight:
                if plan_done:
                    return
                pool.poll(_POLL_S)
                if self._recover(pool, session, inflight):
                    last_progress = time.monotonic()
                if time.monotonic() - last_progress > self.timeout:
                    raise SourceTimeout(
                        f"{self.path}: no decode worker became ready in {self.timeout:.0f} s",
                        source=self.path,
                    )
                continue
            iv, target = inflight[0]
            rec: Record | None = (
                head.get(_POLL_S) if target < 0 else session.get(target, _POLL_S, borrow=self._borrow)
            )
            if rec is None:
                if target >= 0 and self._recover(pool, session, inflight):
                    last_progress = time.monotonic()
                    if inflight[0][1] == target:  # the interval being delivered starts over
                        redo_after = last_pts
                if time.monotonic() - last_progress > self.timeout:
                    raise SourceTimeout(
                        f"{self.path}: no decoded frame for {self.timeout:.0f} s", source=self.path
                    )
                continue
            last_progress = time.monotonic()
            if gate is not None:  # sampled: nothing is used before the plan is confirmed
                frame_pts, gate = gate(), None
                start_pts = int(frame_pts[0])
            if rec.kind == KIND_END:
                inflight.popleft()
                last_pts = redo_after = None
                self.report.packets_fed += rec.fed
                self.report.frames_decoded += rec.decoded
                if target >= 0:
                    self.report.worker_packets[target] += rec.fed
                if rec.status != STATUS_OK:
                    status, detail = head.problems.pop(rec.seq) if target < 0 else session.problem(rec.seq)
                    self._interval_problem(
                        iv, status, detail, rec.skipped, is_last=plan_done and not inflight
                    )
                continue
            if redo_after is not None and rec.pts <= redo_after:
                if self._borrow and target >= 0:
                    session.release(target)
                continue  # delivered before its worker died
            last_pts = rec.pts
            if start_pts is None:
                start_pts = rec.pts
            if self.report.first_frame_s is None:
                self.report.first_frame_s = time.perf_counter() - t0
            idx = n if frame_pts is None else int(np.searchsorted(frame_pts, rec.pts))
            n += 1
            self.report.frames = n
            frame = self._frame(rec, start_pts, idx)
            self._last_t = frame.t
            yield frame
            if self._borrow and target >= 0:
                session.release(target)  # the consumer asked for the next frame: the lent slot is free

    def _recover(self, pool: DecodePool, session: Session, inflight: deque[tuple[Interval, int]]) -> bool:
        """Replace dead workers and resubmit, in order, every interval they held; False if none died.

        Raises WorkerFailed once more than `max_restarts` workers died during this decode.
        """
        dead = pool.dead()
        if not dead:
            return False
        for w, how in dead.items():
            held = [iv for iv, t in inflight if t == w]
            where = f" while decoding from {float(held[0].key_pts * self._tb):.3f} s" if held else ""
            if self.report.worker_restarts >= self._max_restarts:
                raise WorkerFailed(
                    f"{self.path}: {how}{where}; {self.report.worker_restarts} worker restarts already "
                    f"(max_restarts={self._max_restarts}): giving up",
                    source=self.path,
                    detail={"worker": w, "restarts": self.report.worker_restarts},
                )
            log.warning(
                "%s: %s%s: restarting it and decoding its %d intervals again",
                self.path,
                how,
                where,
                len(held),
            )
            self.report.worker_restarts += 1
            pool.restart(w)
            for iv in held:
                session.submit(w, iv)
        return True

    def _frame(self, rec: Record, start_pts: int, idx: int) -> Frame:
        fmt = self.spec.format
        px = rec.pixels
        if fmt in ("rgb24", "bgr24"):
            px = px.reshape(rec.height, rec.width, 3)  # [H, W, 3]
        elif fmt == "gray":
            px = px.reshape(rec.height, rec.width)  # [H, W]
        return Frame(
            pixels=px,
            pts=rec.pts * self._tb_num / self._tb_den,
            t=(rec.pts - start_pts) * self._tb_num / self._tb_den,
            index=idx,
            keyframe=rec.key,
            source_id=self.source_id,
            pix_fmt=rec.fmt,
            width=rec.width,
            height=rec.height,
            duration=rec.dur * self._tb_num / self._tb_den if rec.dur else None,
        )

    def _interval_problem(
        self, iv: Interval, status: int, detail: object, skipped: int, is_last: bool
    ) -> None:
        if status == STATUS_ERROR:
            raise from_wire(detail)  # type: ignore[arg-type]
        where = float(iv.key_pts * self._tb) if iv.key_pts != NOPTS else 0.0
        msg = f"{self.path}: decoder error in the interval starting at {where:.3f} s: {detail}"
        if status != STATUS_CORRUPT and is_last:
            self._stopped(f"{msg} (the file ends early: truncated)")
            return
        if skipped:
            msg = f"{msg} ({skipped} corrupt frames skipped)"
        self._corrupt(msg, skipped, where, defer=is_last)

    def _corrupt(self, msg: str, skipped: int, where: float, defer: bool = False) -> None:
        """Skipped corrupt frames: CorruptData when strict, else counted. In the last interval the
        decision waits for the end-of-file checks (a cut-off last frame means truncated, not corrupt)."""
        if defer:
            self._pending_corrupt = (msg, skipped, where)
            return
        if self.strict:
            raise CorruptData(msg, source=self.path, detail={"pts_s": where, "skipped": skipped})
        self.report.corrupt_frames += skipped
        log.warning("%s (strict=False: skipped)", msg)
        self.report.problem = self.report.problem or msg

    def _check_end(self, index: PacketIndex) -> None:
        if index.problem:
            self._stopped(f"{self.path}: {index.problem}")
        elif self._declared_frames and self._declared_frames > len(index):
            self._stopped(
                f"{self.path}: the container declares {self._declared_frames} frames but the file holds "
                f"only {len(index)} (truncated)"
            )
        elif self._header_duration_s is not None:
            end_s = float(index.end_pts() * self._tb) - (self.info.start_s or 0.0)
            if end_s + 0.5 < self._header_duration_s:
                self._stopped(
                    f"{self.path}: the header says {self._header_duration_s:.2f} s but data ends at {end_s:.2f} s (truncated)"
                )

    def _stopped(self, msg: str) -> None:
        if self.report.truncated:
            return
        self.report.truncated = True
        self.report.problem = msg
        if self.report.frames:
            self.report.stopped_at_s = self._last_t
        if self.strict:
            raise Truncated(msg, source=self.path, detail={"stopped_at_s": self.report.stopped_at_s or 0.0})
        log.warning("%s (strict=False: delivered %d frames)", msg, self.report.frames)
