"""Train the built-in model from scratch on shapes-world streams.

Each step takes B windows of `chunks_per_seq` consecutive chunks from B long-running training worlds
(a world lives for `windows_per_world` windows, then the next seed takes over), lays each window out
exactly as the engine fills the StreamCache (system prompt; per chunk <vision_start> visual tokens
<vision_end> then <silence> or the commentary and <eos>; sometimes a user question and its answer
and <eos>), with the same position ids (`streamrt.models.vlm.layout`), and minimises cross-entropy on
the model's own turns (silence/commentary and answers).

Grounding: answers and commentary alone give a few labels per chunk, and a tiny model learns the
language prior long before it learns to read the frames. So training adds dense per-patch targets
(`shapes_data.patch_targets`): linear probes (`GroundingHeads`, training only, not saved in the model)
predict each visual token's colour and shape from the vision tower's output, and its colour, shape,
position word and "took part in an event" from the language model's hidden state after layer
`aux_layer`. Their cross-entropy, weighted by `aux_weight`, makes the tower keep colour and shape per
token and the language model carry them where its later layers can read them. Data is a pure function of (seed, step), so
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

import numpy as np
import torch
import torch.nn.functional as F
from streamrt.kernels import token_drop
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
from streamrt.models.vlm.shapes_data import (
    IGNORE,
    TRAIN_SEED_BASE,
    ChunkSample,
    patch_targets,
    referents,
    stream_chunks,
    world_config,
)

from streamrt.synth import COLOURS, POSITIONS, SHAPES
from streamrt.synth.language import plural

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """One training run."""

    steps: int = 8000
    """Optimiser steps (the schedule's length; a resumed run with a larger value continues it)."""
    batch: int = 8
    """Windows (sequences) per step."""
    chunks_per_seq: int = 2
    """Chunks per window (2 chunks of 2 frames at 2 fps = 2 s of stream): short windows have few
    distracting visual tokens, so the language model learns to find the objects sooner; a second
    phase with longer windows brings it closer to the engine's context (see the model card)."""
    windows_per_world: int = 50
    """Consecutive windows taken from one world before the next seed (50 x 4 s = 200 s)."""
    question_rate: float = 1.0
    """Probability of questions after a chunk."""
    questions_per_chunk: int = 4
    """Questions (of distinct types) asked after a chunk that gets questions: each is one more
    labelled example of reading the frame, at the cost of a few text tokens."""
    lr: float = 3e-3
    vision_lr_scale: float = 1.0
    """The vision tower learns at lr * this (0: frozen at its random initialisation). Without the
    grounding targets, a trainable tower collapsed towards a constant output; with them it learns
    colour and shape per token."""
    answer_weight: float = 3.0
    """Weight of the answers' loss (mean over answer tokens) next to the commentary's (mean over
    commentary and silence tokens)."""
    aux_weight: float = 0.5
    """Weight of the per-patch grounding losses (0: off)."""
    aux_layer: int = 1
    """Language-model layer whose output the hidden-state probes read (1 = after the first layer)."""
    attn_weight: float = 1.0
    """Weight of the attention-grounding loss: head 0 of layer `attn_layer`, at a question's last
    token, is trained to put its mass on the visual tokens of the objects the question names, and
    at a chunk's <vision_end> on those of the objects its events are about (-log of that mass).
    Teaches the model where to look; 0: off (and SDPA attention)."""
    attn_layer: int = -1
    """Language-model layer of that head (-1: the last)."""
    rope_theta: float = 100.0
    """RoPE base of the language model (sets the new model's config)."""
    patch_size: int = 8
    """Vision patch side in pixels (sets the new model's config)."""
    merge: int = 2
    """Patches merged per side into one language-model token (sets the new model's config). With 8x8
    patches merged 2x2 a frame gives as many tokens as with 16x16 patches unmerged, but the tower reads
    shape: a linear probe on its output tells an object's shape in 86% of tokens, against 34% with 16x16
    patches (5 shapes; the built-in model card has the figures)."""
    vision_only: bool = False
    """Train only the vision tower and its per-token colour and shape probes (no language model
    forward): a quick first phase for a new tower, before the language model learns to read it."""
    drop_p: float = 0.0
    """Share of windows trained through the engine's differential token drop (`drop_tokens`): the
    engine drops by default, so the model should know chunks that show only what changed."""
    drop_threshold: float = 0.9
    """Its similarity threshold (the engine's default `EngineConfig.drop_threshold`)."""
    drop_consistency: float = 0.0
    """Weight of the drop-consistency loss: on the windows sent through the drop, the KL divergence
    from the model's own next-token distributions on the same window without drop (computed without
    gradient) to those with drop, at every position the model speaks at. Trains the engine's
    "events unchanged with drop" directly; 0: off."""
    init: str = ""
    """A model directory to start from (its weights; fresh optimiser and schedule), e.g. the shipped
    model for a fine-tuning phase with other windows or question rates; "" = random weights."""
    init_vision: str = ""
    """A model directory whose vision tower (weights and configuration) replaces the starting model's,
    e.g. a `vision_only` run's tower under the shipped language model; "" = keep the tower."""
    warmup: int = 50
    weight_decay: float = 0.01
    seed: int = 0
    checkpoint_every: int = 250
    threads: int = 1


@dataclass(slots=True)
class Sequence:
    """One laid-out window."""

    ids: torch.Tensor  # [L] int64 (VIDEO_PAD where visual tokens go)
    labels: torch.Tensor  # [L] int64, IGNORE except where the next token is the model's own
    answer: torch.Tensor  # [L] bool: the label is a token of an answer to a question
    positions: torch.Tensor  # [3, L]
    patches: torch.Tensor  # [chunks * gh * gw, 3 * tp * p * p] float32
    grids: list[tuple[int, int, int]]  # per chunk, patch units
    targets: torch.Tensor  # [visual tokens, 4] int64: colour, shape, position, event per token
    ref_pos: torch.Tensor  # [Q] int64: position of each question's last token (it predicts the answer)
    ref_mask: torch.Tensor  # [Q, L] bool: the visual tokens showing the objects that question is about
    ref_words: torch.Tensor  # [Q, 2] int64: colour and shape word a question names (0 none, else 1 + index;
    # IGNORE for the commentary's rows)


class GroundingHeads(torch.nn.Module):
    """Linear probes for the per-patch targets (training only)."""

    def __init__(self, vision_dim: int, text_dim: int) -> None:
        super().__init__()
        sizes = (len(COLOURS) + 1, len(SHAPES) + 1, len(POSITIONS), 2)  # colour, shape, position, event
        self.vision = torch.nn.ModuleList(torch.nn.Linear(vision_dim, n) for n in sizes[:2])
        self.text = torch.nn.ModuleList(torch.nn.Linear(text_dim, n) for n in sizes)
        self.query = torch.nn.ModuleList(torch.nn.Linear(text_dim, n) for n in sizes[:2])

    def losses(self, fw: Forward) -> dict[str, torch.Tensor]:
        """Named cross-entropies: v* tower output and h* LM hidden state at the visual tokens against
        their patch targets, q* LM hidden state at each question's last token against the words it
        names (c colour, s shape, p position, e event)."""
        return (
            self.tower_losses(fw.vis, fw.targets)
            | _probe("h", self.text, fw.hid, fw.targets)
            | _probe("q", self.query, fw.ref_hid, fw.ref_words)
        )

    def tower_losses(self, vis: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """vc, vs: the tower's output [N, Dv] against its tokens' colour and shape targets [N, 4]."""
        return _probe("v", self.vision, vis, targets)


def _probe(
    name: str, heads: torch.nn.ModuleList, x: torch.Tensor, y: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Cross-entropy of head i on x [N, D] against column i of y [N, >= len(heads)], named name + 'cspe'[i]."""
    if not len(x):
        return {}
    return {
        f"{name}{'cspe'[i]}": F.cross_entropy(h(x), y[:, i], ignore_index=IGNORE) for i, h in enumerate(heads)
    }


def init_run(
    out: Path,
    seed: int,
    rope_theta: float = 10000.0,
    init: str = "",
    init_vision: str = "",
    patch_size: int = 8,
    merge: int = 2,
) -> None:
    """Write a fresh model directory (tokenizer, config, streamrt.json; random weights of the
    architecture `build_config` gives, or those of the model directory `init`, which must share the
    built-in tokenizer; with `init_vision`, that directory's vision tower in place of the starting one)."""
    from transformers import Qwen2VLForConditionalGeneration

    tok = build_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in tok.all_special_tokens}
    torch.manual_seed(seed)
    if init:
        model = Qwen2VLForConditionalGeneration.from_pretrained(init)
        if model.config.text_config.vocab_size != len(tok):
            raise ValueError(
                f"{init}: vocabulary of {model.config.text_config.vocab_size}, not the built-in {len(tok)}"
            )
    else:
        model = Qwen2VLForConditionalGeneration(build_config(len(tok), ids, rope_theta, patch_size, merge))
    if init_vision:
        model = with_tower(model, Qwen2VLForConditionalGeneration.from_pretrained(init_vision))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / SETTINGS_FILE).write_text(json.dumps(settings_json(), indent=2) + "\n")


def with_tower(model, donor):  # (Qwen2VLForConditionalGeneration, same) -> Qwen2VLForConditionalGeneration
    """A model with `model`'s language model and `donor`'s vision tower (weights and configuration)."""
    from transformers import Qwen2VLForConditionalGeneration

    width, text = donor.config.vision_config.hidden_size, model.config.text_config.hidden_size
    if width != text:
        raise ValueError(f"the donor tower outputs {width} features; the language model takes {text}")
    config = model.config
    config.vision_config = donor.config.vision_config
    out = Qwen2VLForConditionalGeneration(config)
    tower = {k: v for k, v in donor.state_dict().items() if k.startswith("model.visual.")}
    out.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith("model.visual.")} | tower
    )
    return out


