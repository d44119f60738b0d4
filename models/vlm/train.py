"""Train the built-in model from scratch on shapes-world streams.

Each step takes B windows of `chunks_per_seq` consecutive chunks from B long-running training worlds
(a world lives for `windows_per_world` windows, then the next seed takes over), lays each window out
exactly as the engine fills the StreamCache (system prompt; per chunk <vision_start> visual tokens
<vision_end> then <silence> or the commentary and <eos>; sometimes a user question and its answer
and <eos>), with the same position ids (`streamrt.models.vlm.layout`), and minimises cross-entropy on
the model's own turns (silence/commentary and answers). Data is a pure function of (seed, step), so
a resumed run sees exactly the batches an uninterrupted one would.

The run directory is a loadable model directory from step 0 (config, tokenizer, streamrt.json;
weights saved with `save_pretrained` at every checkpoint) plus `checkpoint.pt` (weights, optimiser,
step) for resuming. Owns the training loop and its config; does not know the engine.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from streamrt.models.vlm.builtin import (
    EOS,
    RENDER_SIZE,
    SETTINGS,
    SILENCE,
    VIDEO_PAD,
    build_config,
    build_tokenizer,
    settings_json,
)
from streamrt.models.vlm.layout import chunk_positions, text_positions
from streamrt.models.vlm.loader import SETTINGS_FILE, load_adapter
from streamrt.models.vlm.qwen2_vl import Qwen2VLAdapter
from streamrt.models.vlm.shapes_data import TRAIN_SEED_BASE, ChunkSample, stream_chunks, world_config

log = logging.getLogger(__name__)
IGNORE = -100


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """One training run."""

    steps: int = 900
    """Optimiser steps."""
    batch: int = 8
    """Windows (sequences) per step."""
    chunks_per_seq: int = 4
    """Chunks per window (4 chunks of 2 frames at 2 fps = 4 s of stream): short windows have few
    distracting visual tokens, so the language model learns to find the objects sooner."""
    windows_per_world: int = 50
    """Consecutive windows taken from one world before the next seed (50 x 4 s = 200 s)."""
    question_rate: float = 0.5
    """Probability of a question after a chunk."""
    lr: float = 1.5e-3
    vision_lr_scale: float = 0.0
    """The vision tower learns at lr * this (0: frozen at its random initialisation). Trained at
    the full rate, or at 0.2x, it collapsed towards a constant output (the language model learns
    the text prior first and the tower follows its gradients); frozen random features keep every
    pixel difference."""
    warmup: int = 50
    weight_decay: float = 0.01
    seed: int = 0
    checkpoint_every: int = 50
    threads: int = 1


@dataclass(slots=True)
class Sequence:
    """One laid-out window."""

    ids: torch.Tensor  # [L] int64 (VIDEO_PAD where visual tokens go)
    labels: torch.Tensor  # [L] int64, IGNORE except where the next token is the model's own
    positions: torch.Tensor  # [3, L]
    patches: torch.Tensor  # [chunks * gh * gw, 3 * tp * p * p] float32
    grids: list[tuple[int, int, int]]  # per chunk, patch units


def init_run(out: Path, seed: int) -> None:
    """Write a fresh model directory (tokenizer, config, random weights, streamrt.json)."""
    from transformers import Qwen2VLForConditionalGeneration

    tok = build_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in tok.all_special_tokens}
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(build_config(len(tok), ids))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / SETTINGS_FILE).write_text(json.dumps(settings_json(), indent=2) + "\n")


def lay_out(adapter: Qwen2VLAdapter, samples: list[ChunkSample]) -> Sequence:
    """The window's tokens, targets and positions, as the engine's prefills would produce them."""
    ids: list[int] = []
    target: list[bool] = []
    pos: list[torch.Tensor] = []
    patches = []
    grids = []
    start = 0
    pad, eos, silence = (adapter.token_id(t) for t in (VIDEO_PAD, EOS, SILENCE))
    prefix, suffix = (
        adapter.encode(adapter.template.vision_prefix),
        adapter.encode(adapter.template.vision_suffix),
    )

    def text(t: list[int], is_target: bool) -> None:
        nonlocal start
        ids.extend(t)
        target.extend([is_target] * len(t))
        pos.append(text_positions(start, len(t), 3))
        start += len(t)

    text(adapter.system_ids(), False)
    for s in samples:
        p, (gt, gh, gw) = adapter.pixel_patches(s.frames)
        grid = (gt, gh // adapter.merge, gw // adapter.merge)
        n = grid[0] * grid[1] * grid[2]
        ids.extend(prefix + [pad] * n + suffix)
        target.extend([False] * (len(prefix) + n + len(suffix)))
        chunk_pos, span = chunk_positions(start, len(prefix), grid, len(suffix), interval=1.0, axes=3)
        pos.append(chunk_pos)
        start += span
        patches.append(torch.from_numpy(p))
        grids.append((gt, gh, gw))
        said = s.commentary
        text([silence] if said is None else adapter.encode(said) + [eos], True)
        if s.qa is not None:
            text(adapter.user_ids(s.qa.question), False)
            text(adapter.encode(s.qa.answer) + [eos], True)
    ids_t = torch.tensor(ids)
    tgt = torch.tensor(target)
    labels = torch.full_like(ids_t, IGNORE)
    labels[:-1] = torch.where(tgt[1:], ids_t[1:], IGNORE)  # logits at i predict token i+1
    return Sequence(ids_t, labels, torch.cat(pos, 1), torch.cat(patches), grids)


def sequence_logits(adapter: Qwen2VLAdapter, seqs: list[Sequence]) -> tuple[torch.Tensor, torch.Tensor]:
    """One batched forward of padded sequences -> (logits [B, L, V] fp32, labels [B, L])."""
    model = adapter.model
    pad_id = adapter.special.pad_id
    video_id = adapter.token_id(VIDEO_PAD)
    L = max(len(s.ids) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id)
    labels = torch.full((len(seqs), L), IGNORE)
    pos = torch.zeros(3, len(seqs), L, dtype=torch.long)
    for b, s in enumerate(seqs):
        n = len(s.ids)
        ids[b, :n], labels[b, :n], pos[:, b, :n] = s.ids, s.labels, s.positions
        pos[:, b, n:] = s.positions[:, -1:] + torch.arange(1, L - n + 1)  # padding after the end (masked)
    dev = adapter.device
    grid = torch.tensor([g for s in seqs for g in s.grids], device=dev)
    vis = model.model.visual(torch.cat([s.patches for s in seqs]).to(dev), grid_thw=grid).pooler_output
    x = model.model.language_model.embed_tokens(ids.to(dev))  # [B, L, D]
    x = x.masked_scatter((ids == video_id).to(dev)[..., None], vis.to(x.dtype))
    h = model.model.language_model(inputs_embeds=x, position_ids=pos.to(dev)).last_hidden_state
    return model.lm_head(h).float(), labels.to(dev)


class Batches:
    """Deterministic windows: batch of step s depends only on (seed, s)."""

    def __init__(self, adapter: Qwen2VLAdapter, cfg: TrainConfig) -> None:
        self.adapter, self.cfg = adapter, cfg
        self.block = -1
        self.streams: list = []

    def __call__(self, step: int) -> list[Sequence]:
        cfg = self.cfg
        block, window = divmod(step, cfg.windows_per_world)
        if block != self.block or not self.streams:
            chunk_s = SETTINGS.frames_per_chunk / SETTINGS.fps
            self.streams = [
                stream_chunks(
                    world_config(TRAIN_SEED_BASE + cfg.seed * 1_000_003 + block * cfg.batch + b),
                    fps=SETTINGS.fps,
                    frames_per_chunk=SETTINGS.frames_per_chunk,
                    render_size=RENDER_SIZE,
                    question_rate=cfg.question_rate,
                    qa_seed=cfg.seed * 7919 + block * cfg.batch + b,
                    start=window * cfg.chunks_per_seq * chunk_s,
                )
                for b in range(cfg.batch)
            ]
            self.block = block
        return [lay_out(self.adapter, [next(s) for _ in range(cfg.chunks_per_seq)]) for s in self.streams]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10%."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def train(out: Path, cfg: TrainConfig, resume: bool = True) -> dict[str, float]:
    """Run (or resume) training into `out`; returns final figures (loss, steps, seconds)."""
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    ckpt_path = out / "checkpoint.pt"
    if not (resume and ckpt_path.is_file()):
        init_run(out, cfg.seed)
    adapter = load_adapter(str(out))
    assert isinstance(adapter, Qwen2VLAdapter)
    model = adapter.model.train()
    if cfg.vision_lr_scale == 0:
        model.model.visual.requires_grad_(False)  # frozen: no backward through the tower
    groups = []
    for vision in (False, True):
        params = [
            (n, p) for n, p in model.named_parameters() if ("visual" in n) == vision and p.requires_grad
        ]
        scale = cfg.vision_lr_scale if vision else 1.0
        groups.append(
            {
                "params": [p for n, p in params if p.ndim >= 2],
                "weight_decay": cfg.weight_decay,
                "scale": scale,
            }
        )
        groups.append({"params": [p for n, p in params if p.ndim < 2], "weight_decay": 0.0, "scale": scale})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98))
    step, elapsed = 0, 0.0
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, weights_only=False)
        if state["config"] != asdict(cfg):
            log.warning("resuming with a different config than the checkpoint's: %s", state["config"])
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        step, elapsed = state["step"], state["elapsed"]
        log.info("resumed %s at step %d", out, step)
    torch.manual_seed(cfg.seed + step)
    batches = Batches(adapter, cfg)
    ema = None
    t0 = time.perf_counter() - elapsed
    bar = tqdm(total=cfg.steps, initial=step, desc="train vlm", unit="step")
    while step < cfg.steps:
        seqs = batches(step)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg) * g["scale"]
        logits, labels = sequence_logits(adapter, seqs)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        value = float(loss.detach())  # host sync: once per step, for the progress bar
        ema = value if ema is None else 0.95 * ema + 0.05 * value
        bar.update(1)
        bar.set_postfix(loss=f"{ema:.3f}", lr=f"{lr_at(step - 1, cfg):.1e}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save(out, adapter, opt, cfg, step, time.perf_counter() - t0)
    bar.close()
    return {"loss_ema": float(ema or 0.0), "steps": step, "seconds": time.perf_counter() - t0}


def save(
    out: Path,
    adapter: Qwen2VLAdapter,
    opt: torch.optim.Optimizer,
    cfg: TrainConfig,
    step: int,
    elapsed: float,
) -> None:
    """Weights as a loadable model directory, plus the resumable checkpoint (written atomically)."""
    adapter.model.save_pretrained(out)
    tmp = out / "checkpoint.pt.tmp"
    state = {
        "model": adapter.model.state_dict(),
        "optim": opt.state_dict(),
        "step": step,
        "elapsed": elapsed,
        "config": asdict(cfg),
    }
    torch.save(state, tmp)
    tmp.replace(out / "checkpoint.pt")
