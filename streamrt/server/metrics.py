"""Prometheus metrics of one server (its own registry, so several servers can live in one process).

Counters: sessions, refused connections, frames in/out, drops by reason, errors by code, deadline hits
and misses; gauges: active sessions, scheduler queue, worker busy seconds; histogram: output latency
by mode. Sessions
report their deltas when they end and at every stats tick. Owns the registry. Does not know sockets.
"""

from __future__ import annotations

from collections import Counter

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PCounter

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServerMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.sessions = PCounter("streamrt_sessions", "sessions started", ["mode"], registry=r)
        self.refused = PCounter("streamrt_refused", "connections refused", ["reason"], registry=r)
        self.active = Gauge("streamrt_active_sessions", "sessions running now", registry=r)
        self.queued = Gauge("streamrt_scheduler_queue", "jobs waiting for a worker", registry=r)
        self.busy = Gauge(
            "streamrt_worker_busy_seconds", "worker seconds spent on model work so far", registry=r
        )
        self.frames_in = PCounter("streamrt_frames_in", "input frames received", ["mode"], registry=r)
        self.frames_out = PCounter("streamrt_frames_out", "output frames produced", ["mode"], registry=r)
        self.drops = PCounter("streamrt_drops", "frames dropped", ["mode", "reason"], registry=r)
        self.errors = PCounter("streamrt_errors", "error messages sent", ["code"], registry=r)
        self.deadline = PCounter(
            "streamrt_deadline", "outputs by deadline outcome", ["mode", "outcome"], registry=r
        )
        self.latency = Histogram(
            "streamrt_latency_seconds",
            "output latency (server side)",
            ["mode"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def add(
        self,
        mode: str,
        now: Counter[str],
        drops: Counter[str],
        before: Counter[str],
        drops_before: Counter[str],
    ) -> None:
        """Add a session's counter deltas since its last report."""
        for key, metric in (("frames_in", self.frames_in), ("frames_out", self.frames_out)):
            if d := now[key] - before[key]:
                metric.labels(mode).inc(d)
        for key, outcome in (("hits", "hit"), ("misses", "miss")):
            if d := now[key] - before[key]:
                self.deadline.labels(mode, outcome).inc(d)
        for reason in drops:
            if d := drops[reason] - drops_before[reason]:
                self.drops.labels(mode, reason).inc(d)

    def render(self) -> bytes:
        return generate_latest(self.registry)
