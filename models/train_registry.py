"""Trainers reachable as `streamrt train NAME`: name -> module path.

A trainer module defines HELP (one line), DESCRIPTION (paragraph with examples),
`add_arguments(parser)` and `run(args) -> int`, and imports torch inside `run`. Adding a trainer is one
line here plus its module; the `train` command never changes.
"""

from __future__ import annotations

TRAINERS: dict[str, str] = {
    "gen": "streamrt.models.gen.cli",
    "vlm": "streamrt.models.vlm.train_cli",
    "draft": "streamrt.models.draft.cli",
}
