"""Grounding targets used in training: per-patch labels agree with the rendered scene, question
referents agree with the ground-truth answers, and the laid-out attention rows point at the right
tokens (a question's last token / a chunk's <vision_end>, over that chunk's visual tokens only)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from streamrt.models.vlm import load_adapter
from streamrt.models.vlm.builtin import SETTINGS
from streamrt.models.vlm.shapes_data import IGNORE, patch_targets, referents, stream_chunks, world_config
from streamrt.models.vlm.train import init_run, lay_out, named_words

from streamrt.synth import COLOURS, POSITIONS, SHAPES, object_map, position_of
from streamrt.synth.language import NUMBERS


def _chunks(seed: int, n: int, **kw):
    gen = stream_chunks(
        world_config(seed),
        fps=2.0,
        frames_per_chunk=2,
        render_size=(90, 160),
        question_rate=1.0,
        qa_seed=seed,
        questions_per_chunk=5,
        **kw,
    )
    return list(itertools.islice(gen, n))


def test_patch_targets_follow_the_object_map():
    h, w = SETTINGS.frame_size
    for s in _chunks(4, 12):
        t = patch_targets(s, SETTINGS.frame_size, 16)
        ids = object_map(s.scene, w, h)
        active = {e.object_id for e in s.events}
        for r, c in np.ndindex(t.owner.shape):
            cell = ids[r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16]
            i = t.owner[r, c]
            if i < 0:
                assert (t.colour[r, c], t.shape[r, c], t.position[r, c], t.event[r, c]) == (0, 0, IGNORE, 0)
                assert all((cell == j).sum() < 0.03 * cell.size for j in range(len(s.scene.objects)))
                continue
            o = s.scene.objects[i]
            assert (cell == i).sum() == max((cell == j).sum() for j in range(len(s.scene.objects)))
            assert list(COLOURS)[t.colour[r, c] - 1] == o.colour and SHAPES[t.shape[r, c] - 1] == o.shape
            assert POSITIONS[t.position[r, c]] == position_of(o)
            assert t.event[r, c] == (o.id in active)


def test_referents_answer_the_questions():
    checked = 0
    for s in _chunks(9, 30):
        for qa in s.qas:
            refs = [s.scene.objects[i] for i in referents(qa, s.scene)]
            if qa.qtype == "last_event":
                assert refs == []
            elif qa.qtype == "colour":
                assert [o.colour for o in refs] == [qa.answer]
            elif qa.qtype == "shape":
                assert [o.shape for o in refs] == [qa.answer]
            elif qa.qtype == "count":
                assert NUMBERS[len(refs)] == qa.answer
            else:
                assert [position_of(o) for o in refs] == [qa.answer]
            checked += 1
    assert checked > 100


def test_named_words():
    assert named_words("what colour is the star?") == (0, SHAPES.index("star") + 1)
    assert named_words("how many red objects are there?") == (list(COLOURS).index("red") + 1, 0)
    assert named_words("how many circles are there?") == (0, SHAPES.index("circle") + 1)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    out = tmp_path_factory.mktemp("grounding")
    init_run(out, seed=2)
    return load_adapter(str(out))


def test_attention_rows_point_at_the_chunk_tokens(adapter):
    samples = _chunks(11, 3)
    seq = lay_out(adapter, samples)
    ids = seq.ids.tolist()
    pad, start, end, asst = (
        adapter.token_id(t) for t in ("<video_pad>", "<vision_start>", "<vision_end>", "<assistant>")
    )
    assert len(seq.ref_pos) == len(seq.ref_mask) == len(seq.ref_words) > 0
    for q, row, words in zip(seq.ref_pos.tolist(), seq.ref_mask, seq.ref_words.tolist(), strict=True):
        assert ids[q] in (asst, end) and (ids[q] == end) == (words == [IGNORE, IGNORE])
        cols = row.nonzero().flatten().tolist()
        assert cols and all(ids[c] == pad for c in cols)
        # only the latest chunk before the query: no other chunk starts between its tokens and the query
        assert max(i for i in range(q) if ids[i] == start) < min(cols)
