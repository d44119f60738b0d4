"""Draining without Ray: the slot table stops granting a draining replica, and a replica host stopped
with reason "draining" ends every session with `end{reason:"draining", retry_after_s}` after its
pending output and refuses new connections; `load()` reports slots in use and the deadline-miss rate.

Oracles: the protocol messages the client receives (typed `End` with the reason and hint); slot
counts by hand; the miss rate recomputed from the server's own hit/miss counters."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from streamrt.client import AsyncClient, End, OutputFrameEvent
from streamrt.scale.replica import ReplicaHost
from streamrt.scale.slots import SlotTable
from streamrt.server import ServerConfig
from streamrt.server import protocol as P
from streamrt.server.generate import generate_factory

SECRET = "d" * 32


def test_slot_table_gives_no_grants_to_a_draining_replica() -> None:
    tab = SlotTable(SECRET)
    tab.register("a", "ws://h:1/ws", 2, ["generate"], 1, "n")
    tab.register("b", "ws://h:2/ws", 2, ["generate"], 2, "n")
    assert tab.drain("a") and not tab.drain("zz")
    grants = [tab.reserve("generate") for _ in range(3)]
    assert [g.replica for g in grants if g] == ["b", "b"] and grants[2] is None  # a's free slots unused
    assert tab.heartbeat("a", []) and {r["replica"]: r["draining"] for r in tab.snapshot()} == {
        "a": True,  # a heartbeat does not undo draining
        "b": False,
    }
    tab.unregister("a")
    assert [r["replica"] for r in tab.snapshot()] == ["b"]


@pytest.fixture(scope="module")
def builtin_gen():
    from streamrt.models.gen.model import load_builtin

    return load_builtin()


def test_draining_host_ends_sessions_with_the_retry_hint_and_refuses_new_ones(builtin_gen) -> None:
    table = SlotTable(SECRET, ticket_ttl_s=10, dead_after_s=5)
    host = ReplicaHost(
        ServerConfig(port=0, max_sessions=2, budget_ms=5000),
        {"generate": generate_factory(builtin_gen)},
        replica="r1",
        secret=SECRET,
        register=lambda url: table.register("r1", url, 2, ["generate"], 0, "n"),
        report=lambda nonces: table.heartbeat("r1", nonces),
        heartbeat_s=0.05,
    )
    params = {"prompt": "a red circle", "seed": 3, "degrade": False, "out_codec": "raw", "budget_ms": 5000}
    loop = asyncio.new_event_loop()
    stopped = False

    async def open_client() -> AsyncClient:
        g = table.reserve("generate")
        assert g is not None
        c = AsyncClient(g.url, "generate", params, token=g.token, reconnect=False, retries=0)
        await c.connect()
        return c

    async def until_end(c: AsyncClient) -> tuple[int, End]:
        frames = 0
        async with asyncio.timeout(60):
            while True:
                ev = await c.recv()
                if isinstance(ev, End):
                    return frames, ev
                frames += isinstance(ev, OutputFrameEvent)

    try:

        async def start():
            async with asyncio.timeout(60):
                while not table.replicas:
                    await asyncio.sleep(0.05)
            a, b = await open_client(), await open_client()
            async with asyncio.timeout(60):
                while host.load().used < 2:
                    await asyncio.sleep(0.05)
            for c in (a, b):  # both sessions run
                while not isinstance(await c.recv(30), OutputFrameEvent):
                    pass
            return a, b

        a, b = loop.run_until_complete(start())
        url = table.replicas["r1"].url
        assert table.drain("r1") and table.reserve("generate") is None  # no new grants

        async def drain():
            return await asyncio.gather(
                asyncio.to_thread(host.stop, "draining", 3), until_end(a), until_end(b)
            )

        ends = loop.run_until_complete(drain())[1:]
        stopped = True
        for _, end in ends:
            assert end == End("draining", 3)

        async def refused() -> str:
            try:
                async with connect(url, subprotocols=[P.SUBPROTOCOL]):
                    return "open"
            except InvalidStatus as e:
                return str(e.response.status_code)
            except OSError:
                return "closed"

        assert loop.run_until_complete(refused()) in ("401", "503", "closed")  # not admitted any more
        for c in (a, b):
            loop.run_until_complete(c.close())
    finally:
        if not stopped:
            host.stop()
        loop.close()


def test_load_reports_slots_and_the_window_miss_rate(builtin_gen) -> None:
    host = ReplicaHost(
        ServerConfig(port=0, max_sessions=3),
        {"generate": generate_factory(builtin_gen)},
        replica="r2",
        secret=SECRET,
        register=lambda url: None,
        report=lambda nonces: True,
        heartbeat_s=0.05,
    )
    try:
        first = host.load()
        assert (first.used, first.slots, first.miss_rate) == (0, 3, 0.0)
        host.server.metrics.deadline.labels("generate", "hit").inc(6)
        host.server.metrics.deadline.labels("generate", "miss").inc(2)
        assert host.load().miss_rate == pytest.approx(0.25)  # 2 of 8 outputs missed
        host.server.metrics.deadline.labels("generate", "miss").inc(1)
        assert host.load().miss_rate == 1.0  # the window is "since the last call": 1 of 1
        assert host.load().miss_rate == 0.0  # nothing new
    finally:
        host.stop()
