"""Fixtures: a tiny random-weight model with the built-in model's architecture, tokenizer, template
and stream settings (real Hugging Face components, saved with save_pretrained and loaded through
`load_adapter` like any checkpoint), and short shapes-world clips with their timelines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamrt.models.vlm import load_adapter
from streamrt.models.vlm.train import init_run

from streamrt.synth import World, WorldConfig, write_video


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory) -> Path:
    """The built-in architecture, tokenizer, template and settings with random weights (seed 0)."""
    out = tmp_path_factory.mktemp("random-builtin")
    init_run(out, seed=0)
    return out


@pytest.fixture(scope="session")
def random_adapter(random_model_dir):
    return load_adapter(str(random_model_dir))


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """12 s of the busy shapes world at 320x180, 10 fps, with its timeline."""
    path = tmp_path_factory.mktemp("clip") / "busy.mp4"
    write_video(path, World(WorldConfig.preset("busy", seed=5, fps=10.0)), 12.0, gop=20)
    return path


CUE = re.compile(r"^(\d{2}):(\d{2}):(\d{2})([.,])(\d{3}) --> (\d{2}):(\d{2}):(\d{2})([.,])(\d{3})$")


def parse_cues(text: str, fmt: str) -> list[tuple[float, float, str]]:
    """An independent SRT/WebVTT reader: blocks separated by blank lines, strict timing lines."""
    blocks = [b for b in text.split("\n\n") if b.strip()]
    if fmt == "vtt":
        assert blocks[0] == "WEBVTT"
        blocks = blocks[1:]
    cues = []
    for n, b in enumerate(blocks, 1):
        lines = b.split("\n")
        if fmt == "srt":
            assert lines[0] == str(n)
            lines = lines[1:]
        m = CUE.match(lines[0])
        assert m, lines[0]
        g = m.groups()
        assert g[3] == g[8] == ("," if fmt == "srt" else ".")
        start = int(g[0]) * 3600 + int(g[1]) * 60 + int(g[2]) + int(g[4]) / 1000
        end = int(g[5]) * 3600 + int(g[6]) * 60 + int(g[7]) + int(g[9]) / 1000
        assert end > start and lines[1:] and all(line.strip() for line in lines[1:])
        cues.append((start, end, "\n".join(lines[1:])))
    return cues


@pytest.fixture(name="parse_cues")
def parse_cues_fixture():
    return parse_cues
