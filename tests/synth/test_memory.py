"""Endless streaming in constant memory: RSS (from /proc/self/statm) stays flat over many frames.

Each stream runs in a fresh process: in the test session's own process, memory freed by earlier
tests is still resident, and a leak can grow into it without moving RSS (a CI run saw the leak
control below pass its check for that reason)."""

from __future__ import annotations

import gc
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from streamrt.bench.machine import rss_bytes
from streamrt.synth import World, WorldConfig


def _stream_rss_here(cfg: WorldConfig, n: int, every: int) -> tuple[list[int], int]:
    samples, events = [], 0
    for f in World(cfg).frames():
        events += len(f.events)
        if f.index % every == 0:
            gc.collect()
            samples.append(rss_bytes())
        if f.index + 1 == n:
            return samples, events
    raise AssertionError("unreachable")


def stream_rss(cfg: WorldConfig, n: int, every: int) -> tuple[list[int], int]:
    """RSS every `every` frames while a fresh process consumes `n` frames (events are read and
    dropped), and the number of events seen."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_stream_rss_here, cfg, n, every).result()


def check_flat(samples: list[int], warmup: int, limit: int) -> None:
    after = samples[warmup:]
    growth = max(after) - after[0]
    assert growth < limit, f"RSS grew {growth / 2**20:.2f} MiB after warm-up: {[s // 1024 for s in after]}"


# Many events per frame, so that keeping them would show (more than 15k events in 10k frames).
HECTIC = WorldConfig.preset(
    "busy", seed=1, width=32, height=32, enter_rate=6.0, leave_rate=1.0, move_rate=4.0, stop_rate=4.0,
    colour_change_rate=6.0, resize_rate=6.0, still_rate=0.0, max_objects=12,
)  # fmt: skip


def test_10k_frames_flat_rss():
    samples, events = stream_rss(HECTIC, 10_000, 500)
    assert events > 15_000
    check_flat(samples, warmup=2, limit=2**20)


def test_the_rss_check_catches_a_leak():
    """Control: the same stream with an unbounded event window must fail the same check."""
    samples, _ = stream_rss(HECTIC.replace(recent_events=10**9), 10_000, 500)
    with pytest.raises(AssertionError, match="RSS grew"):
        check_flat(samples, warmup=2, limit=2**20)


@pytest.mark.slow
def test_two_hours_at_30fps_flat_rss():
    """216k frames (two hours at 30 fps) of the demo world at 64x64."""
    samples, events = stream_rss(WorldConfig.preset("demo", seed=1, width=64, height=64), 216_000, 6000)
    assert events > 10_000
    check_flat(samples, warmup=2, limit=2 * 2**20)
