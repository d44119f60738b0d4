"""The server side of a soak: resource samples of the server process, its Prometheus counters, and
the trend test that fails a soak whose memory, open files or latency creep upward.

`sample(pid)` reads RSS and the number of open file descriptors from /proc (Linux). `scrape(url)`
parses the Prometheus text of /metrics into {metric: {labels: value}}. `trend(ts, ys, tolerance)`
fits a Theil-Sen slope (the median of all pairwise slopes: robust to the spikes of a shared, noisy
machine, unlike least squares) and says the series grows when slope x span exceeds the tolerance,
i.e. when the fitted line rises by more than the tolerance over the measured span. Knows nothing
about clients or sessions.
"""

from __future__ import annotations

import os
import re
import urllib.request
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Sample:
    t: float
    """Seconds since the soak started."""
    rss_mib: float
    fds: int
    sessions: int
    """Sessions the server reports in /healthz (-1 when it did not answer)."""
    load1: float
    """The machine's 1-minute load average (a shared machine: latency follows it)."""


def sample(pid: int) -> tuple[float, int]:
    """(RSS in MiB, open file descriptors) of process `pid` (Linux /proc)."""
    rss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
                break
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def http_get(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - our own loopback server
        return r.read().decode()


_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(url: str) -> dict[str, dict[str, float]]:
    """Prometheus text format -> {metric name: {"label=value,...": value}} (comments skipped)."""
    out: dict[str, dict[str, float]] = {}
    for line in http_get(url).splitlines():
        m = _LINE.match(line)
        if not m or line.startswith("#"):
            continue
        labels = ",".join(f"{k}={v}" for k, v in _LABEL.findall(m.group(3) or ""))
        out.setdefault(m.group(1), {})[labels] = float(m.group(4))
    return out


def by_label(metrics: dict[str, dict[str, float]], name: str, label: str) -> dict[str, int]:
    """Sum a counter over every label but `label`: e.g. drops by reason."""
    out: dict[str, int] = {}
    for labels, v in metrics.get(name, {}).items():
        key = dict(kv.split("=", 1) for kv in labels.split(",") if kv).get(label, "")
        out[key] = out.get(key, 0) + int(v)
    return {k: v for k, v in sorted(out.items()) if v}


def theil_sen(ts: list[float], ys: list[float]) -> float:
    """Median of the slopes between every pair of points (0 with fewer than two distinct times)."""
    t, y = np.asarray(ts, np.float64), np.asarray(ys, np.float64)
    i, j = np.triu_indices(len(t), k=1)
    dt = t[j] - t[i]
    ok = dt > 0
    return float(np.median((y[j] - y[i])[ok] / dt[ok])) if ok.any() else 0.0


@dataclass(frozen=True, slots=True)
class Trend:
    """A fitted trend: `rise` = slope x span, compared with `tolerance` (same unit as the series)."""

    name: str
    points: int
    slope_per_min: float
    span_s: float
    rise: float
    tolerance: float
    ok: bool

    def to_json(self) -> dict[str, object]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def trend(name: str, ts: list[float], ys: list[float], tolerance: float, min_points: int = 3) -> Trend:
    """The Theil-Sen trend of ys over ts; ok when it rises by at most `tolerance` over the span
    (fewer than `min_points` points: ok, nothing to judge)."""
    if len(ts) < min_points:
        return Trend(name, len(ts), 0.0, 0.0, 0.0, tolerance, True)
    slope = theil_sen(ts, ys)
    span = ts[-1] - ts[0]
    rise = slope * span
    return Trend(name, len(ts), slope * 60, span, rise, tolerance, rise <= tolerance)
