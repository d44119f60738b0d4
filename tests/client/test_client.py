"""The client library against the real server: reconnect with backoff, parameters carried over, the
blocking client, and the end of a session (no reconnect after `end`)."""

from __future__ import annotations

import asyncio
import socket
import time

import numpy as np
import pytest

from streamrt.client import AsyncClient, Client, ClientError, End, OutputFrameEvent, Ready


def test_reconnects_after_a_dropped_connection_with_its_parameters(serve, arun) -> None:
    async def body():
        async with serve() as srv:
            c = AsyncClient(srv.url, "generate", {"prompt": "a red circle"}, backoff_s=(0.05, 0.5))
            first = await c.connect()
            await c.set_params(prompt="a blue square")
            while not isinstance(await c.recv(5), OutputFrameEvent):
                pass
            for conn in list(srv._ws.connections):  # the network drops the connection (server side)
                conn.transport.abort()
            ev = await c.recv(5)
            while not isinstance(ev, Ready):
                ev = await c.recv(5)
            prompt = srv.sessions[ev.session_id].engine.engine.prompt
            while not isinstance(await c.recv(5), OutputFrameEvent):
                pass
            await c.close()
            return first, ev, prompt, c.reconnects

    first, second, prompt, n = arun(body())
    assert first.session_id != second.session_id and n == 1
    assert prompt == "a blue square"


def test_gives_up_after_retries_with_growing_backoff(arun) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there

    async def body():
        c = AsyncClient(f"ws://127.0.0.1:{port}/ws", "generate", retries=3, backoff_s=(0.05, 1.0))
        t0 = time.monotonic()
        with pytest.raises(ClientError) as e:
            await c.connect()
        return e.value.code, time.monotonic() - t0

    code, elapsed = arun(body())
    # waits 0.05, 0.1, 0.2 times a jitter in [0.5, 1.5): between 0.175 and 0.525 s in all
    assert code == "E_CONNECT" and 0.17 <= elapsed < 2.0


def test_no_reconnect_after_the_server_ends_the_session(serve, arun) -> None:
    async def body():
        async with serve() as srv:
            async with AsyncClient(srv.url, "generate", {"input": "video", "budget_ms": 5000}) as c:
                await c.send_frame(np.zeros((16, 16, 3), np.uint8))
                await c.end_input()
                events = [ev async for ev in c]
                return events, c.reconnects

    events, n = arun(body())
    assert isinstance(events[-1], End) and events[-1].reason == "input_ended" and n == 0
    assert sum(isinstance(e, OutputFrameEvent) for e in events) == 1


def test_blocking_client(server_thread) -> None:
    srv = server_thread()
    with Client(srv.url, "generate", {"prompt": "a red circle", "input": "video", "budget_ms": 5000}) as c:
        seqs = [c.send_frame(np.full((16, 16, 3), i * 40, np.uint8), codec="png") for i in range(3)]
        frames = []
        for ev in c.events(timeout=10):
            if isinstance(ev, OutputFrameEvent):
                frames.append(ev)
                if len(frames) == 3:
                    c.control("end_input")
        assert isinstance(ev, End)
    assert seqs == [0, 1, 2] and [f.header.ref_seq for f in frames] == [0, 1, 2]
    assert frames[0].pixels().shape == (16, 16, 3)


def test_refused_hello_raises_with_the_servers_code(serve, arun) -> None:
    async def body():
        async with serve() as srv:
            with pytest.raises(ClientError) as e:
                await AsyncClient(srv.url, "generate", {"steps": 99}).connect()
            return e.value.code

    assert arun(body()) == "E_PARAM"


def test_keep_alive_pings_hold_an_idle_session_open(serve, arun) -> None:
    async def body():
        async with serve(idle_timeout_s=0.4) as srv:
            async with AsyncClient(srv.url, "generate", {"input": "video"}) as c:
                await asyncio.sleep(1.2)  # three idle timeouts without sending anything ourselves
                alive = len(srv.sessions)
                pongs = 0
                while True:
                    try:
                        pongs += (await c.recv(0.05)).kind == "pong"
                    except TimeoutError:
                        break
            async with AsyncClient(srv.url, "generate", {"input": "video"}) as c:
                c._keepalive.cancel()  # without the keep-alive the server ends the session
                events = [ev async for ev in c]
            return alive, pongs, events[-1]

    alive, pongs, last = arun(body())
    assert alive == 1 and pongs >= 3
    assert isinstance(last, End) and last.reason == "idle"


def test_blocking_client_refused_cleans_up_its_thread(server_thread) -> None:
    import threading

    srv = server_thread()
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(ClientError):
        with Client(srv.url, "generate", {"steps": 0}):
            pass
    assert "streamrt-client" not in {t.name for t in threading.enumerate()} - before
