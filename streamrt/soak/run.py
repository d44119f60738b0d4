"""A soak run: start a real `streamrt serve` process on a free loopback port, drive it with
`sessions` concurrent simulated users for `minutes`, sample the server while they run, and judge.

Timeline: start the server (both modes), take a baseline sample, start the actors, sample every
`sample_s` (RSS, open fds, /healthz sessions), stop the actors at the end, wait for the server to
close every session, take a final sample and scrape /metrics, stop the server with SIGTERM.

Verdict (`Report.ok`), each check named in the report:
- `server_alive`: the server process never exited, and answered /healthz at the end;
- `no_internal_errors`: no E_INTERNAL error (an engine failure) reached a client;
- `sessions_closed`: /healthz reports 0 sessions once every client is gone (nothing leaked);
- `fds_returned`: open descriptors after the soak at most `fd_slack` above the baseline;
- `rss_trend`, `fds_trend`: Theil-Sen fit over the samples after the warm-up (the first window or
  the first fifth of the run, whichever is longer); fails when the fitted line rises over that
  span by more than max(`rss_tol_mib`, `rss_tol_frac` x median RSS), resp. `fd_slack`;
- `latency_trend`: the same fit over the per-window median latencies after the warm-up (whole
  windows inside the load with at least 5 outputs); fails when it rises by more than
  max(`latency_tol_ms`, `latency_tol_frac` x their median). Each sample also records the machine's
  load average: on a shared machine latency follows it, and the report shows both.
Owns the server process; the client behaviour is `actors`, the measurements `monitor`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from streamrt.soak.actors import LoadConfig, Tally, actor
from streamrt.soak.monitor import Sample, by_label, http_get, sample, scrape, trend

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SoakConfig:
    """A soak's length, load, sampling and tolerances (see module docstring)."""

    minutes: float = 3.0
    sessions: int = 4
    seed: int = 0
    load: LoadConfig = field(default_factory=LoadConfig)
    window_s: float = 60.0
    """Latency percentiles per window of this many seconds (a minute by default)."""
    sample_s: float = 2.0
    rss_tol_mib: float = 32.0
    rss_tol_frac: float = 0.05
    latency_tol_ms: float = 100.0
    latency_tol_frac: float = 0.5
    fd_slack: int = 8
    server_args: tuple[str, ...] = ()
    """Extra `streamrt serve` arguments."""


