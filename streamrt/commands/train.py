"""`streamrt train NAME`: train one of the built-in models (dispatches to the trainer registry).

Only the chosen trainer's module is imported (trainers pull in torch), so listing the commands
stays fast: the trainer's own parser is built in `run` from the arguments after NAME.
"""

from __future__ import annotations

import argparse
import importlib

from streamrt.models.train_registry import TRAINERS

NAME = "train"
ORDER = 60
HELP = "train a built-in model from scratch (reproducible, seeded)"
DESCRIPTION = (
    """\
Train one of the project's tiny built-in models on synthetic data, on CPU. Each trainer is seeded
(same command, same weights on the same machine), shows a progress bar and writes checkpoints.

trainers:
"""
    + "\n".join(f"  {name:<8} {help_}" for name, (_, help_) in TRAINERS.items())
    + """

examples:
  streamrt train gen --out runs/gen            # the causal video generator (shapes world)
  streamrt train gen --out runs/gen --steps 50 # a quick smoke run
  streamrt train vlm --help                    # a trainer's own options
"""
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "trainer", choices=sorted(TRAINERS), metavar="NAME", help="which model: " + ", ".join(TRAINERS)
    )
    p.add_argument("trainer_args", nargs=argparse.REMAINDER, help="the trainer's own options (NAME --help)")


def trainer_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    """The chosen trainer's parser and module."""
    path, help_ = TRAINERS[name]
    mod = importlib.import_module(path)
    parser = argparse.ArgumentParser(
        prog=f"streamrt train {name}",
        description=mod.DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mod.add_arguments(parser)
    return parser, mod


def run(args: argparse.Namespace) -> int:
    parser, mod = trainer_parser(args.trainer)
    targs = parser.parse_args(args.trainer_args)
    return int(mod.run(targs) or 0)
