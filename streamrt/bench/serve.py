"""`streamrt bench serve`: the websocket server under N loopback clients at F fps, both modes.

The server runs as its own process (`streamrt serve --threads 1`, so its CPU and RSS are its own);
the clients run here on one event loop. Generate mode: video to video, every client sends 64x64 JPEG
frames at 8 fps with a 250 ms budget. Understand mode: every client sends frames at the model's fps
(2), budget one chunk (1 s). First the capacity is searched (largest N whose outputs meet their
deadline >= 99% of the time with >= 98% of the inputs answered); then the cases run: 1 client, the
capacity, and 2x the capacity (overload: the server should drop instead of queueing, so p99 stays
within 2x the budget and memory stays flat).

Per case (client side, same clock for capture and receipt): deadline-hit rate (answered outputs within
budget), answered share (outputs / inputs), latency p50/p95/p99, jitter (|difference of consecutive
latencies| per client, p50/p99), the server's drops per reason (from its /metrics), server CPU (% of
one core) and RSS (end of run, and growth during the run). Models: the built-in ones when present,
else the same architectures with random weights (the compute is the same; reported in the config).
Environment: STREAMRT_BENCH_SERVE_MODES (comma-separated, default both; quick: generate) and
STREAMRT_BENCH_SERVE_MAX_BATCH (the server's --max-batch, default 8; 1 turns cross-session batching
off, to compare capacities with and without it).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from streamrt.bench.harness import Bench, register

MODES = {
    # mode: (hello params, send fps, budget ms)
    "generate": ({"input": "video", "out_codec": "jpeg", "prompt": "a red circle"}, 8.0, 250.0),
    "understand": ({}, 2.0, 1000.0),
}


def _models(tmp: Path) -> tuple[list[str], dict[str, str]]:
    """serve arguments for the models, and which ones were used."""
    from streamrt.models.gen.model import GenModel, GenSpec, builtin_path
    from streamrt.models.gen.text import shapes_world_vocab

    args, used = [], {}
    if (builtin_path() / "model.safetensors").is_file():
        used["generate"] = "built-in"
    else:
        from streamrt.models.gen.dit import GenModelConfig

        vocab = shapes_world_vocab()
        GenModel(GenSpec(GenModelConfig(vocab_size=len(vocab)), vocab)).save(tmp / "gen")
        args += ["--gen-model", str(tmp / "gen")]
        used["generate"] = "random weights, built-in architecture (64x64, dim 128, 4 layers)"
    from streamrt.models.vlm.loader import builtin_path as vlm_builtin

    if (vlm_builtin() / "config.json").is_file():
        used["understand"] = "built-in"
    else:
        from streamrt.models.vlm.train import init_run

        init_run(tmp / "vlm", seed=0)
        args += ["--vlm-model", str(tmp / "vlm")]
        used["understand"] = "random weights, built-in architecture"
    return args, used


class ServerProcess:
    """`streamrt serve` in a subprocess; CPU seconds and RSS read from /proc."""

    def __init__(self, extra: list[str]) -> None:
        cmd = [sys.executable, "-m", "streamrt", "-q", "serve", "--port", "0", "--threads", "1"]
        cmd += ["--modes", ",".join(MODES), "--max-sessions", "256", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        atexit.register(self.stop)
        m = re.search(r"ws://127\.0\.0\.1:(\d+)/ws", self.proc.stdout.readline() if self.proc.stdout else "")
        if not m:
            raise RuntimeError("the server did not start")
        self.port = int(m.group(1))
        self.url = f"ws://127.0.0.1:{self.port}/ws"

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def drops(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for mode, reason, v in re.findall(
            r'streamrt_drops_total\{mode="(\w+)",reason="(\w+)"\} ([0-9.e+]+)', text
        ):
            out[f"{mode}/{reason}"] = out.get(f"{mode}/{reason}", 0.0) + float(v)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _client(
    url: str, mode: str, fps: float, budget_s: float, seconds: float, seed: int
) -> tuple[int, list[float], dict]:
    """One client: send for `seconds`, collect latencies (first output per input) and the server's last
    stats for the session; returns (inputs sent, latencies, stats)."""
    from streamrt.client import AsyncClient, OutputFrameEvent, Stats, Text

    params, _, _ = MODES[mode]
    c = AsyncClient(url, mode, {**params, "budget_ms": budget_s * 1000}, reconnect=False, retries=10)
    await c.connect()
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    sent: dict[int, float] = {}
    lat: list[float] = []
    answered: set[int] = set()
    stats: dict = {}

    async def receive() -> None:
        while True:
            ev = await c.recv()
            now = time.time()
            if isinstance(ev, OutputFrameEvent) and ev.header.ref_seq >= 0:
                lat.append(now - ev.header.capture_us / 1e6)
            elif isinstance(ev, Text) and ev.ref_seq in sent and ev.ref_seq not in answered:
                answered.add(ev.ref_seq)
                lat.append(now - sent[ev.ref_seq])
            elif isinstance(ev, Stats):
                stats.update(ev.data)

    rx = asyncio.create_task(receive())
    t0 = time.monotonic()
    k = 0
    await asyncio.sleep(rng.random() / fps)  # clients do not send in lock-step
    while time.monotonic() - t0 < seconds:
        cap = time.time()
        seq = await c.send_frame(np.roll(base, 2 * k, axis=1), capture_time=cap)
        sent[seq] = cap
        k += 1
        await asyncio.sleep(max(0.0, t0 + k / fps - time.monotonic()))
    await asyncio.sleep(2 * budget_s + 1.2)  # outputs in flight, and one more stats message
    rx.cancel()
    await asyncio.gather(rx, return_exceptions=True)
    await c.close()
    return len(sent), lat, stats


def run_load(server: ServerProcess, mode: str, n: int, seconds: float) -> dict[str, float]:
    """N clients for `seconds`; the figures of one case."""
    _, fps, budget_ms = MODES[mode]
    budget = budget_ms / 1000
    drops0, cpu0, rss0, t0 = server.drops(), server.cpu_s(), server.rss_mb(), time.monotonic()

    async def main() -> list[tuple[int, list[float], dict]]:
        return await asyncio.gather(*(_client(server.url, mode, fps, budget, seconds, i) for i in range(n)))

    res = asyncio.run(main())
    wall = time.monotonic() - t0
    drops1 = server.drops()
    sent = sum(r[0] for r in res)
    lats = [x for r in res for x in r[1]]
    jit = [abs(d) for r in res for d in np.diff(r[1])] or [0.0]
    st = [r[2] for r in res if r[2]]
    arr = np.asarray(lats) if lats else np.asarray([float("inf")])
    out = {
        "clients": float(n),
        "deadline_hit_pct": 100.0 * float(np.mean(arr <= budget)),
        "answered_pct": 100.0 * len(lats) / max(sent, 1),
        "p50_ms": 1000 * float(np.percentile(arr, 50)),
        "p95_ms": 1000 * float(np.percentile(arr, 95)),
        "p99_ms": 1000 * float(np.percentile(arr, 99)),
        "jitter_p50_ms": 1000 * float(np.percentile(jit, 50)),
        "jitter_p99_ms": 1000 * float(np.percentile(jit, 99)),
        "server_cpu_pct": 100.0 * (server.cpu_s() - cpu0) / wall,
        "server_rss_mb": server.rss_mb(),
        "server_rss_growth_mb": server.rss_mb() - rss0,
        # server side, every unit of work (understand: every chunk, silent or not), worst session
        "srv_miss_pct": 100.0 * max((float(d["deadline_miss_rate"]) for d in st), default=1.0),
        "srv_p99_ms": max((float(d["latency_ms"]["p99"]) for d in st), default=float("inf")),
    }
    for key in sorted(set(drops1) | set(drops0)):
        m, reason = key.split("/")
        if m == mode and (d := drops1.get(key, 0.0) - drops0.get(key, 0.0)):
            out[f"drop_{reason}"] = d
    return out


def meets(mode: str, fig: dict[str, float]) -> bool:
    """Within capacity: >= 99% of outputs on time and (generate) >= 98% of inputs answered. Understand
    speaks only when it has something to say: judged on the server's per-chunk deadline record."""
    if mode == "understand":
        return (
            fig["srv_p99_ms"] > 0  # at least one chunk was processed (an empty record meets nothing)
            and fig["srv_miss_pct"] <= 1.0
            and fig.get("drop_expired", 0) + fig.get("drop_expired_in_buffer", 0) == 0
        )
    return fig["deadline_hit_pct"] >= 99.0 and fig["answered_pct"] >= 98.0


