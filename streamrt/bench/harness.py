"""The benchmark harness: cases run side by side, repeated, summarised as median and spread.

A benchmark function receives a `Bench`, declares its cases with `bench.case(...)` (exactly one of
them `baseline=True` when ratios make sense), optionally sets `bench.config`, and returns. The
harness then runs every case once as a warm-up and `repeats` times interleaved (A B C A B C ...),
timing each call with `time.perf_counter` and sampling peak RSS while it runs. A case's function may
return a dict of extra figures (e.g. time to first frame); each is summarised the same way.

Reported per case: seconds (median, min, max), throughput (work units per second, median), extra
figures (median, min, max), peak RSS of this process during the case, and the speed-up against the
baseline computed pair by pair within the same repeat (baseline seconds / case seconds), so a
machine that slows down between repeats slows both sides of each pair. What this module does not
know: what the cases do; benchmarks own their workloads.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import json
import logging
import pkgutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from streamrt.bench.machine import PeakRSS, children_maxrss_bytes, machine_info

log = logging.getLogger(__name__)

CaseFn = Callable[[], dict[str, float] | None]
BenchFn = Callable[["Bench"], None]


@dataclass(frozen=True, slots=True)
class Spread:
    """Median with the smallest and largest observation."""

    median: float
    min: float
    max: float

    @staticmethod
    def of(xs: list[float]) -> Spread:
        return Spread(statistics.median(xs), min(xs), max(xs))


@dataclass(frozen=True, slots=True)
class CaseResult:
    name: str
    baseline: bool
    work: float
    unit: str
    seconds: Spread
    throughput: Spread  # work units per second
    speedup_vs_baseline: Spread | None  # baseline seconds / this case's seconds, pair by pair
    extra: dict[str, Spread]
    peak_rss_bytes: int
    rss_growth_bytes: int  # peak during the case minus RSS before it (largest over repeats)
    note: str


@dataclass(frozen=True, slots=True)
class BenchResult:
    benchmark: str
    quick: bool
    repeats: int
    config: dict[str, object]
    cases: list[CaseResult]
    machine: dict[str, object]
    children_peak_rss_bytes: int
    started_unix: float
    duration_s: float

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass
class _Case:
    name: str
    fn: CaseFn
    work: float
    unit: str
    baseline: bool
    note: str
    seconds: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)
    peak: int = 0
    growth: int = 0


class Bench:
    """What a benchmark function fills in: its cases and its configuration."""

    def __init__(self, name: str, quick: bool) -> None:
        self.name = name
        self.quick = quick
        self.config: dict[str, object] = {}
        self._cases: list[_Case] = []

    def case(
        self,
        name: str,
        fn: CaseFn,
        *,
        work: float = 1.0,
        unit: str = "runs",
        baseline: bool = False,
        note: str = "",
    ) -> None:
        """Declare a case; `work` units are done per call (throughput = work / seconds)."""
        if any(c.name == name for c in self._cases):
            raise ValueError(f"duplicate case {name!r} in benchmark {self.name!r}")
        if baseline and any(c.baseline for c in self._cases):
            raise ValueError(f"benchmark {self.name!r} has two baselines")
        self._cases.append(_Case(name, fn, float(work), unit, baseline, note))

    def run(self, repeats: int, warmup: int = 1) -> BenchResult:
        if not self._cases:
            raise ValueError(f"benchmark {self.name!r} declared no cases")
        started = time.time()
        t0 = time.perf_counter()
        for _ in range(warmup):
            for c in self._cases:
                c.fn()
        for r in range(repeats):
            for c in self._cases:
                gc.collect()
                with PeakRSS() as mem:
                    t = time.perf_counter()
                    extra = c.fn() or {}
                    dt = time.perf_counter() - t
                c.seconds.append(dt)
                c.peak = max(c.peak, mem.peak)
                c.growth = max(c.growth, mem.peak - mem.start)
                for k, v in extra.items():
                    c.extra.setdefault(k, []).append(float(v))
                log.info("%s/%s repeat %d: %.4f s", self.name, c.name, r + 1, dt)
        base = next((c for c in self._cases if c.baseline), None)
        results = []
        for c in self._cases:
            speed = None
            if base is not None:
                speed = Spread.of([b / s for b, s in zip(base.seconds, c.seconds, strict=True)])
            results.append(
                CaseResult(
                    name=c.name,
                    baseline=c.baseline,
                    work=c.work,
                    unit=c.unit,
                    seconds=Spread.of(c.seconds),
                    throughput=Spread.of([c.work / s for s in c.seconds]),
                    speedup_vs_baseline=speed,
                    extra={k: Spread.of(v) for k, v in c.extra.items()},
                    peak_rss_bytes=c.peak,
                    rss_growth_bytes=c.growth,
                    note=c.note,
                )
            )
        return BenchResult(
            benchmark=self.name,
            quick=self.quick,
            repeats=repeats,
            config=self.config,
            cases=results,
            machine=machine_info(),
            children_peak_rss_bytes=children_maxrss_bytes(),
            started_unix=started,
            duration_s=time.perf_counter() - t0,
        )


@dataclass(frozen=True, slots=True)
class Registered:
    name: str
    help: str
    fn: BenchFn


_REGISTRY: dict[str, Registered] = {}


def register(name: str, help: str) -> Callable[[BenchFn], BenchFn]:
    """Decorator: make `fn(bench)` available as `streamrt bench NAME`."""

    def deco(fn: BenchFn) -> BenchFn:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"benchmark {name!r} registered twice")
        _REGISTRY[name] = Registered(name, help, fn)
        return fn

    return deco


def registry() -> dict[str, Registered]:
    """All benchmarks, importing every module of `streamrt.bench` so their decorators run."""
    pkg = sys.modules["streamrt.bench"]
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name not in ("harness", "machine") and not info.name.startswith("_"):
            importlib.import_module(f"streamrt.bench.{info.name}")
    return dict(sorted(_REGISTRY.items()))


def run_benchmark(name: str, *, quick: bool, repeats: int, warmup: int = 1) -> BenchResult:
    reg = registry()
    if name not in reg:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(reg) or 'none'}")
    bench = Bench(name, quick)
    reg[name].fn(bench)
    return bench.run(repeats=repeats, warmup=warmup)


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def format_table(res: BenchResult) -> str:
    """A plain-text table of a result, one row per case."""
    lines = [
        f"benchmark {res.benchmark} ({'quick, ' if res.quick else ''}{res.repeats} repeats, "
        f"{res.duration_s:.1f} s) on {res.machine['cores']} cores, "
        f"torch threads {res.machine['torch_threads']}, load {res.machine['loadavg']}",
    ]
    head = (
        f"{'case':<28} {'median s':>10} {'min..max s':>19} {'throughput':>22} {'vs base':>16} {'peak RSS':>9}"
    )
    lines.append(head)
    lines.append("-" * len(head))
    for c in res.cases:
        sp = c.speedup_vs_baseline
        vs = "baseline" if c.baseline else (f"{sp.median:.2f}x ({sp.min:.2f}-{sp.max:.2f})" if sp else "")
        lines.append(
            f"{c.name:<28} {c.seconds.median:>10.4f} {c.seconds.min:>9.4f}..{c.seconds.max:<9.4f}"
            f" {c.throughput.median:>14.1f} {c.unit + '/s':<7} {vs:>16} {_fmt_bytes(c.peak_rss_bytes):>9}"
        )
        for k, v in c.extra.items():
            lines.append(f"{'':<4}{k:<24} {v.median:>10.4f} {v.min:>9.4f}..{v.max:<9.4f}")
        if c.note:
            lines.append(f"{'':<4}note: {c.note}")
    return "\n".join(lines)


def write_json(res: BenchResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res.to_json(), indent=2, sort_keys=False) + "\n")
