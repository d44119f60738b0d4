"""The two-step connect without Ray: tickets, the slot table (fake clock), and the ticket-checking
replica server with the real built-in generator, driven by a real SlotTable in place of the Ray actor.

Oracles: the HMAC/expiry rules written out here; slot counts computed by hand; the server's own
refusal codes (HTTP 401) and a direct GenEngine run for the frames a granted session receives."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from streamrt.models.gen.data import to_pixels
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from streamrt.client import AsyncClient, OutputFrameEvent
from streamrt.gen.config import GenEngineConfig
from streamrt.gen.engine import GenEngine
from streamrt.scale.replica import ReplicaHost
from streamrt.scale.slots import SlotTable
from streamrt.scale.tickets import Ticket, mint, verify
from streamrt.server import ServerConfig
from streamrt.server import protocol as P
from streamrt.server.generate import DEFAULT_PRESET, generate_factory

SECRET = "s" * 32


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_ticket_rules() -> None:
    text, t = mint(SECRET, "r1", 5.0, now=100.0)
    assert verify(SECRET, text, "r1", now=104.9) == t
    assert verify(SECRET, text, "r1", now=105.1) == "ticket expired"
    assert verify(SECRET, text, "r2", now=101) == "ticket is for another replica"
    assert verify("x" * 32, text, "r1", now=101) == "bad ticket signature"
    body, _, sig = text.partition(".")
    forged = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + sig
    assert verify(SECRET, forged, "r1", now=101) == "bad ticket signature"
    assert verify(SECRET, None, "r1") == "no ticket"
    assert isinstance(t, Ticket) and len({mint(SECRET, "r1", 5)[1].nonce for _ in range(1000)}) == 1000


def test_slot_table_spreads_fills_frees_and_drops_dead_replicas() -> None:
    clock = Clock()
    tab = SlotTable(SECRET, ticket_ttl_s=10, dead_after_s=2, clock=clock)
    tab.register("a", "ws://h:1/ws", 2, ["generate"], 1, "n")
    tab.register("b", "ws://h:2/ws", 2, ["generate", "understand"], 2, "n")
    grants = [tab.reserve("generate") for _ in range(4)]
    assert [g.replica for g in grants if g] == ["a", "b", "a", "b"]  # most free slots first, then spread
    assert tab.reserve("generate") is None and tab.refused == 1  # 4 slots held: full
    assert tab.reserve("understand") is None
    assert all(
        isinstance(verify(SECRET, g.url.split("ticket=")[1], g.replica, clock()), Ticket) for g in grants
    )
    # a's two clients connected (heartbeat lists them); b's tickets expire unused
    a_nonces = [
        verify(SECRET, g.url.split("ticket=")[1], "a", clock()).nonce for g in grants if g.replica == "a"
    ]
    clock.t += 1
    assert tab.heartbeat("a", a_nonces) and tab.heartbeat("b", [])
    assert tab.reserve("generate") is None
    clock.t += 1.5  # b's last heartbeat 1.5 s ago: alive; tickets (10 s) still held
    tab.heartbeat("a", a_nonces)
    tab.heartbeat("b", [])
    clock.t += 9
    tab.heartbeat("a", a_nonces)
    tab.heartbeat("b", [])
    g = tab.reserve("understand")  # b's unused tickets expired: its slots are free again
    assert g is not None and g.replica == "b"
    tab.heartbeat("a", a_nonces[:1])  # one of a's sessions closed
    tab.heartbeat("b", [])
    assert tab.reserve("generate").replica == "a"  # both have 1 free: the one granted least recently
    clock.t += 2.5  # b stops sending heartbeats (killed); a goes on
    tab.heartbeat("a", a_nonces[:1])
    snap = tab.snapshot()
    assert [r["replica"] for r in snap] == ["a"] and tab.dropped_replicas == 1
    assert tab.heartbeat("b", []) is False  # b must register again
    assert tab.reserve("generate", avoid=["a"]) is None and tab.snapshot() == []


@pytest.fixture(scope="module")
def builtin_gen():
    from streamrt.models.gen.model import load_builtin

    return load_builtin()


def _direct(model, prompt: str, seed: int, n: int) -> list[np.ndarray]:
    eng = GenEngine(model, GenEngineConfig.preset(DEFAULT_PRESET, seed=seed))
    eng.set_prompt(prompt)
    out: list[np.ndarray] = []
    while len(out) < n:
        out.extend(to_pixels(eng.next_block()[0].float()))
    return out[:n]


def test_replica_admits_only_granted_tickets_and_reports_open_slots(builtin_gen) -> None:
    table = SlotTable(SECRET, ticket_ttl_s=10, dead_after_s=5)
    host = ReplicaHost(
        ServerConfig(port=0, max_sessions=2),
        {"generate": generate_factory(builtin_gen)},
        replica="r1",
        secret=SECRET,
        register=lambda url: table.register("r1", url, 2, ["generate"], 0, "n"),
        report=lambda nonces: table.heartbeat("r1", nonces),
        heartbeat_s=0.05,
    )
    params = {"prompt": "a red circle", "seed": 3, "degrade": False, "out_codec": "raw", "budget_ms": 5000}

    async def refused(url: str) -> int:
        try:
            async with connect(url, subprotocols=[P.SUBPROTOCOL]):
                return 101
        except InvalidStatus as e:
            return e.response.status_code

    async def body():
        async with asyncio.timeout(60):
            while not table.replicas:
                await asyncio.sleep(0.05)
            plain = host.server.url
            assert await refused(plain) == 401  # no ticket
            assert await refused(plain + "?ticket=" + mint("y" * 32, "r1", 10)[0]) == 401  # not ours
            assert await refused(plain + "?ticket=" + mint(SECRET, "r2", 10)[0]) == 401  # another replica
            g = table.reserve("generate")
            c = AsyncClient(g.url, "generate", params, token=g.token, reconnect=False, retries=0)
            await c.connect()
            assert await refused(g.url) == 401  # a ticket admits one connection
            got = []
            while len(got) < 4:
                ev = await c.recv(20)
                if isinstance(ev, OutputFrameEvent):
                    got.append(ev.pixels())
            while table.snapshot()[0]["open"] != 1:  # the heartbeat reports the open connection
                await asyncio.sleep(0.05)
            assert table.snapshot()[0]["held"] == 0
            await c.close()
            while table.snapshot()[0]["open"] != 0:  # and its end
                await asyncio.sleep(0.05)
            return got

    try:
        got = asyncio.run(body())
    finally:
        host.stop()
    ref = _direct(builtin_gen, "a red circle", 3, 4)
    assert all(np.array_equal(a, b) for a, b in zip(got, ref, strict=True))
