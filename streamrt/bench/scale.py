"""`streamrt bench scale`: live sessions on Ray Serve against the plain server, on this machine.

Two engine deployments side by side: the plain server (`streamrt serve --threads 1` in a subprocess,
one engine process: what one replica is) and a local Ray cluster with the gateway and 2 engine
replicas (`streamrt.scale.live`, 1 torch thread each, built-in generator). The session workload is
`streamrt bench serve`'s generate workload (video to video, 64x64 JPEG frames at 8 fps, budget
250 ms), driven by its client.

Cases: one session on the plain server (baseline) and through the Ray path (the client given the
gateway's http:// address: POST /v1/sessions, then the replica's websocket): the Ray path's added
latency; N sessions at once (N = 2 x slots) on the plain server (1 engine process) and on the 2
replicas: deadline-hit rate and p99 with 1 vs 2 engines; and admission: rounds of sessions opened
one after another through the gateway (POST + connect + ready) until every slot is in use, then
closed, reported as sessions admitted per second of opening. Extra figures per case: hit_rate,
answered share, p50_ms, p99_ms.
Needs the `ray` extra (skips with a message otherwise). Media bytes never pass Serve's proxy: the Ray
cases report the request bodies the gateway received during the case (`gateway_body_bytes`, from its
/healthz counters) next to the media the clients sent (`media_bytes_est`: inputs x the JPEG size of
one 64x64 frame).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import socket
import statistics
import time
import urllib.request

import numpy as np

from streamrt.bench.harness import Bench, register

BUDGET_S = 0.25
FPS = 8.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _figures(results: list[tuple[int, list[float], dict]]) -> dict[str, float]:
    sent = sum(r[0] for r in results)
    lat = sorted(x for r in results for x in r[1])
    if not lat:
        return {"hit_rate": 0.0, "answered": 0.0}
    p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))]
    return {
        "hit_rate": sum(x <= BUDGET_S for x in lat) / max(1, sent),
        "answered": len(lat) / max(1, sent),
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * p99,
    }


@register("scale", "live sessions on Ray Serve (1 vs 2 engine processes, Ray path overhead, admissions/s)")
def bench_scale(bench: Bench) -> None:
    try:
        import ray
    except ImportError:
        raise SystemExit("bench scale needs Ray: pip install 'streamrt[ray]'") from None
    from streamrt.bench.serve import ServerProcess, _client
    from streamrt.scale.connect import open_session
    from streamrt.scale.live import LiveConfig, serve_live, stop_live
    from streamrt.server.media import encode_image

    slots = 2
    n = 2 * slots
    seconds = 3.0 if bench.quick else 10.0
    admissions = n if bench.quick else 3 * n  # in rounds of n (every slot)
    plain = ServerProcess([])
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "120")  # a loaded machine starts slowly
    if not ray.is_initialized():
        ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False)
    cluster = serve_live(
        LiveConfig(replicas=2, slots=slots, http_port=_free_port(), cpus_per_replica=0.5), timeout_s=900
    )
    atexit.register(ray.shutdown)
    atexit.register(stop_live)  # runs first
    bench.config = {
        "workload": f"generate video-to-video, 64x64 JPEG at {FPS:g} fps, budget {BUDGET_S * 1000:.0f} ms",
        "seconds_per_session": seconds,
        "replicas": 2,
        "slots_per_replica": slots,
        "concurrent_sessions": n,
        "torch_threads_per_engine": 1,
        "cpus": os.cpu_count(),
    }

    frame_bytes = len(encode_image(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8), "jpeg"))

    def gateway() -> tuple[int, int]:
        with urllib.request.urlopen(cluster.url + "/healthz", timeout=30) as r:
            g = json.loads(r.read())["gateway"]
        return int(g["requests"]), int(g["body_bytes"])

    def replicas() -> list[dict]:
        with urllib.request.urlopen(cluster.url + "/v1/replicas", timeout=30) as r:
            return json.loads(r.read())["replicas"]

    def sessions(urls: list[str]) -> dict[str, float]:
        async def run():
            return await asyncio.gather(
                *(_client(u, "generate", FPS, BUDGET_S, seconds, i) for i, u in enumerate(urls))
            )

        before = gateway()
        results = asyncio.run(run())
        after = gateway()
        while any(r["open"] + r["held"] for r in replicas()):  # the next case starts with free slots
            time.sleep(0.05)
        figures = _figures(results)
        if urls[0] == cluster.url:  # media bytes the clients sent vs what reached the gateway
            figures["media_bytes_est"] = float(sum(r[0] for r in results) * frame_bytes)
            figures["gateway_requests"] = float(after[0] - before[0] - 1)  # minus our own /healthz
            figures["gateway_body_bytes"] = float(after[1] - before[1])
        return figures

    def admit() -> dict[str, float]:
        """Rounds of `n` sessions (every slot of the cluster) opened one after another and kept open,
        then closed; a round starts once the replicas have released the previous round's slots."""

        async def run() -> float:
            opening = 0.0
            for _ in range(admissions // n):
                t0 = time.perf_counter()
                clients = [
                    (await open_session(cluster.url, "generate", {"input": "video", "out_codec": "jpeg"}))[0]
                    for _ in range(n)
                ]
                opening += time.perf_counter() - t0
                await asyncio.gather(*(c.close() for c in clients))
                while any(r["open"] + r["held"] for r in await asyncio.to_thread(replicas)):
                    await asyncio.sleep(0.05)
            return opening

        return {"admitted_per_s": admissions // n * n / asyncio.run(run())}

    bench.case(
        "plain server, 1 session", lambda: sessions([plain.url]), work=1, unit="sessions", baseline=True
    )
    bench.case("ray path, 1 session", lambda: sessions([cluster.url]), work=1, unit="sessions")
    bench.case(
        f"plain server (1 engine), {n} sessions", lambda: sessions([plain.url] * n), work=n, unit="sessions"
    )
    bench.case(f"ray 2 replicas, {n} sessions", lambda: sessions([cluster.url] * n), work=n, unit="sessions")
    bench.case(
        "ray admission (POST + connect + ready)",
        admit,
        work=admissions // n * n,
        unit="sessions",
        note=f"admitted_per_s: sessions opened one after another until all {n} slots are in use "
        "(opening time only); throughput also counts closing and the slots' release",
    )
