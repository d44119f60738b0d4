"""Engine parts without a model: bounded queues (bounds, named drop policies, counts), the chunker
(grid sampling against a direct computation, padding), questions (parsing, time order), response
policies, and output files (SRT/WebVTT parsed back by an independent parser, JSONL one object per
line)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from streamrt.engine import (
    AnyOf,
    BoundedQueue,
    Closed,
    EngineError,
    Inbox,
    Question,
    ResponseEnd,
    SceneChange,
    Schedule,
    Signal,
    SilenceThreshold,
    TextDelta,
    parse_ask,
    read_ask_file,
    writer_for,
)
from streamrt.engine.chunker import Chunker
from streamrt.engine.types import ChunkDone


# ---- queues ------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_queue_bound_and_drops_counted(policy):
    q: BoundedQueue[int] = BoundedQueue("q", 3, policy)
    for i in range(10):
        q.put(i)
    assert len(q) == 3
    st = q.stats()
    assert (st.put, st.dropped, st.peak_depth) == (10, 7, 3)
    got = [q.get(timeout=0) for _ in range(3)]
    assert got == ([7, 8, 9] if policy == "drop_oldest" else [0, 1, 2])
    assert q.get(timeout=0) is None
    q.close()
    with pytest.raises(Closed):
        q.get()


def test_queue_block_applies_backpressure_without_dropping():
    q: BoundedQueue[int] = BoundedQueue("q", 2, "block")
    got: list[int] = []

    def consume():
        time.sleep(0.05)
        while True:
            try:
                item = q.get()
            except Closed:
                return
            if item is not None:
                got.append(item)

    th = threading.Thread(target=consume)
    th.start()
    for i in range(20):
        q.put(i)
        assert len(q) <= 2
    q.close()
    th.join(5)
    assert got == list(range(20)) and q.stats().dropped == 0


def test_queue_rejects_bad_policy():
    with pytest.raises(ValueError, match="unknown drop policy"):
        BoundedQueue("q", 2, "drop_everything")  # type: ignore[arg-type]


# ---- chunker -----------------------------------------------------------------------------------
def px():
    return np.zeros((4, 4, 3), np.uint8)


@pytest.mark.parametrize("src_fps", [30.0, 25.0, 7.0, 2.0])
def test_chunker_samples_the_grid(src_fps):
    """Every source frame offered: one frame per grid point 1/fps (when the source is fast enough),
    the first at or after each grid time minus half a period; chunks of 2 with contiguous indices."""
    fps, n = 2.0, int(src_fps * 10)
    ch = Chunker(fps, 2, budget_s=1.0)
    chunks = [c for i in range(n) if (c := ch.push(px(), i / src_fps, float(i))) is not None]
    frames = [f for c in chunks for f in c.frames]
    idx = [f.index for f in frames]
    assert idx == list(range(len(idx))) and len(idx) == 20
    for f in frames:  # the first source frame not earlier than grid - half a period
        want = min(i for i in range(n) if i / src_fps >= (f.index - 0.5) / fps)
        assert f.t == pytest.approx(want / src_fps)
    assert ch.sampled + ch.skipped == n
    for c in chunks:
        assert c.ready == c.frames[-1].capture and c.deadline == c.ready + 1.0
        assert c.t_end == pytest.approx(c.frames[-1].t + 0.5)


def test_chunker_pads_the_last_partial_chunk():
    ch = Chunker(2.0, 3, budget_s=1.5)
    assert ch.push(px(), 0.0, 0.0) is None and ch.push(px(), 0.5, 0.5) is None
    c = ch.flush()
    assert c is not None and [f.index for f in c.frames] == [0, 1, 2]
    assert c.frames[2].pixels is c.frames[1].pixels and c.frames[2].t == 1.0
    assert ch.flush() is None


# ---- questions ---------------------------------------------------------------------------------
def test_parse_ask_and_errors():
    assert parse_ask("12.5:what colour is the square?", "a") == Question(
        12.5, "what colour is the square?", "a"
    )
    for bad in ("what?", "x:what", "-1:what", "3:", "nan:what"):
        with pytest.raises(EngineError) as e:
            parse_ask(bad, "a")
        assert e.value.code == "E_ENGINE_ASK"


def test_ask_file_and_inbox_order(tmp_path):
    f = tmp_path / "q.txt"
    f.write_text(
        '# questions\n20: how many objects are there?\n\n3.5: what just happened?\n{"t": 3.5, "text": "where is the red star?", "id": "x"}\n'
    )
    qs = read_ask_file(f)
    assert [(q.t, q.id) for q in qs] == [(20.0, "q0"), (3.5, "q1"), (3.5, "x")]
    box = Inbox(capacity=3)
    for q in qs:
        box.put(q)
    with pytest.raises(EngineError, match="E_ENGINE_ASK_FULL"):
        box.put(qs[0])
    assert [q.id for q in box.due(3.0)] == []
    assert [q.id for q in box.due(4.0)] == ["q1", "x"]  # time order, then arrival
    assert [q.id for q in box.due(100.0)] == ["q0"] and len(box) == 0
    (tmp_path / "bad.txt").write_text("1.0: fine\nnot a question\n")
    with pytest.raises(EngineError, match=r"bad.txt:2"):
        read_ask_file(tmp_path / "bad.txt")
    with pytest.raises(EngineError, match="E_ENGINE_ASK_FILE"):
        read_ask_file(tmp_path / "missing.txt")


# ---- policies ----------------------------------------------------------------------------------
def test_response_policies():
    s = Signal(t=10.0, p_silence=0.3, change=0.05, last_spoke=8.0)
    assert SilenceThreshold(0.5).decide(s) == "model" and SilenceThreshold(0.2).decide(s) is None
    assert Schedule(5.0).decide(s) is None and Schedule(2.0).decide(s) == "schedule"
    assert Schedule(5.0).decide(Signal(1.0, 1.0, 0.0, None)) == "schedule"
    assert SceneChange(0.2).decide(s) is None and SceneChange(0.01).decide(s) == "scene_change"
    both = AnyOf((SilenceThreshold(0.1), SceneChange(0.01)))
    assert both.decide(s) == "scene_change"


# ---- writers -----------------------------------------------------------------------------------
def outputs():
    return [
        ChunkDone(0, 0.0, 1.0, 40, 40, 0.9, False, 0.0, 0.01, True, 0.005, 0.004),
        TextDelta(1, "commentary", "a red circle", 1.0, 0.0, 0.02, True),
        ResponseEnd(
            1, "commentary", "a red circle enters from the left.", 1.0, 8, "eos", "model", 0.0, 0.03, True
        ),
        ResponseEnd(
            2,
            "answer",
            "two",
            3661.25,
            1,
            "eos",
            "question",
            0.0,
            0.03,
            False,
            "q0",
            "how many objects are there?",
        ),
    ]


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles_parse(tmp_path, fmt, parse_cues):
    w = writer_for(tmp_path / f"out.{fmt}", {})
    for o in outputs():
        w.write(o)
    w.close()
    cues = parse_cues((tmp_path / f"out.{fmt}").read_text(), fmt)
    assert cues == [
        (1.0, 3.0, "a red circle enters from the left."),
        (3661.25, 3663.25, "Q: how many objects are there?\nA: two"),
    ]


def test_jsonl_flushed_per_event(tmp_path):
    path = tmp_path / "out.jsonl"
    w = writer_for(path, {"source": "x"})
    for i, o in enumerate(outputs()):
        w.write(o)
        lines = path.read_text().splitlines()  # read back before close: already on disk
        assert len(lines) == i + 2
    recs = [json.loads(line) for line in lines]
    assert [r["type"] for r in recs] == ["header", "chunk", "delta", "response", "response"]
    assert recs[4]["deadline_met"] is False and recs[4]["question_text"] == "how many objects are there?"
    w.close()


def test_writer_errors(tmp_path):
    with pytest.raises(EngineError, match="E_ENGINE_OUT_FORMAT"):
        writer_for(tmp_path / "out.txt", {})
    (tmp_path / "file").write_text("")
    with pytest.raises(EngineError, match="E_ENGINE_OUT_OPEN"):
        writer_for(tmp_path / "file" / "out.srt", {})
