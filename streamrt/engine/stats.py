"""Counters and latency figures of a session, collected from its outputs and its queues.

`StatsCollector` observes every output (one call per output, no tensor work) and keeps per-chunk
latencies and RSS samples in bounded rings (a long stream's statistics stay constant in size;
totals are plain counters). `Summary` is the end-of-run report `streamrt replay` prints. Knows
nothing about how outputs are produced.
"""

from __future__ import annotations

import dataclasses
import resource
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from streamrt.bench.machine import rss_bytes
from streamrt.engine.queues import QueueStats
from streamrt.engine.types import ChunkDone, Output, ResponseEnd, TextDelta

RING = 100_000  # latency samples kept (about 28 hours of 1-second chunks)


def percentile(xs: list[float] | deque[float], q: float) -> float:
    """The q-th percentile (0..100) of `xs`; NaN when empty."""
    return float(np.percentile(np.asarray(xs, dtype=np.float64), q)) if xs else float("nan")


@dataclass(frozen=True, slots=True)
class Summary:
    """The end-of-run report."""

    frames: int
    """Frames sampled onto the model's grid and encoded."""
    frames_skipped: int
    """Source frames between grid points (not fed to the model by design)."""
    chunks: int
    tokens_total: int
    tokens_kept: int
    commentaries: int
    answers: int
    chunk_latency_p50_s: float
    chunk_latency_p99_s: float
    response_latency_p50_s: float
    """Ready-to-first-delta latency of responses (to its end for one that streamed no text)."""
    response_latency_p99_s: float
    chunk_deadline_misses: int
    response_deadline_misses: int
    cut_responses: int
    drops: dict[str, int]
    """Items dropped per named queue (policy in the name), e.g. {"chunks/drop_oldest": 3}."""
    peak_rss_bytes: int
    stream_s: float
    wall_s: float

    @property
    def tokens_dropped(self) -> int:
        return self.tokens_total - self.tokens_kept

    @property
    def drop_share(self) -> float:
        return self.tokens_dropped / self.tokens_total if self.tokens_total else 0.0

    @property
    def realtime_factor(self) -> float:
        """Stream seconds processed per wall second."""
        return self.stream_s / self.wall_s if self.wall_s > 0 else float("nan")

    def to_json(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        d.update(
            tokens_dropped=self.tokens_dropped,
            drop_share=round(self.drop_share, 4),
            realtime_factor=round(self.realtime_factor, 3),
        )
        return d

    def format(self) -> str:
        mib = self.peak_rss_bytes / 2**20
        drops = ", ".join(f"{k} {v}" for k, v in self.drops.items()) or "none"
        return "\n".join(
            [
                f"frames {self.frames} in {self.chunks} chunks ({self.frames_skipped} source frames between "
                f"grid points skipped); {self.stream_s:.1f} s of stream in {self.wall_s:.1f} s "
                f"({self.realtime_factor:.1f}x real time)",
                f"visual tokens kept {self.tokens_kept} / {self.tokens_total} "
                f"(dropped {self.tokens_dropped}, {100 * self.drop_share:.1f}%)",
                f"commentaries {self.commentaries}, answers {self.answers}, cut at deadline {self.cut_responses}",
                f"chunk latency p50 {1000 * self.chunk_latency_p50_s:.1f} ms, p99 {1000 * self.chunk_latency_p99_s:.1f} ms;"
                f" response latency p50 {1000 * self.response_latency_p50_s:.1f} ms, "
                f"p99 {1000 * self.response_latency_p99_s:.1f} ms",
                f"deadline misses: chunks {self.chunk_deadline_misses}, responses {self.response_deadline_misses}",
                f"queue drops: {drops}",
                f"peak memory (RSS) {mib:.0f} MiB",
            ]
        )


@dataclass(slots=True)
class StatsCollector:
    """Accumulates a Summary from outputs (see module docstring)."""

    started: float = field(default_factory=time.monotonic)
    chunks: int = 0
    tokens_total: int = 0
    tokens_kept: int = 0
    commentaries: int = 0
    answers: int = 0
    chunk_misses: int = 0
    response_misses: int = 0
    cut: int = 0
    stream_s: float = 0.0
    chunk_latency: deque[float] = field(default_factory=lambda: deque(maxlen=RING))
    response_latency: deque[float] = field(default_factory=lambda: deque(maxlen=RING))
    rss: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=RING))
    """(stream time, RSS bytes) sampled once per chunk."""
    _first_delta: set[int] = field(default_factory=set)

    def observe(self, o: Output) -> None:
        if isinstance(o, ChunkDone):
            self.chunks += 1
            self.tokens_total += o.tokens_total
            self.tokens_kept += o.tokens_kept
            self.chunk_latency.append(o.output - o.capture)
            self.chunk_misses += not o.deadline_met
            self.stream_s = max(self.stream_s, o.t_end)
            self.rss.append((o.t_end, rss_bytes()))
        elif isinstance(o, TextDelta):
            if o.segment not in self._first_delta:
                self._first_delta.add(o.segment)
                self.response_latency.append(o.output - o.capture)
        elif isinstance(o, ResponseEnd):
            if o.segment in self._first_delta:
                self._first_delta.discard(o.segment)
            else:  # no visible text was streamed: the response's latency is its end's
                self.response_latency.append(o.output - o.capture)
            self.commentaries += o.kind == "commentary"
            self.answers += o.kind == "answer"
            self.response_misses += not o.deadline_met
            self.cut += o.reason == "deadline"

    def summary(self, frames: int, skipped: int, queues: list[QueueStats]) -> Summary:
        peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, rss_bytes())
        return Summary(
            frames=frames,
            frames_skipped=skipped,
            chunks=self.chunks,
            tokens_total=self.tokens_total,
            tokens_kept=self.tokens_kept,
            commentaries=self.commentaries,
            answers=self.answers,
            chunk_latency_p50_s=percentile(self.chunk_latency, 50),
            chunk_latency_p99_s=percentile(self.chunk_latency, 99),
            response_latency_p50_s=percentile(self.response_latency, 50),
            response_latency_p99_s=percentile(self.response_latency, 99),
            chunk_deadline_misses=self.chunk_misses,
            response_deadline_misses=self.response_misses,
            cut_responses=self.cut,
            drops={f"{q.name}/{q.policy}": q.dropped for q in queues},
            peak_rss_bytes=peak,
            stream_s=self.stream_s,
            wall_s=time.monotonic() - self.started,
        )
