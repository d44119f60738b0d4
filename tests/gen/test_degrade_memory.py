"""Degrade ladder moves and flat memory over long rollouts (tiny random model)."""

from __future__ import annotations

import gc

import pytest
import torch

from streamrt.bench.machine import rss_bytes
from streamrt.gen.config import GenEngineConfig
from streamrt.gen.degrade import DegradeLadder, ladder
from streamrt.gen.engine import GenEngine
from streamrt.gen.stream import generate
from streamrt.gen.types import Level

from .conftest import make_tiny


def test_ladder_rungs_and_moves() -> None:
    cfg = GenEngineConfig(steps=3, block_frames=2)
    assert ladder(cfg) == [Level(3, 2), Level(2, 2), Level(1, 2), Level(1, 1)]
    assert ladder(cfg, v2v=True)[-1] == Level(1, 1, input_stride=2)
    unguided = [Level(3, 2, guided=False), Level(2, 2, guided=False), Level(1, 2, guided=False)]
    assert ladder(cfg, guided=True) == [Level(3, 2)] + unguided + [Level(1, 1, guided=False)]
    lad = DegradeLadder(cfg, patience=2, recover_patience=3)
    assert lad.observe(0.3, 0.25, 0) is None  # one miss is not enough
    assert lad.observe(0.3, 0.25, 2) == Level(2, 2)
    for f in range(4, 14, 2):
        lad.observe(0.3, 0.25, f)
    assert lad.level == Level(1, 1) and [s.level_to for s in lad.history] == [1, 2, 3]  # bottom rung holds
    for f in range(14, 20, 2):
        lad.observe(0.01, 0.25, f)
    assert lad.level == Level(1, 2) and lad.history[-1].level_to == 2 and "budget" in lad.history[-1].reason


def test_an_unguided_rung_runs_as_an_engine_without_guidance() -> None:
    model = make_tiny(dtype=torch.float32)
    guided, plain, ref = (
        GenEngine(model, GenEngineConfig(steps=2, block_frames=2, guidance=w)) for w in (2.0, 2.0, 1.0)
    )
    for e in (guided, plain, ref):
        e.set_prompt("a red circle")
    plain.set_level(Level(2, 2, guided=False))
    assert guided.guiding() and not plain.guiding()
    for _ in range(3):
        g, p, r = guided.next_block(), plain.next_block(), ref.next_block()
        assert torch.equal(p, r) and not torch.equal(g, r)


def test_engine_applies_a_smaller_block() -> None:
    eng = GenEngine(make_tiny(dtype=torch.float32), GenEngineConfig(steps=2, block_frames=2))
    eng.set_prompt("a red circle")
    assert eng.next_block().shape[1] == 2
    eng.set_level(Level(1, 1))
    assert eng.next_block().shape[1] == 1 and eng.cache.committed == 3


def _tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if torch.is_tensor(o))


def _rollout_is_flat(frames: int, schedule: str) -> None:
    cfg = GenEngineConfig(schedule=schedule, steps=1, first_block_steps=1, block_frames=2, window_frames=3)  # type: ignore[arg-type]
    eng = GenEngine(make_tiny(dtype=torch.float32), cfg)
    it = generate(eng, frames, {0: "a red circle", 50: "a blue square"})  # bounded per-prompt state first
    for _ in range(150):
        next(it)
    stats, tensors, rss = eng.cache.stats(), _tensors(), rss_bytes() // 1024
    for _ in it:
        pass
    after = eng.cache.stats()
    assert (after.kv_bytes, after.frame_bytes) == (stats.kv_bytes, stats.frame_bytes)
    assert after.window_frames == 3 and eng.emitted >= frames
    assert _tensors() <= tensors  # no tensor accumulates per frame
    assert rss_bytes() // 1024 - rss < 16_000


@pytest.mark.parametrize("schedule", ["sequential", "rolling"])
def test_memory_flat_over_a_long_rollout(schedule: str) -> None:
    _rollout_is_flat(300, schedule)


@pytest.mark.slow
def test_memory_flat_over_ten_thousand_frames() -> None:
    _rollout_is_flat(10_000, "sequential")
