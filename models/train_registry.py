"""Trainers reachable as `streamrt train NAME`: name -> (module path, one-line help).

A trainer module defines HELP (one line), DESCRIPTION (paragraph with examples),
`add_arguments(parser)` and `run(args) -> int`. The help line is repeated here so that
`streamrt --help` lists the trainers without importing them (their packages pull in torch);
a test checks the two agree. Adding a trainer is one line here plus its module.
"""

from __future__ import annotations

TRAINERS: dict[str, tuple[str, str]] = {
    "gen": (
        "streamrt.models.gen.cli",
        "causal video diffusion transformer on shapes-world video (flow matching, diffusion forcing)",
    ),
    "vlm": (
        "streamrt.models.vlm.train_cli",
        "train the tiny built-in vision-language model on shapes-world streams",
    ),
    "draft": (
        "streamrt.models.draft.cli",
        "draft model for speculative decoding, distilled from a target (default: the built-in VLM)",
    ),
}
