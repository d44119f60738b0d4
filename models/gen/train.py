"""Training of the built-in generator: flow matching with per-block independent noise (diffusion forcing).

Each step draws shapes-world clips (data.py), a block size (1 or 2 frames) and, per clip, one of two
noise patterns: independent shifted noise levels per block (covers rolling-window and stream-batch
ladders) or an autoregressive pattern (blocks before k clean, block k noisy, later blocks pure noise:
the sequential block loop's regime). The DiT runs one dense forward under the block-causal frame mask;
the loss is the MSE of the predicted clean frames over frames that carry noise. A prompt-switch clip
(`ClipConfig.switch_p`) keeps its leading frames of another world clean, so they are context only.
Weights are averaged (EMA) and the EMA copy is what gets saved. Reproducible: one seed drives the
data, the noise and the initialisation.
Owns: the training loop and its record. Does not know the streaming engine.
"""

from __future__ import annotations

import copy
import logging
import math
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from streamrt.models.gen.data import ClipConfig, ClipSampler
from streamrt.models.gen.dit import DenseContext, GenModelConfig, block_causal_mask
from streamrt.models.gen.flow import noise_to, shift_t
from streamrt.models.gen.model import GenCheckpointError, GenModel, GenSpec
from streamrt.models.gen.text import shapes_world_vocab
from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GenTrainConfig:
    """Everything that determines a training run (same config -> same weights on the same machine)."""

    seed: int = 0
    steps: int = 1300
    batch: int = 8
    lr: float = 8e-4
    warmup: int = 100
    weight_decay: float = 0.01
    ema: float = 0.995
    shift: float = 3.0
    """Flow-matching timestep shift (training noise levels and the sampler's)."""
    ar_pattern_p: float = 0.5
    """Share of clips with the autoregressive noise pattern (the rest: independent per block)."""
    block_sizes: tuple[int, ...] = (1, 2)
    ckpt_every: int = 200
    object_weight: float = 1.0
    """Loss weight of the pixels on and around the object (the rest weigh 1): the object covers a few
    percent of a frame, so a plain MSE spends most of its signal on the empty background."""
    prompt_dropout: float = 0.0
    """Share of clips trained with the empty prompt (`GenModel.encode_null`): the unconditional
    prediction that classifier-free guidance contrasts with the prompted one."""
    init: str | None = None
    """Checkpoint folder to start from (continued training; its model config is used), else scratch."""
    model: GenModelConfig = field(
        default_factory=lambda: GenModelConfig(dim=96, heads=4, layers=4, ffn_mult=3)
    )
    clips: ClipConfig = field(default_factory=ClipConfig)


