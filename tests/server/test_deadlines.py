"""Deadlines, drops and the degrade ladder end to end (real server, real GenEngine).

Oracles: the budget itself (no answered frame may be older than its budget plus one step), the counted
drops adding up to the frames that were not answered, and the output flags / stats level when the
scheduler predicts misses."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from streamrt.client import AsyncClient, End, OutputFrameEvent, Stats


def test_flooding_client_gets_drops_not_queueing(serve, arun) -> None:
    budget = 0.2

    async def body():
        async with serve(stats_interval_s=0.25) as srv:
            params = {"input": "video", "budget_ms": budget * 1000, "degrade": False}
            async with AsyncClient(srv.url, "generate", params) as c:
                sess = srv.sessions[c.session_id]
                lat, sent, max_inbox = [], 0, 0
                frames = [
                    np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8) for i in range(8)
                ]

                async def rx():
                    while True:
                        ev = await c.recv()
                        if isinstance(ev, OutputFrameEvent):
                            lat.append(time.time() - ev.header.capture_us / 1e6)

                task = asyncio.create_task(rx())
                t0 = time.monotonic()
                while time.monotonic() - t0 < 2.0:  # ~500 fps: far above what the engine can do
                    await c.send_frame(frames[sent % 8], codec="raw")
                    sent += 1
                    max_inbox = max(max_inbox, len(sess.inbox))
                    await asyncio.sleep(0.002)
                await c.end_input()
                await asyncio.sleep(0.5)
                task.cancel()
                return lat, sent, max_inbox, dict(sess.drops), sess.counters["steps"]

    lat, sent, max_inbox, drops, steps = arun(body())
    steps -= 1  # the finish job after end_input
    assert max_inbox <= 2
    assert (
        steps
        + drops.get("input_buffer_full", 0)
        + drops.get("expired", 0)
        + drops.get("expired_in_buffer", 0)
        == sent
    )
    assert drops.get("input_buffer_full", 0) > 0 and len(lat) == steps
    assert float(np.percentile(lat, 99)) < 2 * budget, np.percentile(lat, 99)


def test_predicted_misses_step_the_ladder_down(serve, arun) -> None:
    async def body():
        async with serve(stats_interval_s=0.2) as srv:
            params = {"prompt": "a red circle", "preset": "quality", "budget_ms": 1}  # no step fits in 1 ms
            async with AsyncClient(srv.url, "generate", params) as c:
                frames, stats = [], []
                while len(frames) < 16 or not stats:
                    ev = await c.recv(10)
                    if isinstance(ev, OutputFrameEvent):
                        frames.append(ev)
                    elif isinstance(ev, Stats):
                        stats.append(ev)
                sess = srv.sessions[c.session_id]
                return frames, stats[-1].data, sess.counters["degrades"], sess.engine.ladder

    frames, stats, degrades, ladder = arun(body())
    assert degrades >= 1 and stats["level"] >= 1 and stats["deadline_miss_rate"] > 0
    assert ladder.index == len(ladder.levels) - 1  # at the bottom rung: 1 step, 1-frame blocks
    assert frames[0].header.flags & 2 == 0 and frames[-1].header.flags & 2 == 2


def test_paused_session_drops_input_and_resumes(serve, arun) -> None:
    async def body():
        async with serve() as srv:
            async with AsyncClient(srv.url, "generate", {"input": "video", "budget_ms": 5000}) as c:
                sess = srv.sessions[c.session_id]
                await c.pause()
                for _ in range(3):
                    await c.send_frame(np.zeros((16, 16, 3), np.uint8))
                await c.resume()
                await c.send_frame(np.zeros((16, 16, 3), np.uint8))
                await c.end_input()
                events = [ev async for ev in c]
                return events, dict(sess.drops)

    events, drops = arun(body())
    assert drops.get("paused") == 3 and isinstance(events[-1], End)
    assert [e.header.ref_seq for e in events if isinstance(e, OutputFrameEvent)] == [3]


def test_overloaded_sessions_share_the_worker_fairly(serve, arun) -> None:
    """Three clients flood video-to-video input: each session gets about a third of the work."""

    async def body():
        async with serve() as srv:
            params = {"input": "video", "budget_ms": 300, "degrade": False}
            clients = [AsyncClient(srv.url, "generate", params) for _ in range(3)]
            for c in clients:
                await c.connect()
            sessions = [srv.sessions[c.session_id] for c in clients]
            frame = np.zeros((16, 16, 3), np.uint8)

            async def flood(c: AsyncClient) -> None:
                t0 = time.monotonic()
                while time.monotonic() - t0 < 2.0:
                    await c.send_frame(frame, codec="raw")
                    await asyncio.sleep(0.003)

            async def drain(c: AsyncClient) -> None:
                while True:
                    await c.recv()

            drains = [asyncio.create_task(drain(c)) for c in clients]
            await asyncio.gather(*(flood(c) for c in clients))
            for t in drains:
                t.cancel()
            steps = [s.counters["steps"] for s in sessions]
            for c in clients:
                await c.close()
            return steps

    steps = arun(body())
    assert min(steps) > 0.65 * (sum(steps) / 3), steps
