"""Live sessions on Ray Serve: a local Ray cluster (2 CPUs) with 2 engine replicas (built-in
generator, CPU) of 2 slots each, the slot registry and the gateway, started once for this module.

Oracles: the frames a session receives equal a direct GenEngine run with the same prompt and seed
(sessions are isolated and really served); the grant's websocket address is a replica's own server,
not Serve's proxy (media never passes through it); slot counts by hand (4 slots: the 5th session is
refused with HTTP 503 + Retry-After); a replica killed with SIGKILL: its session's socket closes with
an error, the other replica's session goes on, new sessions never go to the dead replica."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.error
import urllib.request
from collections import Counter

import numpy as np
import pytest
from streamrt.models.gen.data import to_pixels
from websockets.exceptions import ConnectionClosed

from streamrt.client import OutputFrameEvent
from streamrt.gen.config import GenEngineConfig
from streamrt.gen.engine import GenEngine
from streamrt.scale import ScaleError
from streamrt.server.generate import DEFAULT_PRESET

from .conftest import free_port  # noqa: TID252


@pytest.fixture(scope="module")
def cluster(local_ray):
    pytest.importorskip("ray.serve")
    from ray import serve

    from streamrt.scale.live import LiveConfig, serve_live, stop_live

    cfg = LiveConfig(
        replicas=2, slots=2, http_port=free_port(), cpus_per_replica=0.5, heartbeat_s=0.2, dead_after_s=1.5
    )
    try:
        yield serve_live(cfg, timeout_s=600)
    finally:
        stop_live()
        serve.shutdown()


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _post(url: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _direct(prompt: str, seed: int, n: int) -> list[np.ndarray]:
    from streamrt.models.gen.model import load_builtin

    eng = GenEngine(load_builtin(), GenEngineConfig.preset(DEFAULT_PRESET, seed=seed))
    eng.set_prompt(prompt)
    out: list[np.ndarray] = []
    while len(out) < n:
        out.extend(to_pixels(eng.next_block()[0].float()))
    return out[:n]


async def _frames(client, n: int, timeout: float = 60) -> list[np.ndarray]:
    got = []
    while len(got) < n:
        ev = await client.recv(timeout)
        if isinstance(ev, OutputFrameEvent):
            got.append(ev.pixels())
    return got


def _params(prompt: str, seed: int) -> dict:
    return {"prompt": prompt, "seed": seed, "degrade": False, "out_codec": "raw", "budget_ms": 5000}


def _replicas(cluster) -> list[dict]:
    return json.loads(_get(cluster.url + "/v1/replicas")[2])["replicas"]


def test_two_step_connect_spreads_sessions_and_a_full_cluster_refuses(cluster) -> None:
    from streamrt.scale.connect import open_session, request_session

    specs = [
        ("a red circle", 1),
        ("a blue square moving left", 2),
        ("a green triangle", 3),
        ("a red square", 4),
    ]
    replicas = {r["replica"]: r["url"] for r in _replicas(cluster)}
    assert len(replicas) == 2

    async def body():
        opened = [await open_session(cluster.url, "generate", _params(p, s)) for p, s in specs]
        with pytest.raises(ScaleError) as full:
            await open_session(cluster.url, "generate", _params("a red circle", 9))
        raw = await asyncio.to_thread(_post, cluster.url + "/v1/sessions", b'{"mode": "generate"}')
        got = [await _frames(c, 4) for c, _ in opened]
        for c, _ in opened:
            await c.close()
        return opened, full.value, raw, got

    opened, full, (status, headers, raw), got = asyncio.run(body())
    grants = [g for _, g in opened]
    assert Counter(g.replica for g in grants) == {rid: 2 for rid in replicas}  # spread over both replicas
    for g in grants:  # the websocket goes to the replica's own server, never to Serve's proxy port
        assert g.url.split("?")[0] == replicas[g.replica]
        assert f":{cluster.url.rsplit(':', 1)[1]}/" not in g.url
    assert full.code == "E_SCALE_FULL" and full.retry_after_s == 2
    assert status == 503 and headers.get("Retry-After", headers.get("retry-after")) == "2"
    assert json.loads(raw)["code"] == "E_FULL"
    for (prompt, seed), frames in zip(specs, got, strict=True):
        assert all(np.array_equal(a, b) for a, b in zip(frames, _direct(prompt, seed, 4), strict=True)), (
            prompt
        )

    # closed sessions free their slots (heartbeat): a new grant is possible again
    grant = None
    for _ in range(100):
        try:
            grant = request_session(cluster.url, "generate")
            break
        except ScaleError:
            asyncio.run(asyncio.sleep(0.1))
    assert grant is not None and grant.replica in replicas

    assert _post(cluster.url + "/v1/sessions", b'{"mode": "paint"}')[0] == 400
    assert _post(cluster.url + "/v1/sessions", b"{nope")[0] == 400
    health = json.loads(_get(cluster.url + "/healthz")[2])
    assert health["replicas"] == 2 and health["slots"] == 4
    metrics = _get(cluster.url + "/metrics")[2].decode()
    for rid in replicas:
        assert f'streamrt_cluster_slots{{replica="{rid}"}} 2' in metrics
        assert (
            f'replica="{rid}"' in metrics.split("streamrt_cluster_slots_open")[-1]
        )  # the replica's own metrics


@pytest.mark.slow
def test_killed_replica_ends_its_sessions_and_new_ones_go_to_the_survivor(cluster) -> None:
    from streamrt.scale.connect import open_session

    async def body():
        for _ in range(200):  # the previous test's sessions and grants are gone
            if all(r["open"] + r["held"] == 0 for r in _replicas(cluster)):
                break
            await asyncio.sleep(0.1)
        a, ga = await open_session(cluster.url, "generate", _params("a red circle", 1))
        b, gb = await open_session(cluster.url, "generate", _params("a green triangle", 2))
        assert ga.replica != gb.replica
        await _frames(a, 2)
        await _frames(b, 2)
        victim = next(r for r in _replicas(cluster) if r["replica"] == ga.replica)
        os.kill(victim["pid"], signal.SIGKILL)
        with pytest.raises(ConnectionClosed) as err:
            await _frames(a, 1000, timeout=30)
        assert err.value.rcvd is None  # no close frame: the session ended with an error, not an `end`
        survivor_frames = await _frames(b, 6)  # untouched
        for _ in range(100):  # the registry drops the dead replica within dead_after_s
            if ga.replica not in {r["replica"] for r in _replicas(cluster)}:
                break
            await asyncio.sleep(0.1)
        new = [await open_session(cluster.url, "generate", _params("a blue square", 5)) for _ in range(1)]
        new_frames = await _frames(new[0][0], 3)
        for c, _ in new:
            await c.close()
        await b.close()
        return ga, gb, survivor_frames, new, new_frames

    ga, gb, survivor_frames, new, new_frames = asyncio.run(body())
    assert len(survivor_frames) == 6
    assert all(g.replica != ga.replica for _, g in new)
    assert all(np.array_equal(x, y) for x, y in zip(new_frames, _direct("a blue square", 5, 3), strict=True))


def test_client_library_and_cli_connect_through_the_cluster_address(cluster, tmp_path) -> None:
    """`AsyncClient` / `Client` / `streamrt client --server` given the gateway's http:// address: each
    connect asks POST /v1/sessions and opens the granted replica's websocket (oracle: a direct
    GenEngine run with the same prompt and seed; the session runs on a registered replica; a full
    cluster's refusal surfaces as E_SCALE_FULL after the client's retries)."""
    import subprocess
    import sys

    from streamrt.client import AsyncClient, Client, ClientError

    replicas = {r["replica"] for r in _replicas(cluster)}

    async def body():
        for _ in range(200):  # earlier tests' sessions and grants are gone
            if all(r["open"] + r["held"] == 0 for r in _replicas(cluster)):
                break
            await asyncio.sleep(0.1)
        c = AsyncClient(cluster.url, "generate", _params("a red circle", 1))
        await c.connect()
        got = await _frames(c, 3)
        held = [AsyncClient(cluster.url, "generate", _params("a red square", 2)) for _ in range(3)]
        for h in held:
            await h.connect()
        full = AsyncClient(
            cluster.url, "generate", _params("a red square", 2), retries=1, backoff_s=(0.1, 0.1)
        )
        with pytest.raises(ClientError) as refused:
            await full.connect()
        for h in [c, *held]:
            await h.close()
        return c.replica, got, refused.value

    replica, got, refused = asyncio.run(body())
    assert replica in replicas
    assert all(np.array_equal(a, b) for a, b in zip(got, _direct("a red circle", 1, 3), strict=True))
    assert refused.code == "E_SCALE_FULL"

    for _ in range(200):
        if all(r["open"] + r["held"] == 0 for r in _replicas(cluster)):
            break
        asyncio.run(asyncio.sleep(0.1))
    with Client(cluster.url, "generate", _params("a green triangle", 3)) as c:
        frames = []
        for ev in c.events(60):
            if isinstance(ev, OutputFrameEvent):
                frames.append(ev.pixels())
            if len(frames) == 2:
                break
    assert all(np.array_equal(a, b) for a, b in zip(frames, _direct("a green triangle", 3, 2), strict=True))

    cli = [sys.executable, "-m", "streamrt", "client", "none", "--server", cluster.url, "--frames", "2"]
    cli += [
        "--prompt",
        "a blue square",
        "--param",
        "seed=4",
        "--param",
        "out_codec=raw",
        "--save",
        str(tmp_path),
    ]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list(tmp_path.iterdir())) == 2
