"""Fixtures of the reliability tests: a tiny random-weight model with the built-in architecture
(saved like any checkpoint), short shapes-world clips, and fuzzing budgets.

Budgets (hypothesis examples per fuzz test) are fixed and derandomized so the default suite is
reproducible; STREAMRT_FUZZ_EXAMPLES raises them for a longer run on demand, e.g.
`STREAMRT_FUZZ_EXAMPLES=20000 pytest tests/reliability -k fuzz`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from streamrt.models.vlm.train import init_run

from streamrt.synth import World, WorldConfig, write_video


def budget(default: int) -> int:
    """Examples per fuzz test: `default`, or STREAMRT_FUZZ_EXAMPLES when set."""
    return int(os.environ.get("STREAMRT_FUZZ_EXAMPLES", default))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("random-builtin")
    init_run(out, seed=0)
    return out


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """10 s of the busy shapes world at 160x90, 10 fps, a keyframe every 20 frames."""
    path = tmp_path_factory.mktemp("clip") / "busy.mp4"
    write_video(path, World(WorldConfig.preset("busy", seed=5, fps=10.0, width=160, height=90)), 10.0, gop=20)
    return path