def noise_levels(
    n_blocks: int,
    block: int,
    batch: int,
    ar_p: float,
    shift: float,
    g: torch.Generator,
    context: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-frame noise levels [batch, n_blocks * block] (0 = clean); the first `context[b]` frames of
    clip b (a prompt switch's frames of another world) are clean, so they carry no loss."""
    u = shift_t(torch.rand(batch, n_blocks, generator=g), shift)  # independent per block
    ar = torch.rand(batch, generator=g) < ar_p
    k = torch.randint(0, n_blocks, (batch,), generator=g)
    idx = torch.arange(n_blocks)
    t_k = u.gather(1, k[:, None])
    ar_t = torch.where(idx < k[:, None], 0.0, torch.where(idx == k[:, None], t_k, 1.0))
    t = torch.where(ar[:, None], ar_t, u).repeat_interleave(block, dim=1)
    if context is not None:
        t = t.masked_fill(torch.arange(t.shape[1]) < context[:, None], 0.0)
    return t


def train(cfg: GenTrainConfig, out: Path, *, progress: bool = True) -> GenModel:
    """Train from scratch and save the EMA model to `out` (also every `ckpt_every` steps)."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    vocab = shapes_world_vocab()
    size = cfg.clips.size
    record: dict[str, object] = {"config": _jsonable(asdict(cfg)), "command": "streamrt train gen"}
    if cfg.init is not None:
        start = GenModel.load(cfg.init)
        if start.spec.vocab != vocab or (start.spec.height, start.spec.width) != (size, size):
            raise GenCheckpointError(f"{cfg.init}: vocabulary or frame size differs from this run's")
        record["config"]["model"] = start.spec.model.to_dict()  # type: ignore[index]
        record["init_train"] = start.spec.train
        model = GenModel(GenSpec(start.spec.model, vocab, size, size, cfg.shift, record))
        model.load_state_dict(start.state_dict())
        model.train()
    else:
        mcfg = GenModelConfig(**{**asdict(cfg.model), "vocab_size": len(vocab)})
        model = GenModel(GenSpec(mcfg, vocab, size, size, cfg.shift, record)).train()
    ema = copy.deepcopy(model).eval()
    record = ema.spec.train  # the saved copy's record (deepcopy made it a separate dict)
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    batches = _prefetch(ClipSampler(cfg.clips, cfg.seed), cfg.batch, cfg.steps)
    grid = model.dit.grid(size, size)
    n_frames = cfg.clips.frames
    t0, losses = time.perf_counter(), []
    bar = tqdm(range(cfg.steps), desc="train gen", unit="step", disable=not progress)
    for step in bar:
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) * (0.55 + 0.45 * math.cos(math.pi * step / cfg.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        x0, prompts, context = batches.get()  # x0: [B, F, 3, H, W]; context: [B] frames of another world
        block = cfg.block_sizes[int(torch.randint(len(cfg.block_sizes), (1,), generator=g))]
        n_blocks = n_frames // block
        x0 = x0[:, : n_blocks * block]
        t = noise_levels(n_blocks, block, cfg.batch, cfg.ar_pattern_p, cfg.shift, g, context)  # [B, F]
        eps = torch.randn(x0.shape, generator=g)
        ctx = DenseContext(grid, torch.arange(x0.shape[1]), block_causal_mask([block] * n_blocks))
        text = model.encode_prompts(prompts)  # [B, L, d]
        if cfg.prompt_dropout > 0:
            drop = torch.rand(cfg.batch, generator=g) < cfg.prompt_dropout  # [B]
            text = torch.where(drop[:, None, None], model.encode_null(), text)
        pred = model(noise_to(x0, eps, t), t, text, ctx)  # predicted x0
        w = (t > 0).float()[..., None, None, None]  # clean frames carry no target
        w = w * object_weights(x0, cfg.object_weight)  # [B, F, 1, H, W]
        loss = ((pred - x0) ** 2 * w).sum() / (w.sum() * pred.shape[2]).clamp(min=1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(cfg.ema, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)
        losses.append(loss.item())  # host sync: once per step, for the record and the bar
        bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}", lr=f"{lr:.1e}")
        if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps:
            record |= {"steps_done": step + 1, "wall_s": round(time.perf_counter() - t0, 1)}
            record["loss_last50"] = round(sum(losses[-50:]) / len(losses[-50:]), 5)
            ema.save(out)
            log.info("step %d: checkpoint saved to %s", step + 1, out)
    return ema


def object_weights(x0: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-pixel loss weights [B, F, 1, H, W]: `weight` on and within 2 px of the object, 1 elsewhere.

    The background of a shapes-world frame is one flat colour covering most of it, so the per-frame
    median colour is the background; a pixel more than 0.1 (in [-1, 1]) away from it in any channel
    is the object.
    """
    if weight == 1.0:
        return torch.ones_like(x0[:, :, :1])
    bg = x0.flatten(-2).median(dim=-1).values[..., None, None]  # [B, F, C, 1, 1]
    obj = ((x0 - bg).abs().amax(dim=2, keepdim=True) > 0.1).float()  # [B, F, 1, H, W]
    near = F.max_pool2d(obj.flatten(0, 1), 5, stride=1, padding=2).unflatten(0, obj.shape[:2])
    return 1.0 + (weight - 1.0) * near


Batch = tuple[torch.Tensor, list[str], torch.Tensor]
"""A `ClipSampler.batch`: clips, prompts, context frames."""


def _prefetch(sampler: ClipSampler, batch: int, steps: int) -> queue.Queue[Batch]:
    """Render batches in a thread, two ahead (bounded queue; the producer blocks, nothing is dropped)."""
    q: queue.Queue[Batch] = queue.Queue(maxsize=2)

    def produce() -> None:
        for _ in range(steps):
            q.put(sampler.batch(batch))

    threading.Thread(target=produce, name="gen-data", daemon=True).start()
    return q


def _jsonable(d: dict[str, object]) -> dict[str, object]:
    return {
        k: _jsonable(v) if isinstance(v, dict) else list(v) if isinstance(v, tuple) else v
        for k, v in d.items()
    }
