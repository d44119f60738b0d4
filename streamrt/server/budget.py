"""Memory admission: how many sessions of each mode fit a memory budget (`streamrt serve --max-memory`).

A session's cost is its KV cache at full size (from the engine's own buffers: `SessionEngine.cache_bytes`,
which follow from the model config and the cache capacity) plus a measured overhead (`measure_session`:
the resident-memory growth of a few probe sessions built and stepped in this process, per session,
minus the part of their caches written so far; never below zero). The server reserves a session's cost at hello
and releases it when the session is gone; a hello that does not fit is refused with E_FULL and a retry
hint, so the process never grows past the budget by admitting sessions. `baseline_bytes` is the
resident memory of the process with its models loaded and warmed up (measured at start); `headroom`
keeps a share of the budget for transient work (a batched forward's activations, encoded frames).
Owns the costs and the reservations. Does not know sockets or protocol messages.
"""

from __future__ import annotations

import gc
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamrt.server.engine import InputFrame, SessionEngine

SIZE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


class BudgetError(ValueError):
    """A budget that cannot work (`code` E_SERVER_CONFIG), e.g. smaller than the loaded models."""

    def __init__(self, message: str) -> None:
        super().__init__(f"E_SERVER_CONFIG: {message}")
        self.code = "E_SERVER_CONFIG"


def parse_size(text: str) -> int:
    """ "2G", "1.5GiB", "512M", "800MB", "1048576" -> bytes (binary units)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not m:
        raise BudgetError(f"memory size {text!r}: use a number with K, M, G or T (e.g. 2G, 512M)")
    return int(float(m.group(1)) * SIZE_UNITS[m.group(2)])


def rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; 0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass(frozen=True, slots=True)
class SessionCost:
    """What one session of a mode holds in memory."""

    cache_bytes: int
    """KV cache buffers at full size (from the model config and the cache capacity)."""
    overhead_bytes: int
    """Measured: everything else a live session holds (engine objects, buffers, per-prompt states)."""

    @property
    def total(self) -> int:
        return self.cache_bytes + self.overhead_bytes


def measure_session(
    factory: Callable[[Mapping[str, object]], SessionEngine],
    params: Mapping[str, object],
    *,
    probes: int = 3,
    steps: int = 6,
    frame_size: tuple[int, int] = (64, 64),
) -> SessionCost:
    """Build `probes` engines, step each `steps` times (input frames when the mode takes them), and take
    the resident-memory growth per engine. One engine is built and stepped first (one-time allocations
    of the first forward are part of the baseline, not of a session) and kept alive while the probes
    run, so they cannot reuse its freed memory and look cheaper than a session next to others."""

    def build_and_step() -> SessionEngine:
        eng = factory(params)
        rng = np.random.default_rng(0)
        px = rng.integers(0, 256, (*frame_size, 3), dtype=np.uint8)
        fps = 8.0
        for k in range(steps):
            frame = InputFrame(k, int(k / fps * 1e6), np.roll(px, 3 * k, axis=1), 0.0, float("inf"))
            eng.step(frame if eng.wants_input else None)
        return eng

    engines = [build_and_step()]
    gc.collect()
    before = rss_bytes()
    engines += [build_and_step() for _ in range(probes)]
    grown = max(0, rss_bytes() - before) // probes
    cache = max(e.cache_bytes() for e in engines)
    written = max(e.cache_bytes(used=True) for e in engines[1:])  # resident part of the cache
    for e in engines:
        e.close()
    del engines
    gc.collect()
    return SessionCost(cache, max(0, grown - written))


class MemoryBudget:
    """Reservations against `limit_bytes` (see module docstring)."""

    def __init__(
        self,
        limit_bytes: int,
        baseline_bytes: int,
        costs: Mapping[str, SessionCost],
        *,
        headroom: float = 0.1,
    ) -> None:
        self.limit = limit_bytes
        self.baseline = baseline_bytes
        self.costs = dict(costs)
        self.available = int(limit_bytes * (1 - headroom)) - baseline_bytes
        if self.available < min((c.total for c in self.costs.values()), default=0):
            need = baseline_bytes + min(c.total for c in self.costs.values())
            raise BudgetError(
                f"--max-memory {limit_bytes / 2**20:.0f} MiB holds no session: the loaded models take "
                f"{baseline_bytes / 2**20:.0f} MiB and one session needs {need / 2**20 - baseline_bytes / 2**20:.1f} MiB "
                f"more (plus {headroom:.0%} headroom); give at least {need / (1 - headroom) / 2**20:.0f} MiB"
            )
        self.reserved = 0
        self.active: Counter[str] = Counter()

    def capacity(self, mode: str) -> int:
        """Sessions of `mode` alone that fit the budget."""
        return self.available // max(1, self.costs[mode].total)

    def reserve(self, mode: str) -> bool:
        cost = self.costs[mode].total
        if self.reserved + cost > self.available:
            return False
        self.reserved += cost
        self.active[mode] += 1
        return True

    def release(self, mode: str) -> None:
        if self.active[mode] > 0:
            self.active[mode] -= 1
            self.reserved -= self.costs[mode].total

    def refusal(self, mode: str) -> str:
        c = self.costs[mode]
        return (
            f"memory budget full: {self.reserved / 2**20:.1f} of {self.available / 2**20:.1f} MiB for sessions "
            f"reserved; a {mode} session needs {c.total / 2**20:.1f} MiB (KV cache {c.cache_bytes / 2**20:.1f} "
            f"+ {c.overhead_bytes / 2**20:.1f} MiB)"
        )

    def describe(self) -> dict[str, object]:
        """For /healthz and the startup log."""
        mib = 2**20
        return {
            "limit_mib": round(self.limit / mib, 1),
            "baseline_mib": round(self.baseline / mib, 1),
            "available_mib": round(self.available / mib, 1),
            "available_bytes": self.available,
            "reserved_mib": round(self.reserved / mib, 1),
            "per_session_mib": {
                m: {
                    "kv_cache": round(c.cache_bytes / mib, 2),
                    "overhead": round(c.overhead_bytes / mib, 2),
                    "bytes": c.total,
                    "capacity": self.capacity(m),
                }
                for m, c in self.costs.items()
            },
            "process_rss_mib": round(rss_bytes() / mib, 1),
        }


def process_baseline() -> int:
    """Resident memory now, after a collection (the models are loaded and warmed up)."""
    gc.collect()
    return rss_bytes() if os.path.exists("/proc/self/status") else 0
