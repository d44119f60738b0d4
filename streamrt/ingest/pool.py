"""Worker processes that decode intervals into shared-memory slot rings.

`DecodePool` owns W spawned processes (spawn context: no fork with threads around), a task queue
each, and per worker two semaphores (filled slots, free slots) that make its ring a bounded
single-producer single-consumer buffer. A pool lives across many decodes; each decode is a
`Session` laid out over the pool's one shared-memory block (W rings of `slots` frames, each slot
a fixed header record plus `slot_bytes` of pixels). The block is kept and stays mapped in every
process between sessions (grown when a decode needs more), so a warm pool does not pay page
faults again; `close()` unlinks it. A worker writes a frame into its next free slot and posts it;
the parent copies it out and frees the slot (or lends the slot itself until the consumer asks for
the next frame), so a worker that runs ahead blocks once its ring is full (memory stays bounded
for hour-long files). End-of-interval markers travel through the same
ring, in order with the frames.

Cancellation: the shared `active` value names the session workers may write for; setting it to -1
makes every worker abandon its task at the next frame or slot wait. Every wait here has a timeout;
workers exit when the parent process disappears; `close()` joins, then terminates, then kills.
A worker that dies (killed, crashed) is found by `dead()` and replaced by `restart(w)`: a new
process with a new task queue and semaphores (the dead one may have held their locks) joins the
running session with an empty ring; re-sending the lost work is the caller's job.
What this module does not know: which intervals to decode or how frames are delivered to users.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import secrets
import sys
import time
import types
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

from streamrt.ingest.errors import IngestError, OutOfResources, WorkerFailed
from streamrt.ingest.index import Interval
from streamrt.ingest.types import PixelSpec

log = logging.getLogger(__name__)

KIND_FRAME, KIND_END = 0, 1
# END statuses: clean; stopped early (`problem`); failed (an IngestError on the wire); decoded to the
# end but skipped `skipped` corrupt frames
STATUS_OK, STATUS_PROBLEM, STATUS_ERROR, STATUS_CORRUPT = 0, 1, 2, 3
RECORD = np.dtype(
    [
        ("seq", "<i8"),
        ("kind", "<i4"),
        ("status", "<i4"),
        ("pts", "<i8"),
        ("dur", "<i8"),
        ("key", "<i4"),
        ("width", "<i4"),
        ("height", "<i4"),
        ("nbytes", "<i8"),
        ("skipped", "<i8"),  # END records: corrupt frames the interval skipped
        ("fmt", "S24"),
        ("fed", "<i8"),  # END records: packets given to the decoder
        ("decoded", "<i8"),  # END records: frames the decoder returned (fewer when packets were skipped)
    ]
)
_POLL_S = 0.05  # granularity of every blocking wait (cancel and liveness checks between waits)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class RingLayout:
    workers: int
    slots: int
    slot_bytes: int

    @property
    def header_bytes(self) -> int:
        return (self.workers * self.slots * RECORD.itemsize + 63) // 64 * 64

    @property
    def total_bytes(self) -> int:
        return self.header_bytes + self.workers * self.slots * self.slot_bytes

    def views(self, buf: memoryview) -> tuple[np.ndarray, np.ndarray]:
        """headers [W, slots] RECORD, data [W, slots, slot_bytes] uint8 (views into shared memory)."""
        heads = np.ndarray((self.workers, self.slots), RECORD, buffer=buf, offset=0)
        data = np.ndarray(
            (self.workers, self.slots, self.slot_bytes), np.uint8, buffer=buf, offset=self.header_bytes
        )
        return heads, data


# ---------------------------------------------------------------- worker process side


def _worker_main(wid, tasks, items, free, active, ctl, parent_pid) -> None:  # pragma: no cover - subprocess
    """Entry point of a worker process (runs under spawn; imports happen here)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which cancels us
    from streamrt.ingest.core import IntervalDecoder

    ctl.put(("ready", wid))
    session = None  # [sid, decoder or error, layout, heads, data, {threads: frame-threaded decoder}]
    mapped: shared_memory.SharedMemory | None = None  # kept across sessions: its pages stay mapped
    head = 0
    while True:
        if os.getppid() != parent_pid:
            return
        try:
            msg = tasks.get(timeout=0.5)
        except queue.Empty:
            continue
        if msg is None:
            break
        kind, sid = msg[0], msg[1]
        if kind == "begin":
            _, _, path, stream_index, spec, shm_name, layout = msg
            if mapped is None or mapped.name != shm_name.lstrip("/"):
                if mapped is not None:
                    mapped.close()
                mapped = shared_memory.SharedMemory(name=shm_name)
            heads, data = layout.views(mapped.buf)
            try:
                dec = IntervalDecoder(path, stream_index, spec)
            except IngestError as e:
                dec = e
            except Exception as e:  # noqa: BLE001 - reported per task, the worker stays up
                dec = WorkerFailed(f"{path}: worker {wid} cannot open: {type(e).__name__}: {e}", source=path)
            session = [sid, dec, layout, heads[wid], data[wid], {}]
            del heads, data
            head = 0
        elif kind == "end":
            if session is not None and session[0] == sid:
                for d in [session[1], *session[5].values()]:
                    if not isinstance(d, IngestError):
                        d.close()
                session = None  # drops this session's views; the mapping stays for the next one
            ctl.put(("idle", wid, sid))
        elif kind == "task":
            iv: Interval = msg[2]
            if session is None or session[0] != sid or active.value != sid:
                continue
            head = _run_task(wid, session, iv, head, items, free, active, ctl, parent_pid)


