"""In-process decoding of the first intervals while the worker processes start.

Spawned workers need a few hundred milliseconds to import PyAV and NumPy; a thread in the parent
decodes the head of the file meanwhile, so the first frame arrives in milliseconds. It produces the
same `Record`s as a worker ring, through a bounded queue (blocking producer: nothing is dropped,
the queue bound is the memory bound). Knows nothing about which intervals it gets or why.
"""

from __future__ import annotations

import queue
import threading

from streamrt.ingest.core import IntervalDecoder
from streamrt.ingest.errors import IngestError, WorkerFailed
from streamrt.ingest.index import Interval
from streamrt.ingest.pool import (
    KIND_END,
    KIND_FRAME,
    STATUS_CORRUPT,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_PROBLEM,
    Record,
)
from streamrt.ingest.types import PixelSpec

_POLL_S = 0.05


class HeadThread:
    """A single decoder thread fed intervals in order; `get` returns its records in order."""

    def __init__(self, path: str, stream_index: int, spec: PixelSpec, max_frames: int) -> None:
        self._args = (path, stream_index, spec)
        self._in: queue.Queue[Interval | None] = queue.Queue()
        self._out: queue.Queue[Record] = queue.Queue(maxsize=max(2, max_frames))
        self._stop = threading.Event()
        self.problems: dict[int, tuple[int, object]] = {}
        self._thread = threading.Thread(target=self._run, name="ingest-head", daemon=True)
        self._thread.start()

    def submit(self, iv: Interval) -> None:
        self._in.put(iv)

    def get(self, timeout: float) -> Record | None:
        try:
            return self._out.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._stop.set()
        self._in.put(None)
        self._thread.join(timeout=5.0)

    def _put(self, rec: Record) -> bool:
        while not self._stop.is_set():
            try:
                self._out.put(rec, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        dec: IntervalDecoder | IngestError | None = None
        try:
            while not self._stop.is_set():
                try:
                    iv = self._in.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if iv is None:
                    return
                if dec is None:
                    try:
                        dec = IntervalDecoder(*self._args)
                    except IngestError as e:
                        dec = e
                status, skipped, fed, decoded = STATUS_OK, 0, 0, 0
                if isinstance(dec, IngestError):
                    status, self.problems[iv.seq] = STATUS_ERROR, (STATUS_ERROR, dec.to_wire())
                else:
                    try:
                        for d in dec.run(iv):
                            rec = Record(
                                iv.seq,
                                KIND_FRAME,
                                STATUS_OK,
                                d.pts,
                                d.duration,
                                d.keyframe,
                                d.width,
                                d.height,
                                d.pix_fmt,
                                d.pixels,
                            )
                            if not self._put(rec):
                                return
                        skipped, fed, decoded = dec.status.corrupt, dec.status.fed, dec.status.decoded
                        if not dec.status.ok or skipped:
                            status = STATUS_PROBLEM if not dec.status.ok else STATUS_CORRUPT
                            self.problems[iv.seq] = (status, dec.status.problem)
                    except Exception as e:  # noqa: BLE001 - reported in order, like a worker's failure
                        status = STATUS_ERROR
                        err = WorkerFailed(f"{self._args[0]}: head decoder: {type(e).__name__}: {e}")
                        self.problems[iv.seq] = (STATUS_ERROR, err.to_wire())
                if not self._put(
                    Record(iv.seq, KIND_END, status, 0, 0, False, 0, 0, "", None, skipped, fed, decoded)
                ):
                    return
        finally:
            if isinstance(dec, IntervalDecoder):
                dec.close()
