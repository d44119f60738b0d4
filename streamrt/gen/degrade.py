"""The degrade ladder: step quality down when blocks miss their deadline, back up when there is room.

Rungs, from the configured level down: for a guided engine, the same steps without classifier-free
guidance (half the forwards); then one denoise step fewer at a time (to 1), then 1-frame blocks
(sequential), then, for video-to-video, every other input block skipped. `observe` takes the wall
time a block took and its budget (block frames / fps); `patience` consecutive misses move one rung
down, `recover_patience` consecutive blocks under `recover` x budget move one rung up. Every move is
logged and kept in `history`. Owns: the rung list and the counters. Does not know the model.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from streamrt.gen.config import GenEngineConfig
from streamrt.gen.types import DegradeStep, Level

log = logging.getLogger(__name__)


def ladder(cfg: GenEngineConfig, v2v: bool = False, guided: bool = False) -> list[Level]:
    """The rungs for a configuration (index 0 = full quality); `guided`: the engine runs classifier-free
    guidance (`GenEngine.guidance` != 1), which the first step down gives up."""
    levels = [Level(s, cfg.block) for s in range(cfg.steps, 0, -1)]
    if cfg.block > 1:
        levels.append(Level(1, 1))
    if v2v:
        levels.append(Level(1, levels[-1].block_frames, input_stride=2))
    if guided:  # the same rungs without guidance below the top one
        levels = levels[:1] + [replace(level, guided=False) for level in levels]
    return levels


class DegradeLadder:
    """Walks `ladder(cfg, v2v, guided)` from observed block latencies."""

    def __init__(
        self,
        cfg: GenEngineConfig,
        *,
        v2v: bool = False,
        guided: bool = False,
        patience: int = 3,
        recover: float = 0.5,
        recover_patience: int = 16,
    ) -> None:
        self.levels = ladder(cfg, v2v, guided)
        self.index = 0
        self.patience, self.recover, self.recover_patience = patience, recover, recover_patience
        self._misses = 0
        self._easy = 0
        self.history: list[DegradeStep] = []

    @property
    def level(self) -> Level:
        return self.levels[self.index]

    def observe(self, seconds: float, budget_s: float, frame: int) -> Level | None:
        """Record one block's wall time against its budget; returns the new level when it changes."""
        self._misses = self._misses + 1 if seconds > budget_s else 0
        self._easy = self._easy + 1 if seconds < self.recover * budget_s else 0
        move = 0
        if self._misses >= self.patience and self.index + 1 < len(self.levels):
            move, why = 1, f"{seconds:.3f} s > budget {budget_s:.3f} s for {self._misses} blocks"
        elif self._easy >= self.recover_patience and self.index > 0:
            move, why = (
                -1,
                f"{seconds:.3f} s < {self.recover:g} x budget {budget_s:.3f} s for {self._easy} blocks",
            )
        if not move:
            return None
        step = DegradeStep(frame, self.index, self.index + move, why)
        self.index += move
        self._misses = self._easy = 0
        self.history.append(step)
        log.info("degrade %d -> %d (%s): %s", step.level_from, step.level_to, self.level.describe(), why)
        return self.level