def _acquire(sem, sid, active, parent_pid) -> bool:
    while not sem.acquire(timeout=_POLL_S):
        if active.value != sid or os.getppid() != parent_pid:
            return False
    return True


def _decoder_for(session, iv: Interval):  # pragma: no cover - subprocess
    """The session's decoder for `iv`: the single-threaded one, or one opened with `iv.threads`."""
    dec, threaded = session[1], session[5]
    if iv.threads <= 1 or isinstance(dec, IngestError):
        return dec
    if iv.threads not in threaded:
        from streamrt.ingest.core import IntervalDecoder

        try:
            threaded[iv.threads] = IntervalDecoder(dec.path, dec.stream.index, dec.spec, threads=iv.threads)
        except IngestError as e:
            return e
        except Exception as e:  # noqa: BLE001 - reported per task, the worker stays up
            return WorkerFailed(f"{dec.path}: cannot open a threaded decoder: {type(e).__name__}: {e}")
    return threaded[iv.threads]


def _run_task(wid, session, iv, head, items, free, active, ctl, parent_pid) -> int:  # pragma: no cover
    sid, _, layout, heads, data, _ = session
    dec = _decoder_for(session, iv)
    status, problem, skipped = STATUS_OK, "", 0
    if isinstance(dec, IngestError):
        status, problem = STATUS_ERROR, dec.to_wire()
    else:
        try:
            for d in dec.run(iv, materialize=False):
                if active.value != sid or not _acquire(free, sid, active, parent_pid):
                    return head  # cancelled: the session is being torn down
                slot = head % layout.slots
                try:
                    n = dec.write_into(data[slot])  # convert straight into shared memory
                except ValueError as e:
                    status, problem = STATUS_PROBLEM, str(e)
                    free.release()
                    break
                heads[slot] = (
                    iv.seq,
                    KIND_FRAME,
                    STATUS_OK,
                    d.pts,
                    d.duration,
                    d.keyframe,
                    d.width,
                    d.height,
                    n,
                    0,
                    d.pix_fmt.encode(),
                    0,
                    0,
                )
                head += 1
                items.release()
            if status == STATUS_OK and not dec.status.ok:
                status, problem = STATUS_PROBLEM, dec.status.problem
            skipped = dec.status.corrupt
            if status == STATUS_OK and skipped:
                status, problem = STATUS_CORRUPT, dec.status.problem
        except Exception as e:  # noqa: BLE001 - a worker must report, never die silently
            status, problem = (
                STATUS_ERROR,
                WorkerFailed(f"{dec.path}: worker {wid}: {type(e).__name__}: {e}", source=dec.path).to_wire(),
            )
    if status != STATUS_OK:
        ctl.put(("problem", wid, sid, iv.seq, status, problem))
    if not _acquire(free, sid, active, parent_pid):
        return head
    slot = head % layout.slots
    fed, decoded = (0, 0) if isinstance(dec, IngestError) else (dec.status.fed, dec.status.decoded)
    heads[slot] = (iv.seq, KIND_END, status, 0, 0, 0, 0, 0, 0, skipped, b"", fed, decoded)
    items.release()
    return head + 1


