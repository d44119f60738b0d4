"""The `generate` mode: a `SessionEngine` over streamrt.gen's GenEngine (one FrameCache per session).

Two sources, chosen in hello (`input`): "none" (text-to-video, paced ticks: each step emits one block
of `block_frames` frames at the engine's fps) or "video" (video-to-video: each input frame is resized to
the model's frame size and restyled by `GenEngine.transform`). The prompt switches at any time, by
the model's switch mode (KV-recache unless its checkpoint names a hard cut; the built-in one recaches);
`steps` and `strength` change at any time; the rest is fixed at hello. The degrade ladder is
streamrt.gen's `DegradeLadder`, fed by `observe` and stepped down by the scheduler through `degrade`.
Sessions of the sequential presets with equal block shapes and noise schedules batch across sessions
(`step_batch`, streamrt.server.batch). Owns: the GenEngine, its ladder and the output frame counter. Does not know sockets or deadlines.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import cv2
import torch

from streamrt.gen.config import DEFAULT_PRESET, GenConfigError, GenEngineConfig
from streamrt.gen.degrade import DegradeLadder
from streamrt.gen.engine import GenEngine
from streamrt.gen.types import Level
from streamrt.models.gen.data import to_pixels, to_tensor
from streamrt.models.gen.model import GenModel
from streamrt.server import batch
from streamrt.server.engine import InputFrame, OutputFrame, SessionEngine, StepResult, param_error
from streamrt.server.protocol import ParamValue

PRESETS = ("quality", "fast", "rolling", "stream_batch")
HELLO_ONLY = ("preset", "input", "seed", "degrade")
"""Parameters fixed at hello (changing them later is E_PARAM)."""
DEFAULT_PROMPT = "a red circle"


class GenerateEngine(SessionEngine):
    """See module docstring."""

    def __init__(self, model: GenModel, params: Mapping[str, ParamValue]) -> None:
        p = self._check(params, initial=True)
        self.v2v = p.get("input", "none") == "video"
        over: dict[str, object] = {"seed": int(p.get("seed", 0))}
        if "steps" in p:
            over["steps"] = int(p["steps"])
        if "strength" in p:
            over["v2v_strength"] = float(p["strength"])
        try:
            cfg = GenEngineConfig.preset(str(p.get("preset", DEFAULT_PRESET)), **over)
        except GenConfigError as e:
            raise param_error("preset", str(e)) from None
        if self.v2v and cfg.pipelined:
            raise param_error("preset", "video input runs with the sequential presets (quality, fast)")
        self.wants_input = self.v2v
        self.engine = GenEngine(model, cfg)
        self.ladder = self._ladder(cfg) if bool(p.get("degrade", True)) else None
        self.engine.set_prompt(str(p.get("prompt", DEFAULT_PROMPT)))
        self.frames_out = 0

    def _ladder(self, cfg: GenEngineConfig) -> DegradeLadder:
        return DegradeLadder(cfg, v2v=self.v2v, guided=self.engine.guidance != 1.0)

    # ---- parameters ------------------------------------------------------------------------------------
    @staticmethod
    def _check(params: Mapping[str, ParamValue], *, initial: bool) -> dict[str, ParamValue]:
        out: dict[str, ParamValue] = {}
        for k, v in params.items():
            if k in HELLO_ONLY and not initial:
                raise param_error(k, "can only be set in hello")
            if k == "prompt":
                if not isinstance(v, str) or not v.strip():
                    raise param_error(k, "a non-empty string")
            elif k == "steps":
                if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 8:
                    raise param_error(k, "an integer in 1..8")
            elif k == "strength":
                if not isinstance(v, int | float) or isinstance(v, bool) or not 0 < v <= 1:
                    raise param_error(k, "a number in (0, 1]")
            elif k == "preset":
                if v not in PRESETS:
                    raise param_error(k, f"one of {', '.join(PRESETS)}")
            elif k == "input":
                if v not in ("none", "video"):
                    raise param_error(k, '"none" (text to video) or "video" (video to video)')
            elif k == "seed":
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**63:
                    raise param_error(k, "a non-negative integer")
            elif k == "degrade":
                if not isinstance(v, bool):
                    raise param_error(k, "true or false")
            else:
                raise param_error(
                    k,
                    "unknown parameter of mode generate (prompt, steps, strength, preset, input, seed, degrade)",
                )
            out[k] = v
        return out

    def validate(self, params: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
        return self._check(params, initial=False)

    def apply(self, params: Mapping[str, ParamValue]) -> None:
        if "steps" in params or "strength" in params:
            cfg = self.engine.cfg
            self.engine.cfg = cfg = cfg.replace(
                steps=int(params.get("steps", cfg.steps)),
                v2v_strength=float(params.get("strength", cfg.v2v_strength)),
            )
            if "steps" in params:  # a new ladder from the new top rung
                self.ladder = self._ladder(cfg) if self.ladder is not None else None
                self.engine.set_level(
                    self.ladder.level if self.ladder is not None else Level(cfg.steps, cfg.block)
                )
        if "prompt" in params:
            self.engine.set_prompt(str(params["prompt"]))

    # ---- work ---------------------------------------------------------------------------------------------
    def tick_interval_s(self) -> float:
        return (
            self.engine.level.block_frames / self.engine.cfg.fps
            if not self.engine.cfg.pipelined
            else 1 / self.engine.cfg.fps
        )

    @property
    def _level(self) -> int:
        return self.ladder.index if self.ladder is not None else 0

    def _input(self, frame: InputFrame) -> torch.Tensor:
        """An input frame at the model's size: [1, 1, 3, H, W] in [-1, 1]."""
        eng, px = self.engine, frame.pixels
        if px.shape[:2] != (eng.h, eng.w):
            px = cv2.resize(px, (eng.w, eng.h), interpolation=cv2.INTER_AREA)
        return to_tensor(px)[None, None].to(eng.dtype)

    def _result(self, block: torch.Tensor | None, repeated: bool, frame: InputFrame | None) -> StepResult:
        if block is None:  # a pipeline fills
            return StepResult((), self._level)
        ref, cap = (frame.seq, frame.capture_us) if frame is not None else (-1, 0)
        pix = to_pixels(block[0].float())  # [b, H, W, 3] uint8
        degraded = self._level > 0
        outs = tuple(OutputFrame(p, ref, cap, repeated, degraded) for p in pix)
        self.frames_out += len(outs)
        return StepResult(outs, self._level)

    def step(self, frame: InputFrame | None) -> StepResult:
        if frame is None:
            return self._result(self.engine.next_block(), False, None)  # [1, b, 3, H, W] or None
        block, repeated = self.engine.transform(self._input(frame))
        return self._result(block, repeated, frame)

    # ---- cross-session batching (streamrt.server.batch) --------------------------------------------------
    def batch_key(self, frame: InputFrame | None) -> Hashable | None:
        return batch.v2v_key(self.engine) if self.v2v else batch.t2v_key(self.engine)

    @classmethod
    def step_batch(
        cls, engines: Sequence[SessionEngine], frames: Sequence[InputFrame | None]
    ) -> list[StepResult]:
        """One shared forward per denoise step for all `engines` (equal batch keys). Equal to each
        engine's own `step` up to fp32 GEMM rounding (see tests/server/test_batch.py); on an exception
        every engine's noise generator and counters are restored (the caches' committed state is only
        touched by the last, infallible commits)."""
        gens = [e for e in engines if isinstance(e, GenerateEngine)]
        assert len(gens) == len(engines)
        saved = [batch.save_state(g.engine) for g in gens]
        try:
            plans = [
                batch.plan_v2v(g.engine, g._input(f)) if f is not None else batch.plan_t2v(g.engine)
                for g, f in zip(gens, frames, strict=True)
            ]
            run = [i for i, p in enumerate(plans) if isinstance(p, batch.BlockPlan)]
            blocks = batch.run_blocks([gens[i].engine for i in run], [plans[i] for i in run])  # type: ignore[misc]
        except Exception:
            for g, s in zip(gens, saved, strict=True):
                batch.restore_state(g.engine, s)
            raise
        out: dict[int, tuple[torch.Tensor, bool]] = {}
        for i, blk in zip(run, blocks, strict=True):
            batch.finish(gens[i].engine, plans[i], blk)  # type: ignore[arg-type]
            out[i] = (blk, False)
        return [
            gens[i]._result(*(out[i] if i in out else (plans[i], True)), frames[i])  # type: ignore[arg-type]
            for i in range(len(gens))
        ]

    def observe(self, seconds: float, budget_s: float) -> None:
        if self.ladder is None:
            return
        level = self.ladder.observe(seconds, budget_s, self.frames_out)
        if level is not None:
            self.engine.set_level(level)

    def degrade(self) -> bool:
        lad = self.ladder
        if lad is None or lad.index + 1 >= len(lad.levels):
            return False
        lad.index += 1
        self.engine.set_level(lad.level)
        return True

    def cache_bytes(self, used: bool = False) -> int:
        """K/V buffers and master keys, plus the clean frames kept for recache ([S + W] frames); every
        slot is written once the stream is S + W + M frames long, so `used` counts them all."""
        eng, st = self.engine, self.engine.cache.stats()
        frames = (eng.cfg.sink_frames + eng.cfg.window_frames) * 3 * eng.h * eng.w * eng.dtype.itemsize
        return st.kv_bytes + frames

    def close(self) -> None:
        self.engine.cache.reset()


def generate_factory(model: GenModel):
    """An EngineFactory sharing one read-only model between sessions (each session owns its cache)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)

    def make(params: Mapping[str, ParamValue]) -> SessionEngine:
        with torch.no_grad():
            return GenerateEngine(model, params)

    return make
