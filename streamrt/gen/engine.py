"""The streaming generation engine: a block loop over a FrameCache, forever, one prompt at a time.

Owns: the FrameCache of one stream, the prompt (its token states, cached per prompt text), the
in-flight blocks of the pipelined schedules, the noise generator, the current degrade level and the
counters (recaches, hard cuts, flushed blocks, skipped inputs). Produces clean frames as tensors
[1, F, 3, H, W] in [-1, 1] (`next_block`, `transform`); `frames_of` turns them into `GenFrame`s.

Schedules (GenEngineConfig.schedule):
- sequential: per block, `steps` denoise steps (Euler or re-noising: `advance`), each a forward whose K/V overwrite the block's in-flight
  slots; then one clean pass (t = 0) whose K/V are committed, and the pointers advance once.
- rolling: one forward over [last clean block | `steps` noisy 1-frame blocks at rising noise levels],
  block-causal inside; every noisy block moves one step; the oldest leaves clean and is emitted; its
  clean K/V are written (and committed) by the next forward, so the clean pass costs no extra forward.
- stream_batch: as rolling, but each in-flight block sees only the committed cache and itself
  (StreamDiffusion's batch of denoise stages, packed in one forward).
Prompt switch: KV-recache (kept frames re-encoded under the new prompt) or hard cut (cache reset);
in-flight noisy blocks of the old prompt are flushed either way. Video-to-video (`transform`, sequential
only): input frames are noised to `v2v_strength` and denoised with the prompt and cached context;
near-identical inputs are skipped. What it does not know: wall-clock deadlines (see degrade.py and
stream.py) and the model's internals (it calls `model(x, t, text, cache)`).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from streamrt.cache.frame import FrameCache, FrameCacheConfig, PositionPolicy
from streamrt.gen.config import GenConfigError, GenEngineConfig, PromptSwitch
from streamrt.gen.types import GenFrame, Level
from streamrt.models.gen.data import to_pixels
from streamrt.models.gen.flow import noise_to, step, timesteps
from streamrt.models.gen.model import GenModel

log = logging.getLogger(__name__)
NULL_PROMPT = object()  # the FrameCache's key for the empty prompt's cross-attention K/V (guidance)


def _patch_change(a: Tensor, b: Tensor) -> float:
    """Largest mean |a - b| over 8x8 patches of frames [1, F, C, H, W]."""
    d = (a - b).abs().mean(dim=2)  # [1, F, H, W]
    return F.avg_pool2d(d, 8, ceil_mode=True).max().item()


@dataclass(slots=True)
class _InFlight:
    x: Tensor  # [1, b, C, H, W] current noisy state
    step: int  # denoise steps done
    born: float  # perf_counter when the block entered the pipeline


def advance(
    sampler: str, x: Tensor, x0: Tensor, t_from: Tensor, t_to: Tensor, noise: Callable[[int], Tensor]
) -> Tensor:
    """One denoise step of x [B, b, C, H, W] from level t_from to t_to given the predicted clean frames
    x0 (`GenEngineConfig.sampler`): "euler" follows the flow; "renoise" draws fresh noise [B, b, ...]
    from `noise(b)` (the engine's seeded generator) and puts x0 at level t_to. The last step (t_to = 0)
    is x0 under both and draws nothing."""
    if sampler == "renoise" and float(t_to) > 0:  # host sync: one scalar of a CPU schedule
        b = x.shape[1]
        return noise_to(x0, noise(b).to(x0.dtype), t_to.expand(x.shape[0], b))
    return step(x, x0, t_from, t_to)


class GenEngine:
    """One endless generated stream (see module docstring)."""

    def __init__(
        self,
        model: GenModel,
        cfg: GenEngineConfig | None = None,
        *,
        height: int | None = None,
        width: int | None = None,
        policy: PositionPolicy | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.model = model.eval()
        self.cfg = cfg = cfg or GenEngineConfig()
        spec, m = model.spec, model.spec.model
        self.h, self.w = height or spec.height, width or spec.width
        self.grid = model.dit.grid(self.h, self.w)
        trained = int(spec.train.get("config", {}).get("clips", {}).get("frames", 0)) if spec.train else 0  # type: ignore[union-attr]
        if trained and cfg.context_frames() > trained:
            log.warning(
                "cache spans %d frame positions; the model was trained on %d", cfg.context_frames(), trained
            )
        cc = FrameCacheConfig(
            m.layers,
            m.heads,
            m.head_dim,
            self.grid.tokens_per_frame,
            cfg.sink_frames,
            cfg.window_frames,
            cfg.max_inflight(),
        )
        self.dtype = dtype
        self.cache = FrameCache(cc, self.grid, policy=policy, dtype=dtype)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.level = Level(cfg.steps, cfg.block)
        self.prompt: str | None = None
        self.text: Tensor | None = None  # [1, L, d]
        self._null: Tensor | None = None  # [1, L, d] the empty prompt (guidance), encoded on first use
        self.guidance = spec.guidance if cfg.guidance is None else cfg.guidance
        self.sampler = cfg.sampler or spec.sampler
        self._texts: OrderedDict[str, Tensor] = OrderedDict()  # prompt -> token states (bounded, 8)
        self._pending: Tensor | None = None  # pipelined: emitted clean block whose K/V are not committed yet
        self._noisy: list[_InFlight] = []
        self._last_in: Tensor | None = None
        self._last_out: Tensor | None = None
        self._inputs = 0
        self.emitted = 0
        self.last_born = 0.0  # perf_counter when the last emitted block entered (latency = emit - born)
        self.counters = {
            "recaches": 0,
            "hard_cuts": 0,
            "flushed_blocks": 0,
            "v2v_skipped": 0,
            "v2v_strided": 0,
        }

    # ---- prompts -----------------------------------------------------------------------------------
    @torch.no_grad()
    def _encode(self, prompt: str) -> Tensor:
        if prompt not in self._texts:
            self._texts[prompt] = self.model.encode_prompts([prompt]).to(self.dtype)
            while len(self._texts) > 8:
                self._texts.popitem(last=False)
        self._texts.move_to_end(prompt)
        return self._texts[prompt]

    @torch.no_grad()
    def set_prompt(self, prompt: str, mode: PromptSwitch | None = None) -> None:
        """Switch the prompt; later frames follow it. Stale in-flight frames of the old prompt are flushed."""
        text = self._encode(prompt)
        if prompt == self.prompt:
            return
        self._flush()
        mode = mode or self.cfg.prompt_switch or self.model.spec.prompt_switch
        kept = None
        if self.cache.committed or self._pending is not None:
            if mode == "hard_cut":  # a new stream: nothing of the old one is kept
                self.counters["hard_cuts"] += 1
                self._last_in = self._last_out = None
            else:
                if self._pending is not None:  # an emitted frame: part of the stream, committed first
                    self._commit(self._pending)
                kept = self.cache.kept_frames()
            self._pending = None
            self.cache.reset()
        self.prompt, self.text = prompt, text
        self.cache.set_prompt(prompt)
        if kept is not None:
            self.recache(kept)
        log.info("prompt -> %r (%s)", prompt, mode)

    def recache(self, frames: Tensor) -> None:
        """Rebuild the cache from clean frames [1, n, C, H, W] under the current prompt (block by block)."""
        b = self.level.block_frames
        for s in range(0, frames.shape[1], b):
            self._commit(frames[:, s : s + b])
        self.counters["recaches"] += 1

    def _flush(self) -> None:
        if self._noisy:
            self.counters["flushed_blocks"] += len(self._noisy)
            self._noisy.clear()

    # ---- levels ------------------------------------------------------------------------------------
    def set_level(self, level: Level) -> None:
        """Apply a degrade-ladder rung from the next block on (pipelined schedules flush their stages)."""
        if self.cfg.pipelined and level.steps != self.level.steps:
            self._flush()
        if level.block_frames > self.cache.cfg.max_inflight_frames:
            raise GenConfigError(f"block of {level.block_frames} frames exceeds the cache's in-flight region")
        self.level = level

    # ---- the block loop ------------------------------------------------------------------------------
    def _ts(self, steps: int, strength: float = 1.0) -> Tensor:
        s = self.model.spec.shift
        start = strength / (s - (s - 1) * strength)  # un-shift: the shifted schedule starts at `strength`
        return timesteps(steps, s, start).to(self.dtype)

    def _forward(self, x: Tensor, t: Tensor) -> Tensor:
        assert self.text is not None
        return self.model(x, t, self.text, self.cache)

    def guiding(self) -> bool:
        """Whether the next block's denoise forwards run classifier-free guidance: a scale other than 1,
        a rung of the degrade ladder that keeps it, and fewer frames committed than `guidance_frames`."""
        frames = self.cfg.guidance_frames
        return (
            self.guidance != 1.0 and self.level.guided and (frames is None or self.cache.committed < frames)
        )

    def null_text(self) -> Tensor:
        """The empty prompt's token states [1, L, d] (guidance), encoded on first use."""
        if self._null is None:
            self._null = self.model.encode_null().to(self.dtype)
        return self._null

    def _guided(self, x: Tensor, t: Tensor) -> Tensor:
        """A denoise forward with classifier-free guidance when `guiding()`: x0_null + w (x0_prompt -
        x0_null). Both read the cached context as it was committed (under the prompt); the clean pass
        that commits the block runs under the prompt alone."""
        if not self.guiding():
            return self._forward(x, t)
        self.cache.set_prompt(NULL_PROMPT)
        x0_null = self.model(x, t, self.null_text(), self.cache)
        self.cache.set_prompt(self.prompt)
        return torch.lerp(x0_null, self._forward(x, t), self.guidance)

    def _noise(self, frames: int) -> Tensor:
        return torch.randn(1, frames, 3, self.h, self.w, generator=self.gen).to(self.dtype)

    def _commit(self, x: Tensor) -> None:
        """Clean pass (t = 0) over x [1, b, ...]: its K/V are committed and the pointers advance once."""
        b = x.shape[1]
        assert self.text is not None
        self.cache.begin_pass([b], clean_frames=b)
        self.model.write_kv(x, torch.zeros(1, b, dtype=self.dtype), self.text, self.cache)  # no output needed
        self.cache.commit(x)

    def _denoise(self, x: Tensor, ts: Tensor) -> Tensor:
        """Flow steps along ts for the in-flight block x; each pass overwrites the same K/V slots."""
        b = x.shape[1]
        for i in range(len(ts) - 1):
            self.cache.begin_pass([b])
            x = advance(self.sampler, x, self._guided(x, ts[i].expand(1, b)), ts[i], ts[i + 1], self._noise)
        return x.clamp(-1, 1)

    @torch.no_grad()
    def next_block(self) -> Tensor | None:
        """Generate the next block: [1, b, 3, H, W] in [-1, 1] (None while a pipeline fills)."""
        if self.text is None:
            raise GenConfigError("set_prompt before generating")
        if self.cfg.pipelined:
            out = self._pipelined_tick()
        else:
            self.last_born = time.perf_counter()
            steps = self.cfg.first_block_steps if self.cache.committed == 0 else self.level.steps
            out = self._denoise(self._noise(self.level.block_frames), self._ts(steps))
            self._commit(out)
        if out is not None:
            self.emitted += out.shape[1]
        return out

    def _pipelined_tick(self) -> Tensor | None:
        s = self.level.steps
        ts = self._ts(s)
        if len(self._noisy) < s:
            self._noisy.append(_InFlight(self._noise(1), 0, time.perf_counter()))
        parts = ([self._pending] if self._pending is not None else []) + [blk.x for blk in self._noisy]
        clean = 0 if self._pending is None else self._pending.shape[1]
        t = torch.cat(
            [torch.zeros(clean, dtype=self.dtype), torch.stack([ts[blk.step] for blk in self._noisy])]
        )
        mask = "causal" if self.cfg.schedule == "rolling" else "diagonal"
        self.cache.begin_pass([p.shape[1] for p in parts], clean_frames=clean, mask=mask)
        x0 = self._forward(torch.cat(parts, dim=1), t[None])  # predicted clean frames
        if self._pending is not None:
            self.cache.commit(self._pending)  # its clean K/V were written by this forward
            self._pending = None
        for i, blk in enumerate(self._noisy):
            blk.x = advance(
                self.sampler,
                blk.x,
                x0[:, clean + i : clean + i + 1],
                ts[blk.step],
                ts[blk.step + 1],
                self._noise,
            )
            blk.step += 1
        if self._noisy[0].step < s:
            return None
        done = self._noisy.pop(0)
        self.last_born = done.born
        self._pending = done.x.clamp(-1, 1)
        return self._pending

    # ---- video to video -------------------------------------------------------------------------------
    @torch.no_grad()
    def transform(self, frames: Tensor) -> tuple[Tensor, bool]:
        """Restyle input frames [1, b, 3, H, W] in [-1, 1]; returns (output like frames, repeated?).

        The input is noised to `v2v_strength` and denoised with the prompt and the cached context. An
        input nearly identical to the last processed one (or skipped by the degrade stride) repeats the
        last output and leaves the cache untouched.
        """
        if self.cfg.pipelined:
            raise GenConfigError("video-to-video runs with the sequential schedule")
        if self.text is None:
            raise GenConfigError("set_prompt before transforming")
        frames = frames.to(self.dtype)
        self._inputs += 1
        if self._last_out is not None and self._last_out.shape == frames.shape:
            if self.level.input_stride > 1 and self._inputs % self.level.input_stride:
                self.counters["v2v_strided"] += 1
                return self._last_out, True
            assert self._last_in is not None
            if _patch_change(frames, self._last_in) < self.cfg.v2v_similarity:  # host sync: one scalar
                self.counters["v2v_skipped"] += 1
                return self._last_out, True
        ts = self._ts(self.level.steps, self.cfg.v2v_strength)
        x = noise_to(frames, self._noise(frames.shape[1]), ts[0].expand(1, frames.shape[1]))
        out = self._denoise(x, ts)
        self._commit(out)
        self._last_in, self._last_out = frames, out
        self.emitted += out.shape[1]
        return out, False

    # ---- output --------------------------------------------------------------------------------------
    def frames_of(self, block: Tensor, first_index: int, repeated: bool = False) -> list[GenFrame]:
        """[1, b, 3, H, W] -> GenFrames with stream timestamps."""
        pix = to_pixels(block[0].float())
        fps = self.cfg.fps
        prompt = self.prompt or ""
        return [
            GenFrame(first_index + i, (first_index + i) / fps, np.ascontiguousarray(p), prompt, repeated)
            for i, p in enumerate(pix)
        ]