# ---------------------------------------------------------------- parent side


def _start_without_main(p: mp.process.BaseProcess) -> None:
    """Start a spawned worker without re-running the parent's `__main__` in it.

    Spawn normally re-imports the main script in every child (pytest, a REPL, `python - < file` or
    a script without the `if __name__ == "__main__"` guard then crash-loop). Workers need only
    `streamrt.ingest`, so the main module is hidden while the child's start data is prepared.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        p.start()
    finally:
        sys.modules["__main__"] = main


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    kind: int
    status: int
    pts: int
    dur: int
    key: bool
    width: int
    height: int
    fmt: str
    pixels: np.ndarray | None  # a copy, owned by the caller
    skipped: int = 0  # END records: corrupt frames the interval skipped
    fed: int = 0  # END records: packets given to the decoder
    decoded: int = 0  # END records: frames the decoder returned


class DecodePool:
    """W decode worker processes, reusable across many file decodes (one session at a time)."""

    def __init__(self, workers: int | None = None, *, context: str = "spawn") -> None:
        self.workers = workers or default_workers()
        self._ctx = mp.get_context(context)
        self._active = self._ctx.Value("q", -1, lock=False)
        self._ctl = self._ctx.Queue()
        self._tasks: list = [None] * self.workers
        self._items: list = [None] * self.workers
        self._free: list = [None] * self.workers
        self._procs: list = [None] * self.workers
        self.ready: set[int] = set()
        self.restarts = 0  # workers replaced after they died
        self._idle: set[tuple[int, int]] = set()
        self._problems: dict[tuple[int, int], tuple[int, object]] = {}
        self._next_sid = 0
        self._shm: shared_memory.SharedMemory | None = None
        self.session: Session | None = None
        self.closed = False
        for w in range(self.workers):
            self._spawn(w)

    def _spawn(self, w: int) -> None:
        """Start worker `w` with a fresh task queue and ring semaphores (a killed process may have
        died holding its queue's lock, so nothing of its predecessor is reused)."""
        self._tasks[w] = self._ctx.Queue()
        self._items[w] = self._ctx.Semaphore(0)
        self._free[w] = self._ctx.Semaphore(0)
        p = self._ctx.Process(
            target=_worker_main,
            args=(w, self._tasks[w], self._items[w], self._free[w], self._active, self._ctl, os.getpid()),
            name=f"streamrt-decode-{w}",
            daemon=True,
        )
        _start_without_main(p)
        self._procs[w] = p

    def pids(self) -> list[int]:
        """Worker process ids (kept after close, for checks that they are gone)."""
        if self.closed and not self._procs:
            return list(self._pids)
        return [p.pid for p in self._procs if p.pid is not None]

    def poll(self, timeout: float = 0.0) -> None:
        """Read control messages (ready / idle / problem) for up to `timeout` seconds."""
        if self._ctl is None:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = (
                    self._ctl.get(timeout=max(0.0, deadline - time.monotonic()))
                    if timeout
                    else self._ctl.get_nowait()
                )
            except (queue.Empty, OSError, ValueError):
                return
            if msg[0] == "ready":
                self.ready.add(msg[1])
            elif msg[0] == "idle":
                self._idle.add((msg[1], msg[2]))
            elif msg[0] == "problem":
                self._problems[(msg[2], msg[3])] = (msg[4], msg[5])
            timeout = 0.0

    def dead(self) -> dict[int, str]:
        """Workers whose process has ended: {worker: how it ended}."""
        out = {}
        for w, p in enumerate(self._procs):
            if not p.is_alive():
                code = p.exitcode
                how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                out[w] = f"decode worker {w} (pid {p.pid}) died ({how})"
        return out

    def restart(self, w: int) -> None:
        """Replace dead worker `w`. Its ring restarts empty; when a decode is running the new worker
        joins it at once (the caller resubmits the intervals the dead one held)."""
        old = self._procs[w]
        if old.is_alive():
            old.kill()
        old.join(1.0)
        self.ready.discard(w)
        self._tasks[w].cancel_join_thread()
        self._tasks[w].close()
        self.restarts += 1
        self._spawn(w)
        if self.session is not None and not self.session.ended:
            self.session.announce(w)

    def begin(self, path: str, stream_index: int, spec: PixelSpec, layout: RingLayout) -> Session:
        if self.closed:
            raise WorkerFailed("decode pool is closed")
        if self.session is not None:
            raise RuntimeError("a DecodePool runs one decode at a time; close the previous decoder first")
        for w in self.dead():
            log.warning("decode worker %d died between decodes: restarting it", w)
            self.restart(w)
        sid = self._next_sid
        self._next_sid += 1
        if self._shm is None or self._shm.size < layout.total_bytes:
            self._release_shm()  # workers drop their mapping of the old block at their next begin
            # one block per pool, reused by later decodes: its pages stay mapped in every process
            # named after the owning process so a leak is traceable (`ls /dev/shm/streamrt_*`)
            name = f"streamrt_{os.getpid()}_{secrets.token_hex(4)}"
            try:
                self._shm = shared_memory.SharedMemory(name=name, create=True, size=layout.total_bytes)
            except OSError as e:  # CPython unlinks the half-made segment before re-raising
                raise OutOfResources(
                    f"{path}: cannot allocate {layout.total_bytes / 2**20:.1f} MiB of shared memory "
                    f"for decoded frames ({e.strerror or e}); check /dev/shm space and file-size limits",
                    source=str(path),
                ) from e
        shm = self._shm
        self._active.value = sid
        self.session = Session(self, sid, shm, layout, (path, stream_index, spec))
        for w in range(self.workers):
            self.session.announce(w)
        return self.session

    def _release_shm(self) -> None:
        if self._shm is not None:
            try:
                self._shm.close()
            except BufferError:  # a view is still alive somewhere; the unlink below still frees the name
                pass
            self._shm.unlink()
            self._shm = None

    def close(self, timeout: float = 5.0) -> None:
        """Stop every worker (join, then terminate, then kill), free the shared memory; idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.session is not None:
            self.session.end(timeout=min(timeout, 2.0))
        self._active.value = -1
        for q in self._tasks:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + timeout
        for p in self._procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in self._procs:
            if p.is_alive():
                p.terminate()
                p.join(1.0)
            if p.is_alive():
                p.kill()
                p.join(1.0)
        self._release_shm()
        for q in [*self._tasks, self._ctl]:
            q.cancel_join_thread()  # never block on a feeder thread whose reader is gone
            q.close()
        # drop every reference to the semaphores and queues (the processes' args hold them too) so
        # their named POSIX semaphores in /dev/shm are unlinked now, not whenever the pool is collected
        self._pids = self.pids()
        self._procs = []
        self._tasks, self._items, self._free = [], [], []
        self._ctl = self._active = None

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Session:
    """One decode's use of the pool: its shared memory, ring positions and outstanding problems."""

    def __init__(
        self,
        pool: DecodePool,
        sid: int,
        shm: shared_memory.SharedMemory,
        layout: RingLayout,
        what: tuple[str, int, PixelSpec],
    ):
        self.pool = pool
        self.sid = sid
        self.layout = layout
        self._shm_name = shm.name
        self._what = what  # (path, stream index, pixel spec)
        self._heads, self._data = layout.views(shm.buf)
        self._tail = [0] * pool.workers
        self.ended = False

    def announce(self, w: int) -> None:
        """Empty worker `w`'s ring (every slot free, nothing posted) and send it this session."""
        pool = self.pool
        while pool._items[w].acquire(False):  # drop posts left by an aborted session
            pass
        while pool._free[w].acquire(False):
            pass
        for _ in range(self.layout.slots):
            pool._free[w].release()
        self._tail[w] = 0
        path, stream_index, spec = self._what
        pool._tasks[w].put(("begin", self.sid, path, stream_index, spec, self._shm_name, self.layout))

    def submit(self, worker: int, iv: Interval) -> None:
        self.pool._tasks[worker].put(("task", self.sid, iv))

    def get(self, worker: int, timeout: float, borrow: bool = False) -> Record | None:
        """Next record of `worker`'s ring; None after `timeout` s. The frame is copied out and its
        slot freed, or with `borrow` lent as a read-only view of the slot: the caller must
        `release(worker)` before it gets the next record of that worker."""
        if not self.pool._items[worker].acquire(timeout=timeout):
            return None
        slot = self._tail[worker] % self.layout.slots
        self._tail[worker] += 1
        # the header as Python values in one call (field by field costs ~10x more per frame)
        seq, kind, status, pts, dur, key, width, height, nbytes, skipped, fmt, fed, decoded = self._heads[
            worker, slot
        ].item()
        px = None
        lent = False
        if kind == KIND_FRAME:
            px = self._data[worker, slot, :nbytes]
            if borrow:
                px = px.view()
                px.flags.writeable = False
                lent = True
            else:
                px = px.copy()  # allocation: the frame leaves the ring
        rec = Record(
            seq, kind, status, pts, dur, bool(key), width, height, fmt.decode(), px, skipped, fed, decoded
        )
        if not lent:
            self.pool._free[worker].release()
        return rec

    def release(self, worker: int) -> None:
        """Give back the slot of the frame last lent by `get(worker, ..., borrow=True)`."""
        self.pool._free[worker].release()

    def problem(self, seq: int, timeout: float = 5.0) -> tuple[int, object]:
        """The (status, detail) a worker sent for interval `seq` (it is sent before the END record)."""
        deadline = time.monotonic() + timeout
        while (self.sid, seq) not in self.pool._problems:
            if time.monotonic() > deadline:
                return (STATUS_ERROR, WorkerFailed(f"no problem report for interval {seq}").to_wire())
            self.pool.poll(_POLL_S)
        return self.pool._problems.pop((self.sid, seq))

    def end(self, timeout: float = 15.0) -> None:
        """Cancel outstanding work, wait until every worker has let go of the shared memory, free it."""
        if self.ended:
            return
        self.ended = True
        pool = self.pool
        pool._active.value = -1
        for q in pool._tasks:
            q.put(("end", self.sid))
        deadline = time.monotonic() + timeout
        want = {(w, self.sid) for w in range(pool.workers)}
        while not want <= pool._idle and time.monotonic() < deadline:
            if any(not p.is_alive() for p in pool._procs):
                break
            pool.poll(_POLL_S)
        clean = want <= pool._idle
        pool._idle -= want
        for k in [k for k in pool._problems if k[0] == self.sid]:
            del pool._problems[k]
        self._heads = self._data = None  # the block itself stays with the pool for the next decode
        pool.session = None
        if not clean:
            log.warning(
                "decode workers did not release session %d in %.1f s: closing the pool", self.sid, timeout
            )
            pool.close(timeout=1.0)
