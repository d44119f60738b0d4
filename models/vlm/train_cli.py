"""`streamrt train vlm`: train the built-in shapes-world vision-language model from scratch.

Thin command layer over `streamrt.models.vlm.train` (argument parsing, logging, summary); torch is
imported inside `run`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "train the tiny built-in vision-language model on shapes-world streams"
DESCRIPTION = """\
Trains a tiny Qwen2-VL-architecture model and its word-level tokenizer from scratch on generated
shapes-world streams (2 fps, chunks of 2 frames at 128x80): per-chunk commentary of events or a
silence token, and answers to questions about the current state. New models read 8x8-pixel patches
merged 2x2 into one token (--patch-size, --merge). Besides the text loss, training
uses grounding targets the generator knows: per-patch colour/shape/position/event labels read by
linear probes, and an attention target that makes one head look at the objects a question (or a
chunk's events) is about. Seeded and reproducible; the data of every step is a function of (seed,
step). OUT is a loadable model directory from the start (config, tokenizer, streamrt.json; weights at
each checkpoint) plus checkpoint.pt; rerunning the command resumes from the last checkpoint, and a
larger --steps extends the schedule (how the shipped model got its second, longer-window phase).

examples:
  # 8000 steps of 2-chunk windows, then 2000 of 4-chunk windows (the first two of the shipped model's
  # nine phases, on its first tower; assets/vlm/builtin/README.md lists them all)
  streamrt train vlm --out runs/vlm --patch-size 16 --merge 1
  streamrt train vlm --out runs/vlm --patch-size 16 --merge 1 --steps 10000 --chunks 4 --questions 3
  streamrt train vlm --out runs/smoke --steps 50                  # a quick smoke run
  # a new vision tower under a trained language model (phases 5-7 of the shipped model): the tower
  # alone, then the whole model on short question-dense windows, then on streaming windows
  streamrt train vlm --out runs/vis --vision-only --windows-per-world 1 --steps 5000 --lr 2e-3
  streamrt train vlm --out runs/vlm-vA --init runs/vlm-d1 --init-vision runs/vis --steps 2500 --lr 1e-3
  streamrt train vlm --out runs/vlm-vB --init runs/vlm-vA --chunks 8 --question-rate 0.3 --questions 2 \\
      --drop-p 0.5 --steps 2000 --lr 1e-3
  STREAMRT_BENCH_VLM_MODEL=runs/vlm streamrt bench vlm-quality --repeats 1 --warmup 0   # score it
"""


# (flag, TrainConfig field, help); the type and the default come from TrainConfig
OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("--steps", "steps", "optimiser steps"),
    ("--batch", "batch", "windows per step"),
    ("--chunks", "chunks_per_seq", "chunks per window"),
    ("--windows-per-world", "windows_per_world", "consecutive windows taken from one world"),
    ("--question-rate", "question_rate", "chance of questions after a chunk"),
    ("--questions", "questions_per_chunk", "questions per questioned chunk"),
    ("--answer-weight", "answer_weight", "weight of the answers' loss"),
    ("--attn-weight", "attn_weight", "weight of the attention-grounding loss"),
    ("--rope-theta", "rope_theta", "RoPE base of a new model"),
    ("--aux-weight", "aux_weight", "weight of the per-patch grounding losses"),
    ("--lr", "lr", "peak learning rate"),
    ("--vision-lr-scale", "vision_lr_scale", "vision tower learning-rate factor"),
    ("--drop-p", "drop_p", "share of windows trained through the engine's token drop"),
    ("--drop-threshold", "drop_threshold", "similarity threshold of that drop"),
    ("--drop-consistency", "drop_consistency", "weight of the KL from the no-drop output on dropped windows"),
    ("--init", "init", "start from this model directory's weights (default: random weights)"),
    ("--init-vision", "init_vision", "take the vision tower (weights and shape) from this model directory"),
    ("--vision-only", "vision_only", "train only the vision tower and its colour/shape probes"),
    ("--patch-size", "patch_size", "vision patch side in pixels of a new model"),
    ("--merge", "merge", "patches merged per side into one token in a new model"),
    ("--seed", "seed", "seed of weights and data"),
    ("--threads", "threads", "torch threads"),
    ("--checkpoint-every", "checkpoint_every", "steps between checkpoints"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from streamrt.models.vlm.train import TrainConfig

    d = TrainConfig()
    parser.add_argument("--out", type=Path, required=True, help="run / model directory")
    for flag, field, text in OPTIONS:
        default = getattr(d, field)
        if isinstance(default, bool):
            parser.add_argument(flag, dest=field, action="store_true", help=text)
            continue
        parser.add_argument(
            flag,
            dest=field,
            metavar=flag[2:].upper().replace("-", "_"),
            type=type(default),
            default=default,
            help=text if default == "" else f"{text} (default {default:g})",
        )
    parser.add_argument("--no-resume", action="store_true", help="start over even if OUT has a checkpoint")


def run(args: argparse.Namespace) -> int:
    from streamrt.models.vlm.train import TrainConfig, train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = TrainConfig(**{field: getattr(args, field) for _, field, _ in OPTIONS})
    res = train(args.out, cfg, resume=not args.no_resume)
    print(
        f"trained {res['steps']} steps in {res['seconds'] / 60:.1f} min, loss {res['loss_ema']:.3f}: {args.out}"
    )
    return 0
