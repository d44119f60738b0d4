"""`streamrt bench scale`: live sessions on Ray Serve against the plain server, on this machine.

Two engine deployments side by side: the plain server (`streamrt serve --threads 1` in a subprocess,
one engine process: what one replica is) and a local Ray cluster with the gateway and 2 engine
replicas (`streamrt.scale.live`, 1 torch thread each, built-in generator). The session workload is
`streamrt bench serve`'s generate workload (video to video, 64x64 JPEG frames at 8 fps, budget
250 ms), driven by its client.

Cases: one session on the plain server (baseline) and through the Ray path (POST /v1/sessions, then
the direct websocket): the Ray path's added latency; N sessions at once (N = 2 x slots) on the plain
server (1 engine process) and on the 2 replicas: deadline-hit rate and p99 with 1 vs 2 engines; and
admission: K sessions opened one after another through the gateway (POST + connect + ready + close),
reported as sessions/s. Extra figures per case: hit_rate, answered share, p50_ms, p99_ms.
Needs the `ray` extra (skips with a message otherwise). Media bytes never pass Serve's proxy: the
gateway only hands out the replica's address.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import socket
import statistics
import time

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
    from streamrt.scale import ScaleError
    from streamrt.scale.connect import open_session, request_session
    from streamrt.scale.live import LiveConfig, serve_live, stop_live

    slots = 2
    n = 2 * slots
    seconds = 3.0 if bench.quick else 10.0
    admissions = 4 if bench.quick else 12
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

    def sessions(urls: list[str]) -> dict[str, float]:
        async def run():
            return await asyncio.gather(
                *(_client(u, "generate", FPS, BUDGET_S, seconds, i) for i, u in enumerate(urls))
            )

        return _figures(asyncio.run(run()))

    def ray_urls(k: int) -> list[str]:
        urls = []
        while len(urls) < k:  # the previous case's slots free up at the replicas' next heartbeat
            try:
                urls.append(request_session(cluster.url, "generate").url)
            except ScaleError as e:
                if e.code != "E_SCALE_FULL":
                    raise
                time.sleep(0.1)
        return urls

    def admit() -> dict[str, float]:
        async def run():
            for _ in range(admissions):
                c, _ = await open_session(cluster.url, "generate", {"input": "video", "out_codec": "jpeg"})
                await c.close()

        asyncio.run(run())
        return {}

    bench.case(
        "plain server, 1 session", lambda: sessions([plain.url]), work=1, unit="sessions", baseline=True
    )
    bench.case("ray path, 1 session", lambda: sessions(ray_urls(1)), work=1, unit="sessions")
    bench.case(
        f"plain server (1 engine), {n} sessions", lambda: sessions([plain.url] * n), work=n, unit="sessions"
    )
    bench.case(f"ray 2 replicas, {n} sessions", lambda: sessions(ray_urls(n)), work=n, unit="sessions")
    bench.case(
        "ray admission (POST + connect + ready + close)",
        admit,
        work=admissions,
        unit="sessions",
        note="throughput = sessions admitted per second, one after another",
    )
