"""Fixtures: a tiny random-weight model with the built-in model's architecture, tokenizer, template
and stream settings (real Hugging Face components, saved with save_pretrained and loaded through
`load_adapter` like any checkpoint), and short shapes-world clips with their timelines."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from streamrt.models.vlm import load_adapter
from streamrt.models.vlm.train import init_run

from streamrt.synth import World, WorldConfig, write_video


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory) -> Path:
    """The built-in architecture, tokenizer, template and settings with random weights (seed 0), on the
    first built-in tower (16x16 patches, no merge): with it these random weights speak from the first
    chunk, which the tests' comparisons of decoded text need; random weights of the merged tower (8x8
    patches merged 2x2) mostly end every response at once. The shipped (merged) model runs through
    the engine against plain greedy decoding in `test_builtin.py`."""
    out = tmp_path_factory.mktemp("random-builtin")
    init_run(out, seed=0, patch_size=16, merge=1)
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


def greedy(a, cache, logits, t, ends, cap):
    out: list[int] = []
    tok = int(logits.argmax())
    while tok not in ends and len(out) < cap:
        out.append(tok)
        tok = int(a.decode_step(cache, tok).argmax())
    stop = tok if tok in ends else a.special.eos_id
    close = [stop] if stop == a.special.silence_id else [stop, *a.turn_end_ids()]
    a.prefill_text(cache, close, kind="assistant", timestamp=t)
    return a.decode(out).strip()


@torch.inference_mode()
def oracle(a, frames, questions, cfg):
    """The plain greedy loop (see tests/engine/test_greedy_oracle.py): (commentaries [(t, text)],
    answers {id: text}, StreamCache)."""
    sid = a.special.silence_id
    ends = a.special.stop_ids | {sid}
    cache = a.new_cache(cfg.cache)
    a.prefill_text(cache, a.system_ids(), kind="system")
    said, answers = [], {}
    pending = sorted(questions, key=lambda q: q.t)
    fpc = a.frames_per_chunk
    for i in range(0, len(frames), fpc):
        fr = frames[i : i + fpc]
        t_end = fr[-1].t + 1 / a.fps
        logits = a.prefill_vision(cache, a.encode_chunk(np.stack([f.pixels for f in fr]), [f.t for f in fr]))
        if int(logits.argmax()) == sid:
            a.prefill_text(cache, [sid], kind="assistant", timestamp=t_end)
        else:
            said.append((t_end, greedy(a, cache, logits, t_end, ends, cfg.max_commentary_tokens)))
        while pending and pending[0].t <= t_end:
            q = pending.pop(0)
            logits = a.prefill_text(cache, a.user_ids(q.text), kind="user", timestamp=t_end)
            logits[sid] = float("-inf")
            answers[q.id] = greedy(a, cache, logits, t_end, ends, cfg.max_answer_tokens)
    return said, answers, cache.store


@pytest.fixture(name="greedy_oracle")
def greedy_oracle_fixture():
    return oracle
