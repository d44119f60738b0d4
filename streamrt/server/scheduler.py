"""One scheduler across all sessions of a device: earliest deadline first, fair, no unbounded queue.

Sessions hand in jobs (a blocking callable plus its deadline); the scheduler runs them on `workers`
threads (one per device; model work never runs on the event loop). Rules:
- Earliest deadline first; equal deadlines go to the session served least recently (fairness).
- A session has at most one job waiting or running (its pump awaits the result), so the queue is
  bounded by the number of sessions and no session can crowd others out.
- At dispatch, a droppable job already past its deadline is dropped (`expired`, counted) without running.
- At dispatch, when now + the session's estimated cost would pass the deadline, the job runs with
  `degrade=True` (the session steps its engine's ladder down first) and `predicted_miss` is counted.
- Cross-session batching: a job may carry a `Batch` (a key and a runner). When a worker takes a job
  with a key, the other queued jobs with the same key (up to `max_batch` in all, earliest deadlines
  first) ride along: the runner gets all their callables and degrade flags at once and returns one
  result (or exception) per job, e.g. one model forward for several sessions' blocks. Riders only move
  earlier than EDF would have run them; each is still checked for expiry, and a rider's exception goes
  to that rider's session only.
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
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


class Expired:
    """The result of a job dropped at dispatch because its deadline had passed."""


EXPIRED = Expired()

BatchRunner = Callable[[Sequence[Callable[[bool], T]], Sequence[bool]], list[T | BaseException]]
"""(job callables, their degrade flags) -> one result or exception per job, in order (on a worker)."""


@dataclass(frozen=True, slots=True)
class Batch(Generic[T]):
    """How a job may share a worker run with other sessions' jobs of the same `key`."""

    key: Hashable
    run: BatchRunner[T]


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
    batch: Batch[T] | None = field(compare=False, default=None)


def _solo(fns: Sequence[Callable[[bool], T]], degrades: Sequence[bool]) -> list[T | BaseException]:
    try:
        return [fns[0](degrades[0])]
    except Exception as e:  # handed to the job's waiter
        return [e]


class Scheduler:
    """EDF across sessions on `workers` threads (see module docstring)."""

    def __init__(self, workers: int = 1, max_batch: int = 8) -> None:
        self.workers = workers
        self.max_batch = max_batch
        self._pool = cf.ThreadPoolExecutor(workers, thread_name_prefix="streamrt-device")
        self._heap: list[_Job] = []
        self._free = workers
        self._n = itertools.count()
        self._served: dict[str, float] = {}
        self._inflight: dict[str, cf.Future] = {}
        self.counters: Counter[str] = Counter()
        """dispatched, expired, predicted_miss, finished_late, failed, batches (runs of >= 2 jobs),
        batched_jobs (jobs in them)."""
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
        batch: Batch[T] | None = None,
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
            batch,
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

    def _admit(self, job: _Job, now: float) -> bool | None:
        """At dispatch: None when the job is gone (cancelled or expired), else its degrade flag."""
        if job.future.done():  # its waiter was cancelled
            return None
        if job.droppable and now > job.deadline:
            self.counters["expired"] += 1
            job.future.set_result(EXPIRED)
            return None
        degrade = now + job.est_s > job.deadline
        self.counters["dispatched"] += 1
        self.counters["predicted_miss"] += degrade
        return degrade

    def _riders(self, lead: _Job, now: float) -> tuple[list[_Job], list[bool]]:
        """Queued jobs that share the lead's batch key (earliest deadlines first, up to max_batch)."""
        if lead.batch is None or self.max_batch < 2:
            return [], []
        same = sorted(j for j in self._heap if j.batch is not None and j.batch.key == lead.batch.key)
        jobs: list[_Job] = []
        flags: list[bool] = []
        for j in same:
            if len(jobs) + 1 >= self.max_batch:
                break
            self._heap.remove(j)
            d = self._admit(j, now)
            if d is not None:
                jobs.append(j)
                flags.append(d)
        heapq.heapify(self._heap)
        return jobs, flags

    def _kick(self) -> None:
        while self._free > 0 and self._heap:
            lead = heapq.heappop(self._heap)
            now = time.monotonic()
            degrade = self._admit(lead, now)
            if degrade is None:
                continue
            riders, flags = self._riders(lead, now)
            jobs, degrades = [lead, *riders], [degrade, *flags]
            runner = lead.batch.run if riders and lead.batch is not None else _solo
            if riders:
                self.counters["batches"] += 1
                self.counters["batched_jobs"] += len(jobs)
            self._free -= 1
            loop = lead.future.get_loop()
            fut = self._pool.submit(self._timed, runner, [j.fn for j in jobs], degrades)
            for j in jobs:
                self._inflight[j.session] = fut
            fut.add_done_callback(
                lambda f, jobs=jobs, loop=loop: loop.call_soon_threadsafe(self._done, jobs, f)
            )

    def _timed(self, runner: BatchRunner, fns: list[Callable[[bool], T]], degrades: list[bool]) -> list:
        t0 = time.perf_counter()
        try:
            return runner(fns, degrades)
        finally:
            self.busy_s += time.perf_counter() - t0  # only worker threads write; one add per run

    def _done(self, jobs: list[_Job], fut: cf.Future) -> None:
        self._free += 1
        now = time.monotonic()
        exc = fut.exception()
        results = [exc] * len(jobs) if exc is not None else fut.result()
        for job, res in zip(jobs, results, strict=True):
            self._served[job.session] = now
            if self._inflight.get(job.session) is fut:
                del self._inflight[job.session]
            if now > job.deadline:
                self.counters["finished_late"] += 1
            if job.future.done():
                continue
            if isinstance(res, BaseException):
                self.counters["failed"] += 1
                job.future.set_exception(res)
            else:
                job.future.set_result(res)
        self._kick()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
