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
silence token, and answers to questions about the current state. Besides the text loss, training
uses grounding targets the generator knows: per-patch colour/shape/position/event labels read by
linear probes, and an attention target that makes one head look at the objects a question (or a
chunk's events) is about. Seeded and reproducible; the data of every step is a function of (seed,
step). OUT is a loadable model directory from the start (config, tokenizer, streamrt.json; weights at
each checkpoint) plus checkpoint.pt; rerunning the command resumes from the last checkpoint, and a
larger --steps extends the schedule (how the shipped model got its second, longer-window phase).

examples:
  # the shipped model (assets/vlm/builtin): 8000 steps of 2-chunk windows, then 2000 of 4-chunk windows
  streamrt train vlm --out runs/vlm
  streamrt train vlm --out runs/vlm --steps 10000 --chunks 4 --questions 3
  streamrt train vlm --out runs/smoke --steps 50                  # a quick smoke run
  STREAMRT_BENCH_MODEL=runs/vlm streamrt bench vlm-quality --repeats 1 --warmup 0   # score it
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from streamrt.models.vlm.train import TrainConfig

    d = TrainConfig()
    parser.add_argument("--out", type=Path, required=True, help="run / model directory")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"optimiser steps (default {d.steps})")
    parser.add_argument("--batch", type=int, default=d.batch, help=f"windows per step (default {d.batch})")
    parser.add_argument(
        "--chunks", type=int, default=d.chunks_per_seq, help=f"chunks per window (default {d.chunks_per_seq})"
    )
    parser.add_argument(
        "--question-rate",
        type=float,
        default=d.question_rate,
        help=f"chance of questions after a chunk (default {d.question_rate})",
    )
    parser.add_argument(
        "--questions",
        type=int,
        default=d.questions_per_chunk,
        help=f"questions per questioned chunk (default {d.questions_per_chunk})",
    )
    parser.add_argument(
        "--answer-weight",
        type=float,
        default=d.answer_weight,
        help=f"weight of the answers' loss (default {d.answer_weight})",
    )
    parser.add_argument(
        "--attn-weight",
        type=float,
        default=d.attn_weight,
        help=f"weight of the attention-grounding loss (default {d.attn_weight})",
    )
    parser.add_argument(
        "--rope-theta",
        type=float,
        default=d.rope_theta,
        help=f"RoPE base of a new model (default {d.rope_theta:g})",
    )
    parser.add_argument(
        "--aux-weight",
        type=float,
        default=d.aux_weight,
        help=f"weight of the per-patch grounding losses (default {d.aux_weight})",
    )
    parser.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr})")
    parser.add_argument(
        "--vision-lr-scale",
        type=float,
        default=d.vision_lr_scale,
        help=f"vision tower learning-rate factor (default {d.vision_lr_scale})",
    )
    parser.add_argument(
        "--seed", type=int, default=d.seed, help=f"seed of weights and data (default {d.seed})"
    )
    parser.add_argument("--threads", type=int, default=d.threads, help=f"torch threads (default {d.threads})")
    parser.add_argument(
        "--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints"
    )
    parser.add_argument("--no-resume", action="store_true", help="start over even if OUT has a checkpoint")


def run(args: argparse.Namespace) -> int:
    from streamrt.models.vlm.train import TrainConfig, train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = TrainConfig(
        steps=args.steps,
        batch=args.batch,
        chunks_per_seq=args.chunks,
        question_rate=args.question_rate,
        questions_per_chunk=args.questions,
        aux_weight=args.aux_weight,
        answer_weight=args.answer_weight,
        attn_weight=args.attn_weight,
        rope_theta=args.rope_theta,
        lr=args.lr,
        vision_lr_scale=args.vision_lr_scale,
        seed=args.seed,
        threads=args.threads,
        checkpoint_every=args.checkpoint_every,
    )
    res = train(args.out, cfg, resume=not args.no_resume)
    print(
        f"trained {res['steps']} steps in {res['seconds'] / 60:.1f} min, loss {res['loss_ema']:.3f}: {args.out}"
    )
    return 0
