"""The engine against a plain greedy loop written here from the adapter protocol (no engine code):
with the drop off, the greedy response policy and deadlines that never cut, the engine's
commentary and answers, and the final StreamCache (keys, values, positions, segment kinds) are
exactly those of the loop: per chunk, prefill the vision tokens; if silence is the argmax the
silence token enters the history, else decode greedily to a stop token (or the cap, closed with
eos) and close the turn; due questions are user turns answered the same way.

The random-weight model's silence row is set near the usual argmax token's (plus seeded noise) so
that both silent and speaking chunks occur and the comparison covers both paths."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from streamrt.models.vlm import load_adapter

from streamrt.engine import EngineConfig, FinishResponse, Question, ResponseEnd, SilenceArgmax, StreamRun
from streamrt.synth import World, WorldConfig

CAP = 5


@pytest.fixture(scope="module")
def mixed_adapter(random_model_dir):
    a = load_adapter(str(random_model_dir))
    frames = np.stack([f.pixels for f in stream()[: a.frames_per_chunk]])
    with torch.inference_mode():
        cache = a.new_cache()
        a.prefill_text(cache, a.system_ids(), kind="system")
        usual = int(a.prefill_vision(cache, a.encode_chunk(frames, [0.0, 0.5])).argmax())
    w = a.model.lm_head.weight  # tied with the input embeddings
    g = torch.Generator().manual_seed(1)  # a seed whose noise gives a mix of silent and speaking chunks
    with torch.no_grad():
        w[a.special.silence_id] = w[usual] + 0.2 * torch.randn(w.shape[1], generator=g)
    return a


def stream():
    world = World(WorldConfig.preset("busy", seed=5, fps=2.0, width=128, height=80))
    return list(itertools.islice(world.frames(), 24))


def test_engine_equals_plain_greedy(mixed_adapter, greedy_oracle):
    a = mixed_adapter
    frames = stream()
    qs = [Question(2.5, "how many objects are there?", "a"), Question(7.0, "what just happened?", "b")]
    cfg = EngineConfig(
        drop_threshold=None,
        response=SilenceArgmax(),
        on_deadline=FinishResponse(),
        max_commentary_tokens=CAP,
        max_answer_tokens=CAP,
        spec=None,  # the plain greedy path, bitwise; spec vs plain is tests/engine/test_spec_engine.py
    )
    run = StreamRun(a, frames, cfg, questions=qs)
    outs = list(run)
    said = [(o.t, o.text) for o in outs if isinstance(o, ResponseEnd) and o.kind == "commentary"]
    answers = {o.question: o.text for o in outs if isinstance(o, ResponseEnd) and o.kind == "answer"}
    want_said, want_answers, want = greedy_oracle(a, frames, qs, cfg)
    assert 0 < len(want_said) < 12  # both silent and speaking chunks
    assert said == want_said and answers == want_answers
    got = run.session.store
    n = want.length
    assert got.length == n and [s.kind for s in got.segments] == [s.kind for s in want.segments]
    assert torch.equal(got.positions(), want.positions())
    assert torch.equal(got.k[..., :n, :], want.k[..., :n, :]) and torch.equal(
        got.v[..., :n, :], want.v[..., :n, :]
    )
