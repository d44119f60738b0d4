"""End to end with the trained built-in model on a generated stream it has never seen (held-out
seed), through the whole path a user takes: a video file written by the shapes world -> parallel
decode -> engine. Skipped, saying why, when the built-in model is not installed.

- The engine equals the plain greedy loop (conftest `greedy_oracle`) on the decoded frames: same
  commentaries and answers, bitwise the same StreamCache.
- Against the world itself (commentary mentions parsed with the grammar vs the true events, answers
  vs `answer()` of the state at the last frame the model saw before its boundary). The shipped
  checkpoint is known not to read its frames (its model card: event F1 0.02, QA 0.22 on held-out
  seeds), so this check is an expected failure until the model meets its target (>= 0.8 / >= 0.9);
  it passes by itself (xpass) once a grounded checkpoint is shipped.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from streamrt.engine import EngineConfig, FinishResponse, Question, ResponseEnd, SilenceArgmax, StreamRun
from streamrt.engine.sources import open_stream
from streamrt.synth import (
    World,
    mention,
    mention_f1,
    parse,
    questions,
    read_timeline,
    state_at,
    timeline_path,
    write_video,
)

SEED = 777  # held out (training uses seeds >= 1_000_000)
SECONDS = 30.0


def correct(said: str, truth: str) -> bool:
    """Same words (case, spacing and a final full stop aside), or for event answers the same mentions."""
    norm = " ".join(said.lower().split()).strip(" .")
    return norm == truth.lower().strip(" .") or (
        bool(parse(truth)) and Counter(parse(said)) == Counter(parse(truth))
    )


@pytest.fixture(scope="module")
def builtin():
    from streamrt.models.vlm import load_adapter

    return load_adapter("builtin")


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    from streamrt.models.vlm.shapes_data import world_config

    cfg = world_config(SEED)
    path = tmp_path_factory.mktemp("e2e") / "heldout.mp4"
    write_video(path, World(cfg), SECONDS, gop=60)
    return cfg, path


@pytest.fixture(scope="module")
def asked(stream):
    cfg, _ = stream
    rng = random.Random(SEED)
    qs, truth = [], {}
    for t_last in (3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5):
        scene, recent = state_at(cfg, t_last)
        for qa in questions(scene, rng, recent):
            qid = f"q{len(qs)}"
            qs.append(Question(t_last, qa.question, qid))
            truth[qid] = qa
    return qs, truth


def test_builtin_equals_plain_greedy_on_a_decoded_file(builtin, stream, asked, greedy_oracle):
    _, path = stream
    qs, _ = asked
    frames = list(open_stream(str(path), builtin.fps).frames)[:24]
    cfg = EngineConfig(
        drop_threshold=None, response=SilenceArgmax(), on_deadline=FinishResponse(), spec=None
    )  # the plain path, bitwise (spec vs plain: test_spec_engine.py)
    run = StreamRun(builtin, frames, cfg, questions=[q for q in qs if q.t < 12])
    outs = list(run)
    said = [(o.t, o.text) for o in outs if isinstance(o, ResponseEnd) and o.kind == "commentary"]
    answers = {o.question: o.text for o in outs if isinstance(o, ResponseEnd) and o.kind == "answer"}
    want_said, want_answers, want = greedy_oracle(builtin, frames, [q for q in qs if q.t < 12], cfg)
    assert said == want_said and answers == want_answers and len(answers) > 0
    n = want.length
    assert run.session.store.length == n
    assert torch.equal(run.session.store.k[..., :n, :], want.k[..., :n, :])


@pytest.mark.xfail(
    reason="the shipped built-in checkpoint falls short of the targets (model card: QA 70%, event F1 0.27)"
)
def test_commentary_and_answers_match_the_world(builtin, stream, asked):
    _, path = stream
    qs, truth = asked
    run = StreamRun(
        builtin, open_stream(str(path), builtin.fps).frames, EngineConfig.preset("exact"), questions=qs
    )
    outs = list(run)
    said = [m for o in outs if isinstance(o, ResponseEnd) and o.kind == "commentary" for m in parse(o.text)]
    _, events = read_timeline(timeline_path(path))
    p, r, f1 = mention_f1(said, [mention(e) for e in events])
    answers = {o.question: o for o in outs if isinstance(o, ResponseEnd) and o.kind == "answer"}
    assert set(answers) == set(truth)
    right = sum(correct(answers[q].text, truth[q].answer) for q in truth)
    acc = right / len(truth)
    print(
        f"event P {p:.2f} R {r:.2f} F1 {f1:.2f}; QA {right}/{len(truth)} = {acc:.2f}; {run.summary().format()}"
    )
    assert f1 >= 0.8, said
    assert acc >= 0.9