def find_capacity(
    server: ServerProcess, mode: str, seconds: float, limit: int = 64
) -> tuple[int, list[tuple[int, bool]]]:
    """Largest N that meets the targets: doubling, then bisection. A probe passes when two short runs
    in a row both meet them (one lucky run must not set the capacity); a warm-up run goes first."""
    run_load(server, mode, 1, min(seconds, 2.0))
    tried: list[tuple[int, bool]] = []

    def probe(n: int) -> bool:
        ok = all(meets(mode, run_load(server, mode, n, seconds)) for _ in range(2))
        tried.append((n, ok))
        return ok

    good, bad, n = 0, None, 1
    while n <= limit and bad is None:
        good, bad = (n, None) if probe(n) else (good, n)
        n *= 2
    hi = bad if bad is not None else limit + 1
    while hi - good > 1:
        mid = (good + hi) // 2
        good, hi = (mid, hi) if probe(mid) else (good, mid)
    return good, tried


@register("serve", "websocket server: N loopback clients at F fps, both modes; capacity and 2x overload")
def bench_serve(bench: Bench) -> None:
    seconds = 2.0 if bench.quick else 8.0
    tmp = Path(tempfile.mkdtemp(prefix="streamrt-bench-serve-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    extra, used = _models(tmp)
    max_batch = int(os.environ.get("STREAMRT_BENCH_SERVE_MAX_BATCH", "8"))
    server = ServerProcess([*extra, "--max-batch", str(max_batch)])
    default_modes = "generate" if bench.quick else ",".join(MODES)
    modes = tuple(os.environ.get("STREAMRT_BENCH_SERVE_MODES", default_modes).split(","))
    caps = {}
    for mode in modes:
        secs = max(seconds, 6.0) if mode == "understand" else seconds  # a few 1 s chunks per run
        cap, tried = find_capacity(server, mode, secs)
        caps[mode] = {"capacity": cap, "probes": tried}
        _, fps, budget = MODES[mode]
        runs = (
            [(1, "1 client")] + ([(cap, "capacity")] if cap > 1 else []) + [(2 * max(cap, 1), "2x overload")]
        )
        for n, label in runs:
            bench.case(
                f"{mode} N={n} ({label})",
                lambda mode=mode, n=n, secs=secs: run_load(server, mode, n, secs),
                work=n * fps * secs,
                unit="frames",
                note=f"{fps:g} fps/client, budget {budget:g} ms",
            )
    bench.config = {
        "seconds_per_run": seconds,
        "max_batch": max_batch,
        "models": used,
        "modes": {m: MODES[m] for m in modes},
        "capacity": caps,
    }
    print(json.dumps({"capacity": caps}), file=sys.stderr)
