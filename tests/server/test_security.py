"""Security and HTTP: bind policy, tokens, Origin, admission control, timeouts, static files, metrics."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streamrt.client import AsyncClient, ClientError
from streamrt.server import ServerConfig, ServerConfigError
from streamrt.server import protocol as P


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.2", "::", "example.org"])
def test_non_loopback_bind_needs_a_token(host: str) -> None:
    with pytest.raises(ServerConfigError) as e:
        ServerConfig(host=host)
    assert e.value.code == "E_SERVER_CONFIG"
    assert ServerConfig(host=host, token="s3cret-token").token == "s3cret-token"
    for ok in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert ServerConfig(host=ok).token is None
    with pytest.raises(ServerConfigError):
        ServerConfig(token="short")


async def _hello(ws, **fields) -> dict:
    await ws.send(json.dumps({"type": "hello", "mode": "generate", "params": {}, **fields}))
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


def test_token_is_checked(serve, arun) -> None:
    async def body():
        async with serve(token="right-token") as srv:
            async with connect(srv.url, subprotocols=[P.SUBPROTOCOL]) as ws:
                bad = await _hello(ws, token="wrong-token")
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                code = ws.close_code
            async with connect(srv.url, subprotocols=[P.SUBPROTOCOL]) as ws:
                missing = await _hello(ws)
            async with connect(srv.url, subprotocols=[P.SUBPROTOCOL]) as ws:
                good = await _hello(ws, token="right-token")
            return bad, code, missing, good

    bad, code, missing, good = arun(body())
    assert bad["code"] == "E_AUTH" and code == 1008 and missing["code"] == "E_AUTH"
    assert good["type"] == "ready"


def test_origin_check(serve, arun) -> None:
    async def body():
        async with serve(origins=("https://demo.example",)) as srv:
            with pytest.raises(InvalidStatus) as e:
                await connect(srv.url, origin="http://evil.example")
            host = f"127.0.0.1:{srv.port}"
            for origin in (f"http://{host}", "https://demo.example"):
                async with connect(srv.url, origin=origin, subprotocols=[P.SUBPROTOCOL]) as ws:
                    assert (await _hello(ws))["type"] == "ready"
            return e.value.response.status_code

    assert arun(body()) == 403


def test_full_server_refuses_with_retry_hint_and_client_gets_in_later(serve, arun) -> None:
    async def body():
        async with serve(max_sessions=1, retry_after_s=1) as srv:
            first = AsyncClient(srv.url, "generate", {})
            await first.connect()
            with pytest.raises(InvalidStatus) as e:
                await connect(srv.url, subprotocols=[P.SUBPROTOCOL])
            with pytest.raises(ClientError):
                await AsyncClient(srv.url, "generate", retries=0).connect()
            second = AsyncClient(srv.url, "generate", {}, retries=4)
            t0 = asyncio.get_running_loop().time()
            waiter = asyncio.create_task(second.connect())
            await asyncio.sleep(0.3)
            await first.close()
            ready = await waiter
            waited = asyncio.get_running_loop().time() - t0
            await second.close()
            return e.value.response, ready, waited

    resp, ready, waited = arun(body())
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "1"
    assert ready.kind == "ready" and 0.3 <= waited < 5


def test_hello_timeout_and_idle_timeout(serve, arun) -> None:
    async def body():
        async with serve(hello_timeout_s=0.3, idle_timeout_s=0.5) as srv:
            async with connect(srv.url, subprotocols=[P.SUBPROTOCOL]) as ws:
                await ws.send('{"type":"ping"}')  # not a hello
                early = json.loads(await asyncio.wait_for(ws.recv(), 5))
                late = json.loads(await asyncio.wait_for(ws.recv(), 5))
                await asyncio.wait_for(ws.wait_closed(), 5)
                hello_code = ws.close_code
            async with connect(srv.url, subprotocols=[P.SUBPROTOCOL]) as ws:
                await _hello(ws, params={"input": "video"})
                msgs = []
                async for m in ws:
                    msgs.append(json.loads(m))
                idle = [m for m in msgs if m["type"] == "end"]
            return early, late, hello_code, idle

    early, late, hello_code, idle = arun(body())
    assert early["code"] == "E_STATE" and late["code"] == "E_STATE" and hello_code == 1008
    assert idle == [{"type": "end", "reason": "idle"}]


def test_bad_hello_can_be_corrected(serve, arun) -> None:
    async def body():
        async with serve() as srv:
            async with connect(srv.url, subprotocols=[P.SUBPROTOCOL]) as ws:
                replies = [
                    await _hello(ws, mode="understand-nothing"),
                    await _hello(ws, params={"steps": 0}),
                    await _hello(ws, params={"budget_ms": -5}),
                    await _hello(ws, params={"preset": "rolling", "input": "video"}),
                    await _hello(ws, params={"steps": 2}),
                ]
            return replies

    r = arun(body())
    assert [m.get("code", m["type"]) for m in r] == ["E_MODE", "E_PARAM", "E_PARAM", "E_PARAM", "ready"]


def test_http_endpoints(serve, arun, tmp_path) -> None:
    (tmp_path / "index.html").write_text("<h1>demo</h1>")
    (tmp_path / "app.js").write_text("console.log(1)")

    def get(url: str) -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.headers["Content-Type"], r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers["Content-Type"], e.read().decode()

    async def body():
        async with serve(static_dir=tmp_path) as srv:
            base = f"http://127.0.0.1:{srv.port}"
            async with AsyncClient(srv.url, "generate", {}) as c:
                await c.recv(5)
                loop = asyncio.get_running_loop()
                paths = [
                    "/",
                    "/app.js",
                    "/healthz",
                    "/metrics",
                    "/../../etc/passwd",
                    "/%2e%2e/%2e%2e/etc/passwd",
                    "/nope",
                ]
                return [await loop.run_in_executor(None, get, base + p) for p in paths]

    index, js, health, metrics, trav1, trav2, nope = arun(body())
    assert index == (200, "text/html", "<h1>demo</h1>")
    assert js[0] == 200 and "javascript" in js[1]
    h = json.loads(health[2])
    assert health[0] == 200 and h["status"] == "ok" and h["sessions"] == 1 and h["modes"] == ["generate"]
    fams = {f.name: f for f in text_string_to_metric_families(metrics[2])}
    assert fams["streamrt_sessions"].samples[0].value == 1 and "streamrt_latency_seconds" in fams
    assert trav1[0] == trav2[0] == nope[0] == 404


def test_upgrade_on_unknown_path_is_404(serve, arun) -> None:
    async def body():
        async with serve() as srv:
            with pytest.raises(InvalidStatus) as e:
                await connect(f"ws://127.0.0.1:{srv.port}/other")
            return e.value.response.status_code

    assert arun(body()) == 404


def test_handshake_timeout_closes_silent_connections(serve, arun) -> None:
    import socket
    import time

    async def body():
        async with serve(handshake_timeout_s=0.3) as srv:
            loop = asyncio.get_running_loop()

            def silent() -> tuple[bytes, float]:
                with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                    t0 = time.monotonic()
                    s.sendall(b"GET /ws HTTP/1.1\r\n")  # an upgrade request that never finishes
                    data = s.recv(4096)  # b"" once the server gives up
                    return data, time.monotonic() - t0

            return await loop.run_in_executor(None, silent)

    data, waited = arun(body())
    assert waited < 4.0 and b"101" not in data
