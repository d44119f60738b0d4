"""Autoscaling and draining on a real local Ray cluster (2 CPUs): an autoscaled engine deployment
(built-in generator, 4 slots per replica, min 1, max 2) starting with one replica.

Oracles: replica counts from the registry (`/v1/replicas`) against the policy's thresholds worked
out by hand; the protocol messages each session receives (typed `End("draining", 2)` for the drained
replica's session; output frames keep coming on the survivor); which replica grants go to. Serve
stops the newest replica on scale-down, so the replica that scaling up added is the one drained."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest

from streamrt.client import End, OutputFrameEvent

from .conftest import free_port  # noqa: TID252


@pytest.fixture(scope="module")
def cluster(local_ray):
    pytest.importorskip("ray.serve")
    from ray import serve

    from streamrt.scale.autoscale import AutoscaleConfig
    from streamrt.scale.live import LiveConfig, serve_live, stop_live

    # 1 replica x 4 slots: 3 sessions use 75% -> 2 replicas. 2 sessions on 2 replicas would use
    # 2/4 = 50% of one replica -> back to 1 after 2 s quiet (hysteresis: 50% < 75%).
    scaling = AutoscaleConfig(
        min_replicas=1,
        max_replicas=2,
        scale_up_at=0.75,
        scale_down_at=0.5,
        miss_up=0.95,  # the test's sessions have a 5 s budget: slots drive the decisions here
        miss_down=0.9,
        up_cooldown_s=0,
        down_cooldown_s=2,
        down_after_s=2,
        metrics_interval_s=0.25,
        look_back_s=1.0,
    )
    cfg = LiveConfig(
        replicas=1,
        slots=4,
        http_port=free_port(),
        cpus_per_replica=0.5,
        heartbeat_s=0.2,
        dead_after_s=3,
        autoscale=scaling,
    )
    try:
        yield serve_live(cfg, timeout_s=600)
    finally:
        stop_live()
        serve.shutdown()


def _replicas(url: str) -> list[dict]:
    with urllib.request.urlopen(url + "/v1/replicas", timeout=30) as r:
        return json.loads(r.read())["replicas"]


def _params(prompt: str, seed: int) -> dict:
    return {"prompt": prompt, "seed": seed, "degrade": False, "out_codec": "raw", "budget_ms": 5000}


class Reader:
    """Reads one session's events all the time (an unread socket stops answering the server's pings)."""

    def __init__(self, client) -> None:
        self.client, self.frames, self.end = client, 0, None
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while self.end is None:
            ev = await self.client.recv()
            if isinstance(ev, End):
                self.end = ev
            self.frames += isinstance(ev, OutputFrameEvent)

    async def until(self, pred, timeout: float, what: str) -> None:
        async with asyncio.timeout(timeout):
            while not pred(self):
                assert not self.task.done() or self.end is not None, self.task.exception()
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.client.close()


async def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(pred):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s: {what}"
        await asyncio.sleep(0.25)


@pytest.mark.slow
def test_load_scales_up_and_scale_down_drains_the_replica_it_removes(cluster) -> None:
    from streamrt.scale.connect import open_session

    url = cluster.url

    async def body():
        first = _replicas(url)
        assert len(first) == 1
        a_id = first[0]["replica"]
        # load: 3 sessions on the only replica (75% of its slots) -> the policy asks for 2
        opened = [
            await open_session(url, "generate", _params(p, i))
            for i, p in enumerate(("a red circle", "a blue square", "a green triangle"))
        ]
        assert {g.replica for _, g in opened} == {a_id}
        for client, _ in opened:
            await client.pause()  # no output while we wait: frees the core for the new replica
        a, *others = [Reader(client) for client, _ in opened]
        await _wait(lambda: len(_replicas(url)) == 2, 300, "a second replica after 3 sessions on 1")
        b_id = next(r["replica"] for r in _replicas(url) if r["replica"] != a_id)
        # a session opened now goes to the new replica (4 free slots against 1)
        client_c, gc = await open_session(url, "generate", _params("a red square", 7))
        assert gc.replica == b_id
        c = Reader(client_c)
        await c.until(lambda r: r.frames >= 2, 60, "frames on B")
        # 2 of A's sessions leave: 2 sessions on 2 replicas -> quiet -> scale down to 1, which
        # drains the newest replica (B): its session gets the draining end with the retry hint
        for r in others:
            await r.close()
        await a.client.resume()
        await c.until(lambda r: r.end is not None, 120, "the draining end on B's session")
        before = a.frames
        await a.until(lambda r: r.frames >= before + 4, 60, "the survivor's session goes on")
        await _wait(lambda: [r["replica"] for r in _replicas(url)] == [a_id], 60, "B leaves the registry")
        client_d, gd = await open_session(url, "generate", _params("a blue circle", 9))  # the survivor
        d = Reader(client_d)
        await d.until(lambda r: r.frames >= 1, 60, "frames on the new session")
        ends = (a.end, c.end, d.end)
        for r in (a, c, d):
            await r.close()
        return ends, gd, a_id

    (end_a, end_c, end_d), gd, a_id = asyncio.run(body())
    assert end_c == End("draining", 2)
    assert end_a is None and end_d is None  # the survivor's sessions were not ended
    assert gd.replica == a_id
