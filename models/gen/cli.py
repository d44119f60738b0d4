"""`streamrt train gen`: arguments and entry point of the built-in generator's training run."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "causal video diffusion transformer on shapes-world video (flow matching, diffusion forcing)"
DESCRIPTION = """\
Train the built-in streaming video generator from scratch on shapes-world clips rendered on the fly
(one object, circle/square/triangle, ten colours, prompts like "a red circle moving left"). The EMA
weights are saved to --out (config.json + model.safetensors) every --ckpt-every steps and at the end;
`streamrt generate --model DIR` uses them. Seeded: the same command gives the same weights on the
same machine. The shipped model (streamrt/assets/gen) was made with the defaults.

examples:
  streamrt train gen --out runs/gen
  streamrt train gen --out runs/gen --steps 100 --batch 4     # smoke run
  streamrt train gen --out runs/gen2 --init runs/gen --steps 800 --lr 3e-4 --object-weight 5
                                                              # continue from a checkpoint
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    # no torch import here: `streamrt --help` builds every parser; defaults come from GenTrainConfig in run()
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder (created)")
    p.add_argument("--steps", type=int, help="optimizer steps (default: the shipped model's recipe)")
    p.add_argument("--batch", type=int, help="clips per step (default: the shipped model's recipe)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the shipped model's recipe)")
    p.add_argument("--seed", type=int, help="seed of data, noise and initialisation (default 0)")
    p.add_argument("--init", help="checkpoint folder to continue from (default: train from scratch)")
    p.add_argument(
        "--object-weight",
        type=float,
        help="loss weight of pixels on and near the object (default 1: plain MSE)",
    )
    p.add_argument("--ckpt-every", type=int, help="steps between checkpoints")
    p.add_argument(
        "--prompt-dropout",
        type=float,
        help="share of clips trained with the empty prompt, for guidance (default 0)",
    )
    p.add_argument(
        "--switch-p",
        type=float,
        help="share of clips that are prompt switches (first frames from another world; default 0)",
    )
    p.add_argument("--dim", type=int, help="hidden width of a new model (default: the shipped model's)")
    p.add_argument("--layers", type=int, help="transformer blocks of a new model")
    p.add_argument("--heads", type=int, help="attention heads of a new model")
    p.add_argument("--ffn-mult", type=int, help="MLP width multiple of a new model")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import logging

    import torch
    from streamrt.models.gen.train import GenTrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    given = {
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "seed": args.seed,
        "ckpt_every": args.ckpt_every,
        "init": args.init,
        "object_weight": args.object_weight,
        "prompt_dropout": args.prompt_dropout,
    }
    cfg = dataclasses.replace(GenTrainConfig(), **{k: v for k, v in given.items() if v is not None})
    if args.switch_p is not None:
        cfg = dataclasses.replace(cfg, clips=dataclasses.replace(cfg.clips, switch_p=args.switch_p))
    shape = {"dim": args.dim, "layers": args.layers, "heads": args.heads, "ffn_mult": args.ffn_mult}
    shape = {k: v for k, v in shape.items() if v is not None}
    if shape:
        if args.init:
            raise SystemExit(
                "E_GEN_ARGS: --dim/--layers/--heads/--ffn-mult shape a new model; --init continues one"
            )
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **shape))
    model = train(cfg, args.out)
    logging.getLogger(__name__).info("trained %s", model.spec.train)
    print(
        f"saved {args.out} (steps {model.spec.train.get('steps_done')}, wall {model.spec.train.get('wall_s')} s)"
    )
    return 0