def start_server(cfg: SoakConfig) -> tuple[subprocess.Popen[str], str]:
    """`streamrt serve` on 127.0.0.1, a free port, the load's modes; returns (process, ws url)."""
    cmd = [sys.executable, "-m", "streamrt", "serve", "--port", "0", "--modes", ",".join(cfg.load.modes)]
    cmd += ["--max-sessions", str(cfg.sessions + 2), "--threads", "1", *cfg.server_args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        m = re.search(r" on (ws://\S+)", line)
        if m:
            return proc, m.group(1)
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise RuntimeError(f"streamrt serve did not start (exit code {proc.wait()})")


def windows(latencies: list[tuple[float, float]], window_s: float) -> list[dict[str, float]]:
    """Latency percentiles (ms) per window of `window_s` seconds."""
    out = []
    if not latencies:
        return out
    t = np.asarray([x[0] for x in latencies])
    v = np.asarray([x[1] for x in latencies]) * 1000
    for k in range(int(t.max() // window_s) + 1):
        sel = v[(t >= k * window_s) & (t < (k + 1) * window_s)]
        if len(sel):
            p50, p95, p99 = np.percentile(sel, [50, 95, 99])
            out.append(
                {"window": k, "t_mid_s": (k + 0.5) * window_s, "outputs": int(len(sel)),
                 "p50_ms": round(float(p50), 1), "p95_ms": round(float(p95), 1), "p99_ms": round(float(p99), 1)}
            )  # fmt: skip
    return out


async def _drive(cfg: SoakConfig, url: str, proc: subprocess.Popen[str], samples: list[Sample]) -> Tally:
    base = url.replace("ws://", "http://").rsplit("/", 1)[0]
    tally = Tally()
    stop_at = time.monotonic() + cfg.minutes * 60
    tasks = [
        asyncio.create_task(actor(url, cfg.load, tally, cfg.seed * 1000 + i, stop_at))
        for i in range(cfg.sessions)
    ]
    loop = asyncio.get_running_loop()
    while time.monotonic() < stop_at and proc.poll() is None:
        samples.append(await loop.run_in_executor(None, _sample, proc.pid, base, tally.started))
        print(_progress(samples[-1], tally), file=sys.stderr, flush=True)
        await asyncio.sleep(cfg.sample_s)
    await asyncio.wait(tasks, timeout=90)
    for t in tasks:
        t.cancel()
    return tally


def _sample(pid: int, base: str, started: float) -> Sample:
    rss, fds = sample(pid)
    try:
        sessions = int(json.loads(http_get(base + "/healthz"))["sessions"])
    except (OSError, ValueError, KeyError):
        sessions = -1
    return Sample(round(time.monotonic() - started, 2), round(rss, 1), fds, sessions, os.getloadavg()[0])


def _progress(s: Sample, t: Tally) -> str:
    return (
        f"soak {s.t:7.1f}s  rss {s.rss_mib:7.1f} MiB  fds {s.fds:4d}  sessions {s.sessions:3d}  "
        f"opened {sum(t.sessions.values()):4d}  outputs {sum(t.outputs.values()):6d}  errors {sum(t.errors.values()):5d}"
    )


def soak(cfg: SoakConfig) -> dict[str, object]:
    """Run one soak; returns the report (JSON-ready dict with "ok" and "checks")."""
    proc, url = start_server(cfg)
    base = url.replace("ws://", "http://").rsplit("/", 1)[0]
    samples: list[Sample] = []
    try:
        time.sleep(1.0)
        baseline = _sample(proc.pid, base, time.monotonic())
        tally = asyncio.run(_drive(cfg, url, proc, samples))
        alive = proc.poll() is None
        end_sample = None
        for _ in range(60):  # the server notices dropped connections and idle sessions
            if not alive or proc.poll() is not None:
                break
            end_sample = _sample(proc.pid, base, tally.started)
            if end_sample.sessions == 0:
                break
            time.sleep(1.0)
        metrics = scrape(base + "/metrics") if proc.poll() is None else {}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    return _report(cfg, tally, samples, baseline, end_sample, metrics, alive)


def _report(cfg, tally, samples, baseline, end, metrics, alive) -> dict[str, object]:  # noqa: ANN001
    warm = max(cfg.window_s, cfg.minutes * 60 / 5)
    steady = [s for s in samples if s.t >= warm]
    wins = windows(tally.latencies, cfg.window_s)
    end_s = cfg.minutes * 60
    steady_w = [  # whole windows inside the load, with enough outputs to have a median
        w
        for w in wins
        if w["t_mid_s"] >= warm and (w["window"] + 1) * cfg.window_s <= end_s + 1 and w["outputs"] >= 5
    ]
    rss_med = float(np.median([s.rss_mib for s in steady])) if steady else 0.0
    lat_med = float(np.median([w["p50_ms"] for w in steady_w])) if steady_w else 0.0
    trends = [
        trend("rss_mib", [s.t for s in steady], [s.rss_mib for s in steady], max(cfg.rss_tol_mib, cfg.rss_tol_frac * rss_med)),
        trend("fds", [s.t for s in steady], [float(s.fds) for s in steady], float(cfg.fd_slack)),
        trend("latency_p50_ms", [w["t_mid_s"] for w in steady_w], [w["p50_ms"] for w in steady_w],
              max(cfg.latency_tol_ms, cfg.latency_tol_frac * lat_med)),
    ]  # fmt: skip
    lat = np.asarray([x[1] for x in tally.latencies]) * 1000
    checks = {
        "server_alive": bool(alive and end is not None and end.sessions >= 0),
        "no_internal_errors": tally.errors.get("E_INTERNAL", 0) == 0,
        "sessions_closed": end is not None and end.sessions == 0,
        "fds_returned": end is not None and end.fds <= baseline.fds + cfg.fd_slack,
        "rss_trend": trends[0].ok,
        "fds_trend": trends[1].ok,
        "latency_trend": trends[2].ok,
    }
    return {
        "ok": all(checks.values()),
        "checks": checks,
        "config": {k: v for k, v in asdict(cfg).items() if k != "load"} | {"load": asdict(cfg.load)},
        "minutes_soaked": round((samples[-1].t if samples else 0) / 60, 2),
        "baseline": asdict(baseline),
        "end": asdict(end) if end else None,
        "samples": [asdict(s) for s in samples],
        "latency_windows": wins,
        "latency_ms": {
            "outputs": int(len(lat)),
            **({f"p{q}": round(float(np.percentile(lat, q)), 1) for q in (50, 95, 99)} if len(lat) else {}),
        },
        "deadline_miss_rate": _miss_rate(metrics, tally),
        "drops_by_reason": by_label(metrics, "streamrt_drops_total", "reason"),
        "errors_by_code": {"server_sent": by_label(metrics, "streamrt_errors_total", "code"), "clients_received": dict(sorted(tally.errors.items()))},
        "load": {
            "sessions_opened": dict(tally.sessions),
            "refused": tally.refused,
            "frames_sent": tally.frames_sent,
            "outputs_received": dict(tally.outputs),
            "asks": tally.asks,
            "prompt_switches": tally.prompt_switches,
            "pings": tally.pings,
            "malformed_sent_by_expected_code": dict(sorted(tally.malformed_sent.items())),
            "abrupt_disconnects": tally.aborted,
            "graceful_ends": dict(tally.ends),
            "slow_reader_sessions": tally.slow_readers,
            "client_problems": dict(tally.problems),
        },
        "trends": [t.to_json() for t in trends],
    }  # fmt: skip


def _miss_rate(metrics: dict[str, dict[str, float]], tally: Tally) -> dict[str, object]:
    """Server-wide deadline hits/misses from /metrics, and the mean of sessions' last stats."""
    hits = by_label(metrics, "streamrt_deadline_total", "outcome")
    total = sum(hits.values())
    return {
        "by_outcome": hits,
        "server_rate": round(hits.get("miss", 0) / total, 4) if total else None,
        "mean_of_sessions": round(float(np.mean(tally.miss_rates)), 4) if tally.miss_rates else None,
    }


def write_report(report: dict[str, object], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
