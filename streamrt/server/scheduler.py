"""One scheduler across all sessions of a device: earliest deadline first, fair, no unbounded queue.

Sessions hand in jobs (a blocking callable plus its deadline); the scheduler runs them on `workers`
threads (one per device; model work never runs on the event loop). Rules:
- Earliest deadline first; equal deadlines go to the session served least recently (fairness).
- A session has at most one job waiting or running (its pump awaits the result), so the queue is
  bounded by the number of sessions and no session can crowd others out.
- At dispatch, a droppable job already past its deadline is dropped (`expired`, counted) without running.
- At dispatch, when now + the session's estimated cost would pass the deadline, the job runs with
  `degrade=True` (the session steps its engine's ladder down first) and `predicted_miss` is counted.
Owns: the ready heap, the worker pool, the in-flight futures and the counters. Does not know what a
job does, sessions' buffers or the protocol.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import heapq
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


class Expired:
    """The result of a job dropped at dispatch because its deadline had passed."""


EXPIRED = Expired()


@dataclass(order=True, slots=True)
class _Job(Generic[T]):
    deadline: float
    last_served: float
    n: int
    session: str = field(compare=False)
    fn: Callable[[bool], T] = field(compare=False)
    est_s: float = field(compare=False)
    droppable: bool = field(compare=False)
    future: asyncio.Future[T | Expired] = field(compare=False)


class Scheduler:
    """EDF across sessions on `workers` threads (see module docstring)."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._pool = cf.ThreadPoolExecutor(workers, thread_name_prefix="streamrt-device")
        self._heap: list[_Job] = []
        self._free = workers
        self._n = itertools.count()
        self._served: dict[str, float] = {}
        self._inflight: dict[str, cf.Future] = {}
        self.counters: Counter[str] = Counter()
        """dispatched, expired, predicted_miss, finished_late, failed."""
        self.busy_s = 0.0
        """Worker seconds spent running jobs (utilisation = busy_s / (workers x wall))."""

    @property
    def queued(self) -> int:
        return len(self._heap)

    async def run(
        self,
        session: str,
        fn: Callable[[bool], T],
        *,
        deadline: float,
        est_s: float = 0.0,
        droppable: bool = True,
    ) -> T | Expired:
        """Queue `fn(degrade)` and wait for its result (EXPIRED when dropped at dispatch)."""
        loop = asyncio.get_running_loop()
        job = _Job(
            deadline,
            self._served.get(session, 0.0),
            next(self._n),
            session,
            fn,
            est_s,
            droppable,
            loop.create_future(),
        )
        heapq.heappush(self._heap, job)
        self._kick()
        return await job.future  # cancelling the waiter cancels a queued job; a running one finishes

    def after_current(self, session: str, fn: Callable[[], object]) -> None:
        """Run `fn` on a worker once the session's running job (if any) is over (e.g. engine.close)."""
        running = self._inflight.get(session)
        if running is not None and not running.done():
            running.add_done_callback(lambda _: fn())
        else:
            self._pool.submit(fn)

    def forget(self, session: str) -> None:
        self._served.pop(session, None)

    def _kick(self) -> None:
        while self._free > 0 and self._heap:
            job = heapq.heappop(self._heap)
            if job.future.done():  # its waiter was cancelled
                continue
            now = time.monotonic()
            if job.droppable and now > job.deadline:
                self.counters["expired"] += 1
                job.future.set_result(EXPIRED)
                continue
            degrade = now + job.est_s > job.deadline
            self.counters["dispatched"] += 1
            self.counters["predicted_miss"] += degrade
            self._free -= 1
            loop = job.future.get_loop()
            fut = self._pool.submit(self._timed, job.fn, degrade)
            self._inflight[job.session] = fut
            fut.add_done_callback(lambda f, job=job, loop=loop: loop.call_soon_threadsafe(self._done, job, f))

    def _timed(self, fn: Callable[[bool], T], degrade: bool) -> T:
        t0 = time.perf_counter()
        try:
            return fn(degrade)
        finally:
            self.busy_s += time.perf_counter() - t0  # only worker threads write; one add per job

    def _done(self, job: _Job, fut: cf.Future) -> None:
        self._free += 1
        self._served[job.session] = time.monotonic()
        if self._inflight.get(job.session) is fut:
            del self._inflight[job.session]
        if time.monotonic() > job.deadline:
            self.counters["finished_late"] += 1
        if not job.future.done():
            exc = fut.exception()
            if exc is not None:
                self.counters["failed"] += 1
                job.future.set_exception(exc)
            else:
                job.future.set_result(fut.result())
        self._kick()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
