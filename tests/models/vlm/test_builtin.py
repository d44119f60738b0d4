"""The built-in model's definition: the word-level tokenizer round-trips the shapes-world language
(the parser recovers every event from decoded ids), and the training layout (one batched forward
over a whole window) gives the same logits as the streaming adapter path through the StreamCache,
also when training drops tokens as the engine's differential token drop does (the oracle is the
engine's own `ChunkEncoder`)."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from streamrt.models.vlm import load_adapter
from streamrt.models.vlm.builtin import EOS, SILENCE, VIDEO_PAD, build_tokenizer, corpus
from streamrt.models.vlm.shapes_data import stream_chunks, world_config
from streamrt.models.vlm.train import drop_consistency, drop_tokens, forward, init_run, lay_out

from streamrt.engine.encoder import ChunkEncoder
from streamrt.engine.types import Chunk, SampledFrame
from streamrt.synth import World, WorldConfig, describe, mention, parse, questions


def test_tokenizer_round_trips_the_language():
    tok = build_tokenizer()
    unk = tok.unk_token_id
    for line in corpus():
        ids = tok.encode(line, add_special_tokens=False)
        assert unk not in ids, line
        assert tok.decode(ids) == line
    world = World(WorldConfig.preset("busy", seed=5))
    rng = random.Random(0)
    for f in itertools.islice(world.frames(32, 18), 300):
        for e in f.events:
            text = tok.decode(tok.encode(describe(e), add_special_tokens=False))
            assert parse(text) == [mention(e)]
        for q in questions(f.scene, rng, world.recent(2.0)):
            for s in (q.question, q.answer):
                ids = tok.encode(s, add_special_tokens=False)
                assert unk not in ids and tok.decode(ids) == s


@pytest.fixture(scope="module")
def random_builtin(tmp_path_factory):
    out = tmp_path_factory.mktemp("builtin_random")
    init_run(out, seed=1)
    return load_adapter(str(out))


def _samples(seed: int, n: int, question_rate: float, qa_seed: int, **kw) -> list:
    """The first n chunks of a world as training samples (90x160 frames)."""
    stream = stream_chunks(
        world_config(seed),
        fps=2.0,
        frames_per_chunk=2,
        render_size=(90, 160),
        question_rate=question_rate,
        qa_seed=qa_seed,
        **kw,
    )
    return list(itertools.islice(stream, n))


@pytest.mark.parametrize("drop", [False, True])
def test_training_layout_equals_streaming_path(random_builtin, drop):
    a = random_builtin
    samples = _samples(7, 4, question_rate=0.7, qa_seed=1)
    assert any(s.qas for s in samples) and any(s.events for s in samples)
    seq = lay_out(a, samples)
    pad = a.token_id(VIDEO_PAD)
    with torch.no_grad():
        if drop:  # the window's ids after the drop (forward below drops the same tokens)
            grid = torch.tensor(seq.grids)
            vis = a.model.model.visual(seq.patches, grid_thw=grid).pooler_output  # [4 * 40, D]
            ids = drop_tokens(seq, vis, pad, 0.9, a.merge)[0].ids
            assert 40 < int((ids == pad).sum()) < 4 * 40  # the static background went, not every token
        else:
            ids = seq.ids
        logits = forward(a, [seq], drop=[drop], threshold=0.9).logits[0]  # [L, V]
    assert len(logits) == len(ids)
    skip = {a.token_id("<vision_start>"), pad}
    want = torch.stack([logits[i] for i, t in enumerate(ids.tolist()) if t not in skip])

    encoder = ChunkEncoder(a, 0.9 if drop else None, None)  # the engine's encoder and token drop
    cache = a.new_cache()
    got = [a.forward_text(cache, a.system_ids(), kind="system")]
    eos, silence = a.token_id(EOS), a.token_id(SILENCE)
    for i, s in enumerate(samples):
        frames = tuple(
            SampledFrame(f, t, 0.0, 2 * i + j) for j, (f, t) in enumerate(zip(s.frames, s.times, strict=True))
        )
        enc = encoder.encode(Chunk(i, frames, s.times[0], s.times[-1] + 0.5, 0.0, 1.0))
        got.append(a.prefill_vision(cache, enc.vision, enc.kept)[None])
        said = [silence] if s.commentary is None else a.encode(s.commentary) + [eos]
        got.append(a.forward_text(cache, said, kind="assistant"))
        for qa in s.qas:
            got.append(a.forward_text(cache, a.user_ids(qa.question), kind="user"))
            got.append(a.forward_text(cache, a.encode(qa.answer) + [eos], kind="assistant"))
    torch.testing.assert_close(torch.cat(got), want, atol=3e-5, rtol=1e-4)


def test_labels_cover_only_model_turns(random_builtin):
    a = random_builtin
    samples = _samples(3, 2, question_rate=1.0, qa_seed=2, questions_per_chunk=3)
    seq = lay_out(a, samples)
    targets = seq.labels[seq.labels != -100].tolist()
    expected = []
    for s in samples:
        expected += (
            [a.token_id(SILENCE)] if s.commentary is None else a.encode(s.commentary) + [a.token_id(EOS)]
        )
        assert len(s.qas) == 3
        for qa in s.qas:
            expected += a.encode(qa.answer) + [a.token_id(EOS)]
    assert targets == expected


def test_drop_consistency_is_the_kl_to_the_undropped_output(random_builtin):
    """The loss equals KL(p_full || p_drop) computed position by position from two plain forwards
    (the i-th labelled position of one with the i-th of the other), is 0 when the drop keeps every token,
    and sends gradient through the dropped forward."""
    a = random_builtin
    samples = _samples(7, 4, question_rate=0.7, qa_seed=1)
    other = _samples(8, 3, question_rate=0.5, qa_seed=2)
    seqs, drop = [lay_out(a, samples), lay_out(a, other)], [True, False]
    fw = forward(a, seqs, drop=drop, threshold=0.9)
    loss = drop_consistency(a, seqs, drop, fw)
    with torch.no_grad():
        full = forward(a, seqs[:1]).logits[0]  # [L, V] window 0 without drop
        part = forward(a, seqs[:1], drop=[True], threshold=0.9).logits[0]  # [L', V] with drop
    p = torch.log_softmax(full[seqs[0].labels != -100], -1)
    q = torch.log_softmax(part[fw.labels[0, : len(part)] != -100], -1)  # fw pads window 0 at its end
    want = (p.exp() * (p - q)).sum(-1).mean()
    torch.testing.assert_close(loss.detach(), want, atol=1e-5, rtol=1e-4)
    assert float(loss.detach()) > 0
    loss.backward()
    assert a.model.lm_head.weight.grad is not None and a.model.lm_head.weight.grad.abs().sum() > 0
    a.model.zero_grad(set_to_none=True)
    keep_all = forward(a, seqs, drop=drop, threshold=1.5)  # cosine never exceeds 1.5: nothing dropped
    assert float(drop_consistency(a, seqs, drop, keep_all)) == pytest.approx(0.0, abs=1e-6)