def lay_out(adapter: Qwen2VLAdapter, samples: list[ChunkSample]) -> Sequence:
    """The window's tokens, targets and positions, as the engine's prefills would produce them."""
    ids: list[int] = []
    target: list[int] = []  # 0 not the model's, 1 commentary or silence, 2 answer
    pos: list[torch.Tensor] = []
    patches = []
    grids = []
    targets = []
    ref_pos: list[int] = []
    ref_words: list[tuple[int, int]] = []
    ref_rows: list[tuple[int, np.ndarray]] = []  # (first visual token index, mask over the chunk's tokens)
    start = 0
    pad, eos, silence = (adapter.token_id(t) for t in (VIDEO_PAD, EOS, SILENCE))
    prefix, suffix = (
        adapter.encode(adapter.template.vision_prefix),
        adapter.encode(adapter.template.vision_suffix),
    )

    def text(t: list[int], kind: int) -> None:
        nonlocal start
        ids.extend(t)
        target.extend([kind] * len(t))
        pos.append(text_positions(start, len(t), 3))
        start += len(t)

    text(adapter.system_ids(), 0)
    for s in samples:
        p, (gt, gh, gw) = adapter.pixel_patches(s.frames)
        grid = (gt, gh // adapter.merge, gw // adapter.merge)
        n = grid[0] * grid[1] * grid[2]
        first = len(ids) + len(prefix)
        ids.extend(prefix + [pad] * n + suffix)
        target.extend([0] * (len(prefix) + n + len(suffix)))
        chunk_pos, span = chunk_positions(start, len(prefix), grid, len(suffix), interval=1.0, axes=3)
        pos.append(chunk_pos)
        start += span
        patches.append(torch.from_numpy(p))
        grids.append((gt, gh, gw))
        t = patch_targets(s, SETTINGS.frame_size, SETTINGS.frame_size[0] // grid[1])
        targets.append(torch.from_numpy(np.stack([t.colour, t.shape, t.position, t.event], -1).reshape(n, 4)))
        owner = t.owner.reshape(n)
        moved = t.event.reshape(n).astype(bool)  # tokens of the objects the commentary is about
        if moved.any():
            ref_pos.append(len(ids) - 1)  # <vision_end>: predicts the commentary's first token
            ref_rows.append((first, moved))
            ref_words.append((IGNORE, IGNORE))
        said = s.commentary
        text([silence] if said is None else adapter.encode(said) + [eos], 1)
        for qa in s.qas:
            text(adapter.user_ids(qa.question), 0)
            shown = np.isin(owner, referents(qa, s.scene))
            if shown.any():
                ref_pos.append(len(ids) - 1)
                ref_rows.append((first, shown))
                ref_words.append(named_words(qa.question))
            text(adapter.encode(qa.answer) + [eos], 2)
    ids_t = torch.tensor(ids)
    tgt = torch.tensor(target)
    labels = torch.full_like(ids_t, IGNORE)
    labels[:-1] = torch.where(tgt[1:] > 0, ids_t[1:], IGNORE)  # logits at i predict token i+1
    answer = torch.zeros_like(tgt, dtype=torch.bool)
    answer[:-1] = tgt[1:] == 2
    ref_mask = torch.zeros((len(ref_rows), len(ids)), dtype=torch.bool)
    for q, (first, shown) in enumerate(ref_rows):
        ref_mask[q, first : first + len(shown)] = torch.from_numpy(shown)
    return Sequence(
        ids_t,
        labels,
        answer,
        torch.cat(pos, 1),
        torch.cat(patches),
        grids,
        torch.cat(targets),
        torch.tensor(ref_pos, dtype=torch.long),
        ref_mask,
        torch.tensor(ref_words, dtype=torch.long).reshape(-1, 2),
    )


def named_words(question: str) -> tuple[int, int]:
    """(colour, shape) a question names: 0 for none, else 1 + index in COLOURS / SHAPES."""
    words = question.rstrip("?").split()
    colour = next((i + 1 for i, c in enumerate(COLOURS) if c in words), 0)
    shape = next((i + 1 for i, sh in enumerate(SHAPES) if sh in words or plural(sh) in words), 0)
    return colour, shape


@dataclass(slots=True)
class Forward:
    """One batched forward of padded windows."""

    logits: torch.Tensor  # [B, L, V] fp32
    labels: torch.Tensor  # [B, L]
    answer: torch.Tensor  # [B, L] bool
    vis: torch.Tensor  # [N, Dv] vision tower output of every kept visual token, batch order
    hid: torch.Tensor  # [N, Dt] LM hidden state after layer `aux_layer` at the same tokens
    targets: torch.Tensor  # [N, 4] per-token grounding targets
    ref_mass: torch.Tensor | None  # [Q] attention mass of the probed head on each question's objects
    ref_hid: torch.Tensor  # [Q, Dt] LM hidden state after layer `aux_layer` at each question's last token
    ref_words: torch.Tensor  # [Q, 2]


def drop_tokens(
    seq: Sequence, vis: torch.Tensor, video_id: int, threshold: float, merge: int = 1
) -> tuple[Sequence, torch.Tensor]:
    """The window as the engine's differential token drop leaves it (`streamrt.kernels.token_drop`, as
    `engine.encoder.ChunkEncoder` calls it): in every chunk after the window's first, the visual tokens
    whose features are more similar than `threshold` to the same token of the previous chunk's last
    frame are removed, with their targets; every other token keeps its position and its labels. An
    attention target left without a visual token is removed too.

    vis: [N, D] this window's visual features (chunk order). Returns the window and the kept rows of vis.
    """
    keep = torch.zeros(len(vis), dtype=torch.bool)
    prev: torch.Tensor | None = None  # [h*w, D] last frame of the previous chunk
    start = 0
    for gt, gh, gw in seq.grids:
        n = gt * (gh // merge) * (gw // merge)  # this chunk's visual tokens
        feats = vis[start : start + n].detach().reshape(gt, n // gt, -1)  # [t, h*w, D]
        keep[start + token_drop(feats, prev, threshold=threshold).cpu()] = True
        prev, start = feats[-1], start + n
    row = torch.ones(len(seq.ids), dtype=torch.bool)
    row[seq.ids == video_id] = keep  # visual tokens appear in the sequence in chunk order
    new = torch.cumsum(row, 0) - 1  # old index -> new index of the rows kept
    ref_mask = seq.ref_mask[:, row]
    shown = ref_mask.any(1)  # attention targets whose objects' tokens were all dropped go
    dropped = Sequence(
        seq.ids[row],
        seq.labels[row],  # a dropped visual token never precedes one of the model's own tokens
        seq.answer[row],
        seq.positions[:, row],
        seq.patches,
        seq.grids,
        seq.targets[keep],
        new[seq.ref_pos[shown]],  # <vision_end> and question tokens: never dropped
        ref_mask[shown],
        seq.ref_words[shown],
    )
    return dropped, vis[keep.to(vis.device)]


def forward(
    adapter: Qwen2VLAdapter,
    seqs: list[Sequence],
    aux_layer: int = 1,
    attn_layer: int | None = None,
    drop: list[bool] | None = None,
    threshold: float = 0.9,
) -> Forward:
    """Pad `seqs` into one batch and run the model once (see `Forward`). With `attn_layer`, the
    model must run eager attention: head 0 of that layer is read at each question's last token.
    `drop[b]`: window b goes through the engine's differential token drop at `threshold` first."""
    model = adapter.model
    pad_id = adapter.special.pad_id
    video_id = adapter.token_id(VIDEO_PAD)
    dev = adapter.device
    vis = tower(adapter, seqs)
    if drop is not None and any(drop):
        parts = [
            drop_tokens(s, v, video_id, threshold, adapter.merge) if d else (s, v)
            for s, v, d in zip(seqs, vis.split([len(s.targets) for s in seqs]), drop, strict=True)
        ]
        seqs, vis = [p[0] for p in parts], torch.cat([p[1] for p in parts])
    L = max(len(s.ids) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id)
    labels = torch.full((len(seqs), L), IGNORE)
    answer = torch.zeros((len(seqs), L), dtype=torch.bool)
    pos = torch.zeros(3, len(seqs), L, dtype=torch.long)
    for b, s in enumerate(seqs):
        n = len(s.ids)
        ids[b, :n], labels[b, :n], answer[b, :n], pos[:, b, :n] = s.ids, s.labels, s.answer, s.positions
        pos[:, b, n:] = s.positions[:, -1:] + torch.arange(1, L - n + 1)  # padding after the end (masked)
    x = model.model.language_model.embed_tokens(ids.to(dev))  # [B, L, D]
    is_vis = (ids == video_id).to(dev)
    x = x.masked_scatter(is_vis[..., None], vis.to(x.dtype))
    out = model.model.language_model(
        inputs_embeds=x,
        position_ids=pos.to(dev),
        output_hidden_states=aux_layer > 0,
        output_attentions=attn_layer is not None,
    )
    hs = out.hidden_states[aux_layer] if aux_layer > 0 else out.last_hidden_state
    ref_hid = torch.cat([hs[b, s.ref_pos.to(dev)] for b, s in enumerate(seqs)])
    ref_words = torch.cat([s.ref_words for s in seqs]).to(dev)
    ref_mass = None
    if attn_layer is not None:
        att = out.attentions[attn_layer][:, 0]  # [B, L, L] head 0
        ref_mass = torch.cat(
            [
                (att[b, s.ref_pos.to(dev), : len(s.ids)] * s.ref_mask.to(dev)).sum(-1)
                for b, s in enumerate(seqs)
            ]
        )  # [Q]
    hid = hs[is_vis]
    targets = torch.cat([s.targets for s in seqs]).to(dev)
    logits = model.lm_head(out.last_hidden_state).float()
    return Forward(logits, labels.to(dev), answer.to(dev), vis, hid, targets, ref_mass, ref_hid, ref_words)


def tower(adapter: Qwen2VLAdapter, seqs: list[Sequence]) -> torch.Tensor:
    """The vision tower's output for every visual token of `seqs` [N, Dv] (batch, then chunk order)."""
    grid = torch.tensor([g for s in seqs for g in s.grids], device=adapter.device)
    patches = torch.cat([s.patches for s in seqs]).to(adapter.device)
    return adapter.model.model.visual(patches, grid_thw=grid).pooler_output


def drop_consistency(
    adapter: Qwen2VLAdapter, seqs: list[Sequence], drop: list[bool], fw: Forward
) -> torch.Tensor:
    """Mean KL(p_full || p_drop) over the labelled positions of the dropped windows: p_full from a
    forward of those windows without drop (no gradient: the target), p_drop from `fw` (the step's
    forward, `drop` applied). A drop removes visual tokens only, so the labelled positions of a window
    are the same text tokens in the same order with and without it."""
    full_seqs = [s for s, d in zip(seqs, drop, strict=True) if d]
    with torch.no_grad():
        full = forward(adapter, full_seqs, aux_layer=0)  # logits only: no hidden states to keep
    rows = torch.tensor(drop, device=fw.logits.device)
    p_full = full.logits[full.labels != IGNORE]  # [N, V]
    q_drop = fw.logits[rows][fw.labels[rows] != IGNORE]  # [N, V], the same tokens in the same order
    return F.kl_div(
        F.log_softmax(q_drop, -1), F.log_softmax(p_full, -1), log_target=True, reduction="batchmean"
    )


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
                    questions_per_chunk=cfg.questions_per_chunk,
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
        init_run(out, cfg.seed, cfg.rope_theta, cfg.init, cfg.init_vision, cfg.patch_size, cfg.merge)
    adapter = load_adapter(str(out))
    assert isinstance(adapter, Qwen2VLAdapter)
    model = adapter.model.train()
    if cfg.vision_lr_scale == 0:
        model.model.visual.requires_grad_(False)  # frozen: no backward through the tower
    if cfg.vision_only:
        model.model.language_model.requires_grad_(False)
        model.lm_head.requires_grad_(False)
    text_cfg = model.config.text_config
    attn_layer = cfg.attn_layer % text_cfg.num_hidden_layers
    if cfg.attn_weight > 0:
        model.set_attn_implementation("eager")  # attention weights are read; training only
    heads = GroundingHeads(model.config.vision_config.hidden_size, text_cfg.hidden_size).to(adapter.device)
    groups = []
    for vision in (False, True):
        params = [
            (n, p) for n, p in model.named_parameters() if ("visual" in n) == vision and p.requires_grad
        ]
        if not vision:
            params += list(heads.named_parameters())
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
        heads.load_state_dict(state["heads"])
        opt.load_state_dict(state["optim"])
        step, elapsed = state["step"], state["elapsed"]
        log.info("resumed %s at step %d", out, step)
    torch.manual_seed(cfg.seed + step)
    batches = Batches(adapter, cfg)
    ema: dict[str, float] = {}
    t0 = time.perf_counter() - elapsed
    bar = tqdm(total=cfg.steps, initial=step, desc="train vlm", unit="step")
    while step < cfg.steps:
        seqs = batches(step)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg) * g["scale"]
        if cfg.vision_only:
            losses = heads.tower_losses(tower(adapter, seqs), torch.cat([s.targets for s in seqs]))
            loss = sum(losses.values())
        else:
            losses, loss = step_losses(adapter, heads, seqs, cfg, attn_layer, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        opt.step()
        step += 1
        for k, v in losses.items():  # one host sync per loss and step, for the progress bar
            ema[k] = float(v.detach()) if k not in ema else 0.95 * ema[k] + 0.05 * float(v.detach())
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in ema.items()} | {"lr": f"{lr_at(step - 1, cfg):.1e}"})
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save(out, adapter, heads, opt, cfg, step, time.perf_counter() - t0)
    bar.close()
    return {
        "loss_ema": ema.get("lm", ema.get("vs", 0.0)),
        "steps": step,
        "seconds": time.perf_counter() - t0,
    } | {f"aux_{k}": v for k, v in ema.items() if k != "lm"}


def step_losses(
    adapter: Qwen2VLAdapter,
    heads: GroundingHeads,
    seqs: list[Sequence],
    cfg: TrainConfig,
    attn_layer: int,
    step: int,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The named losses of one step of the full model and their weighted sum."""
    drop = None
    if cfg.drop_p > 0:  # a function of (seed, step), like the data: resuming stays exact
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        drop = (torch.rand(len(seqs), generator=g) < cfg.drop_p).tolist()
    fw = forward(
        adapter,
        seqs,
        cfg.aux_layer,
        attn_layer if cfg.attn_weight > 0 else None,
        drop,
        cfg.drop_threshold,
    )
    said, answered = fw.labels.masked_fill(fw.answer, IGNORE), fw.labels.masked_fill(~fw.answer, IGNORE)
    losses = {
        k: F.cross_entropy(fw.logits.flatten(0, 1), lab.flatten(), ignore_index=IGNORE)
        for k, lab in (("lm", said), ("qa", answered))
    }
    if cfg.aux_weight > 0:
        losses |= heads.losses(fw)
    if fw.ref_mass is not None and len(fw.ref_mass):
        losses["at"] = -torch.log(fw.ref_mass.clamp_min(1e-6)).mean()
    if cfg.drop_consistency > 0 and drop is not None and any(drop):
        losses["dc"] = drop_consistency(adapter, seqs, drop, fw)
    loss = losses["lm"] + cfg.answer_weight * losses["qa"] + cfg.drop_consistency * losses.get("dc", 0.0)
    loss = loss + cfg.aux_weight * sum(v for k, v in losses.items() if k not in ("lm", "qa", "at", "dc"))
    loss = loss + cfg.attn_weight * losses.get("at", 0.0)
    return losses, loss


def save(
    out: Path,
    adapter: Qwen2VLAdapter,
    heads: GroundingHeads,
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
        "heads": heads.state_dict(),
        "optim": opt.state_dict(),
        "step": step,
        "elapsed": elapsed,
        "config": asdict(cfg),
    }
    torch.save(state, tmp)
    tmp.replace(out / "checkpoint.pt")
