"""`streamrt train NAME`: train one of the built-in models (dispatches to the trainer registry)."""

from __future__ import annotations

import argparse
import importlib

from streamrt.models.train_registry import TRAINERS

NAME = "train"
ORDER = 60
HELP = "train a built-in model from scratch (reproducible, seeded)"
DESCRIPTION = """\
Train one of the project's tiny built-in models on synthetic data, on CPU. Each trainer is seeded
(same command, same weights on the same machine), shows a progress bar and writes checkpoints.

examples:
  streamrt train gen --out runs/gen            # the causal video generator (shapes world)
  streamrt train gen --out runs/gen --steps 50 # a quick smoke run
  streamrt train gen --help
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="trainer", metavar="NAME", title="trainers", required=True)
    for name, path in TRAINERS.items():
        mod = importlib.import_module(path)
        sp = sub.add_parser(
            name,
            help=mod.HELP,
            description=mod.DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(sp)
        sp.set_defaults(_trainer=mod.run)


def run(args: argparse.Namespace) -> int:
    return int(args._trainer(args) or 0)
