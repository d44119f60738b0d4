"""Per-frame and per-event records of the generation engine (frozen, slotted)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class GenFrame:
    """One output frame."""

    index: int
    """Position in the output stream (0, 1, ...)."""
    pts: float
    """Stream timestamp in seconds (index / fps)."""
    pixels: np.ndarray
    """[H, W, 3] uint8 RGB."""
    prompt: str
    repeated: bool = False
    """True when video-to-video skipped a near-identical input and repeated the last output."""


@dataclass(frozen=True, slots=True)
class DegradeStep:
    """One move on the degrade ladder (logged and kept)."""

    frame: int
    """Output frame index at which the new level applies."""
    level_from: int
    level_to: int
    reason: str
    """E.g. "latency 0.210 s > budget 0.125 s for 3 blocks"."""


@dataclass(frozen=True, slots=True)
class Level:
    """A rung of the degrade ladder: fewer steps, smaller blocks, or skipped inputs."""

    steps: int
    block_frames: int
    input_stride: int = 1
    """Video-to-video: process every n-th input block (the rest repeat the last output)."""
    guided: bool = True
    """Classifier-free guidance where the engine's config asks for it; False: none on this rung (one
    forward per denoise step instead of two)."""

    def describe(self) -> str:
        guided = "" if self.guided else " unguided"
        return f"steps={self.steps} block={self.block_frames} input_stride={self.input_stride}{guided}"
