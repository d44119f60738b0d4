"""The EDF scheduler and the outbox, against plain oracles (sorted deadlines, counted drops)."""

from __future__ import annotations

import asyncio
import threading
import time

from streamrt.server.outbox import Outbox
from streamrt.server.scheduler import EXPIRED, Scheduler


def test_earliest_deadline_first_with_one_worker(arun) -> None:
    order: list[str] = []
    gate = threading.Event()

    async def body():
        s = Scheduler(1)
        now = time.monotonic()
        blocker = asyncio.create_task(
            s.run("block", lambda d: gate.wait(5), deadline=now + 100, droppable=False)
        )
        await asyncio.sleep(0.05)  # the blocker occupies the only worker; the rest queue
        deadlines = {"a": 9.0, "b": 3.0, "c": 7.0, "d": 1.0, "e": 5.0}
        tasks = [
            asyncio.create_task(
                s.run(k, lambda d, k=k: order.append(k) or k, deadline=now + v, droppable=False)
            )
            for k, v in deadlines.items()
        ]
        await asyncio.sleep(0.05)
        assert s.queued == 5
        gate.set()
        res = await asyncio.gather(blocker, *tasks)
        s.close()
        return res, deadlines

    res, deadlines = arun(body())
    assert order == sorted(deadlines, key=deadlines.get)
    assert res[1:] == list(deadlines)


def test_equal_deadlines_go_to_the_least_recently_served(arun) -> None:
    order: list[str] = []
    gate = threading.Event()

    async def body():
        s = Scheduler(1)
        await s.run("x", lambda d: None, deadline=time.monotonic() + 10, droppable=False)  # x served recently
        blocker = asyncio.create_task(s.run("z", lambda d: gate.wait(5), deadline=0, droppable=False))
        await asyncio.sleep(0.05)
        dl = time.monotonic() + 10
        t1 = asyncio.create_task(s.run("x", lambda d: order.append("x"), deadline=dl, droppable=False))
        t2 = asyncio.create_task(s.run("y", lambda d: order.append("y"), deadline=dl, droppable=False))
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(blocker, t1, t2)
        s.close()

    arun(body())
    assert order == ["y", "x"]


def test_expired_jobs_are_dropped_and_predicted_misses_degrade(arun) -> None:
    ran: list[tuple[str, bool]] = []

    async def body():
        s = Scheduler(1)
        now = time.monotonic()
        late = await s.run("a", lambda d: ran.append(("late", d)), deadline=now - 1)
        kept = await s.run("a", lambda d: ran.append(("must", d)), deadline=now - 1, droppable=False)
        tight = await s.run(
            "a", lambda d: ran.append(("tight", d)) or 1, deadline=time.monotonic() + 0.5, est_s=1.0
        )
        easy = await s.run(
            "a", lambda d: ran.append(("easy", d)) or 2, deadline=time.monotonic() + 5, est_s=0.01
        )
        s.close()
        return late, kept, tight, easy, s.counters

    late, kept, tight, easy, counters = arun(body())
    assert late is EXPIRED and kept is None and (tight, easy) == (1, 2)
    assert ran == [("must", True), ("tight", True), ("easy", False)]
    assert counters["expired"] == 1 and counters["predicted_miss"] == 2 and counters["finished_late"] == 1


def test_a_failing_job_raises_in_its_waiter_and_the_worker_goes_on(arun) -> None:
    async def body():
        s = Scheduler(1)
        try:
            await s.run("a", lambda d: 1 / 0, deadline=time.monotonic() + 5)
        except ZeroDivisionError:
            pass
        else:
            raise AssertionError("no exception")
        r = await s.run("b", lambda d: "ok", deadline=time.monotonic() + 5)
        s.close()
        return r, s.counters["failed"]

    assert arun(body()) == ("ok", 1)


def test_cancelled_waiter_removes_its_queued_job(arun) -> None:
    ran: list[str] = []
    gate = threading.Event()

    async def body():
        s = Scheduler(1)
        blocker = asyncio.create_task(s.run("z", lambda d: gate.wait(5), deadline=0, droppable=False))
        await asyncio.sleep(0.05)
        t = asyncio.create_task(s.run("a", lambda d: ran.append("a"), deadline=time.monotonic() + 5))
        await asyncio.sleep(0.05)
        t.cancel()
        gate.set()
        await blocker
        await s.run("b", lambda d: ran.append("b"), deadline=time.monotonic() + 5)
        s.close()

    arun(body())
    assert ran == ["b"]


def test_outbox_bounds_and_order(arun) -> None:
    async def body():
        box = Outbox(frame_cap=2, error_cap=3)
        for i in range(5):
            box.frame(bytes([i]))
        for i in range(5):
            box.error(f"e{i}")
        box.text(1, "t1-a")
        box.text(2, "t2")
        box.text(1, "t1-b")  # replaces the pending version of segment 1
        box.stats("s1")
        box.stats("s2")
        box.control("params_ack", "ack1")
        box.control("params_ack", "ack2")
        box.control("pong", "pong")
        box.end("end")
        out = []
        while (m := box.pop()) is not None:
            out.append(m)
        return out, box

    out, box = arun(body())
    assert out == ["ack2", "pong", "e0", "e1", "e2", "t1-b", "t2", "s2", bytes([3]), bytes([4])]
    assert box.dropped_frames == 3 and box.errors_suppressed == 2 and box.take_end() == "end"
