"""Configuration of the streaming generation engine: one frozen dataclass, named presets.

Owns: the knobs of the block loop (schedule, steps, block size, sink and window sizes, prompt switch,
video-to-video strength and similarity filter, seed). Does not know the model or the cache internals.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

Schedule = Literal["sequential", "stream_batch", "rolling"]
PromptSwitch = Literal["recache", "hard_cut"]
Sampler = Literal["euler", "renoise"]
SAMPLERS: tuple[str, ...] = ("euler", "renoise")
SCHEDULES: tuple[str, ...] = ("sequential", "stream_batch", "rolling")
DEFAULT_PRESET = "quality"
"""The preset `streamrt generate` and the server's generate mode run unless told otherwise: the built-in
generator draws the prompted colour and shape in 93.7% of frames with it (4 steps, guided) and in 33%
with "fast" (1 step); under load the degrade ladder drops guidance, then steps."""


class GenConfigError(ValueError):
    """An engine configuration that cannot work (`code` E_GEN_CONFIG)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"E_GEN_CONFIG: {message}")
        self.code = "E_GEN_CONFIG"


@dataclass(frozen=True, slots=True)
class GenEngineConfig:
    """How the engine rolls a video out."""

    schedule: Schedule = "sequential"
    """sequential: denoise one block, commit, next. stream_batch: the denoise steps of consecutive blocks
    run in one forward, each block seeing only the committed cache. rolling: one forward denoises a
    window of blocks at rising noise levels (each sees the less noisy ones); the oldest leaves clean."""
    steps: int = 4
    """Denoise steps per block (1-4 for real time)."""
    first_block_steps: int = 8
    """Steps of the very first block (no context yet, nothing to copy from; sequential only)."""
    block_frames: int = 2
    """Frames per block (sequential; rolling and stream-batch use 1-frame blocks)."""
    sink_frames: int = 1
    """Frames pinned at the start of the stream (never evicted)."""
    window_frames: int = 4
    """Recent frames kept in the rolling KV window."""
    prompt_switch: PromptSwitch | None = None
    """recache: rebuild the cached frames' K/V under the new prompt; hard_cut: forget them. None: the
    model's own default (`GenSpec.prompt_switch`: recache unless the checkpoint says otherwise)."""
    fps: float = 8.0
    """Frame rate of the output stream (timestamps; the built-in model was trained at 8 fps)."""
    v2v_strength: float = 0.6
    """Video-to-video: noise level input frames are pushed to before denoising (0 = copy, 1 = ignore)."""
    v2v_similarity: float = 0.05
    """Video-to-video: an input block is skipped (the last output repeated) when no 8x8 patch differs
    from the last processed input by more than this mean |difference| (pixels in [-1, 1]): a small
    moving object changes its patches a lot, sensor noise averages out inside a patch."""
    guidance: float | None = None
    """Classifier-free guidance scale of the sequential schedule's denoise steps: x0_null + w (x0_prompt
    - x0_null), one more forward per step (1 = off). None: the model's own default (`GenSpec.guidance`:
    1 unless its checkpoint names another scale). The rolling and stream-batch schedules do not guide."""
    guidance_frames: int | None = None
    """Guide only while fewer than this many frames are committed (the first blocks set the objects that
    later blocks keep from the cache); None: every block."""
    sampler: Sampler | None = None
    """How a denoise step moves from one noise level to the next, given the predicted clean frame x0:
    "euler" follows the flow (x0 + t_next / t (x - x0): the same noise direction all the way down);
    "renoise" mixes x0 with FRESH noise at the next level ((1 - t_next) x0 + t_next eps, the few-step
    sampler of consistency / DMD-distilled models such as Self-Forcing and CausVid). Identical for one
    step. None: the model's own default (`GenSpec.sampler`: euler unless its checkpoint names one)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise GenConfigError(f"schedule {self.schedule!r} not in {SCHEDULES}")
        if not 1 <= self.steps <= 50 or self.first_block_steps < 1:
            raise GenConfigError(f"steps {self.steps} / first_block_steps {self.first_block_steps}")
        if self.block_frames < 1 or self.window_frames < 1 or self.sink_frames < 0:
            raise GenConfigError("block_frames >= 1, window_frames >= 1, sink_frames >= 0")
        if (self.guidance is not None and self.guidance < 0) or (
            self.guidance_frames is not None and self.guidance_frames < 0
        ):
            raise GenConfigError(f"guidance {self.guidance} / guidance_frames {self.guidance_frames}")
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise GenConfigError(f"sampler {self.sampler!r} not in {SAMPLERS}")
        if not 0 < self.v2v_strength <= 1:
            raise GenConfigError(f"v2v_strength {self.v2v_strength} not in (0, 1]")

    @property
    def pipelined(self) -> bool:
        return self.schedule != "sequential"

    @property
    def block(self) -> int:
        """Frames per block under this schedule."""
        return 1 if self.pipelined else self.block_frames

    def max_inflight(self) -> int:
        """Frames in flight in one forward (the FrameCache's in-flight region)."""
        return self.block * (self.steps + 1) if self.pipelined else self.block

    def context_frames(self) -> int:
        """Highest cache-relative frame position + 1 (must stay within what the model was trained on)."""
        return self.sink_frames + self.window_frames + self.max_inflight()

    def replace(self, **changes: object) -> GenEngineConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @staticmethod
    def preset(name: str, **overrides: object) -> GenEngineConfig:
        """ "quality" (sequential, 4 steps), "fast" (sequential, 1 step, no guidance), "rolling",
        "stream_batch"."""
        presets = {
            "quality": GenEngineConfig(),
            # one step gains nothing from guidance (colour + shape 33.0% without, 33.4% with guidance
            # 1.25 on the gen-quality prompts and seeds) at 40% of the frame rate: fast never guides
            "fast": GenEngineConfig(steps=1, first_block_steps=4, guidance=1.0),
            "rolling": GenEngineConfig(schedule="rolling", steps=3, window_frames=3),
            "stream_batch": GenEngineConfig(schedule="stream_batch", steps=3, window_frames=3),
        }
        if name not in presets:
            raise GenConfigError(f"unknown preset {name!r}; known: {', '.join(presets)}")
        return presets[name].replace(**overrides) if overrides else presets[name]
