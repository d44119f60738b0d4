"""The engine on a tiny random-weight model with the built-in architecture (real HF components):

- DTD with a threshold that drops nothing gives exactly the no-drop output, token for token (oracle:
  the run with the drop switched off); a dropping threshold does change what is kept (so the
  comparison can fail).
- Kept tokens keep their positions: the cache rows of every vision chunk hold the M-RoPE positions
  computed here from the grid and the kept indices (independent of the adapter's layout code).
- Questions are answered once each, in stream-time order, at the first chunk boundary at or after
  their time; deltas concatenate to the final text; every output records capture <= output.
- Encoding the next chunk does not wait for text decoding; a response cut at the deadline ends with
  reason "deadline"; a resumed one spans chunks.
- Bounded memory: cache rows and vision chunks stay within the retention bounds over a long stream;
  chunk-queue drops under a too-slow consumer are counted and account for every missing chunk.
"""

from __future__ import annotations

import itertools

import torch
from streamrt.cache import RetentionPolicy, StreamCacheConfig

from streamrt.engine import (
    ChunkDone,
    CutResponse,
    EngineConfig,
    FinishResponse,
    Question,
    ResponseEnd,
    ResumeResponse,
    Schedule,
    StreamRun,
    TextDelta,
)
from streamrt.synth import World, WorldConfig


def frames(seconds: float, seed: int = 5, preset: str = "busy", fps: float = 2.0):
    w = World(WorldConfig.preset(preset, seed=seed, fps=fps, width=128, height=80))
    return list(itertools.islice(w.frames(), round(seconds * fps)))


def exact(**kw) -> EngineConfig:
    base = dict(
        response=Schedule(3.0), on_deadline=FinishResponse(), max_commentary_tokens=6, max_answer_tokens=4
    )
    base.update(kw)
    return EngineConfig(**base)  # type: ignore[arg-type]


def strip_times(outs):
    """Outputs without their wall-clock fields (what must match between two runs)."""
    keep = []
    for o in outs:
        if isinstance(o, ChunkDone):
            keep.append(("chunk", o.index, o.tokens_total, o.tokens_kept, round(o.p_silence, 6), o.spoke))
        elif isinstance(o, TextDelta):
            keep.append(("delta", o.segment, o.text, o.t, o.question))
        else:
            keep.append(("end", o.segment, o.kind, o.text, o.t, o.tokens, o.reason, o.question))
    return keep


QUESTIONS = [
    Question(4.6, "how many objects are there?", "b"),
    Question(0.2, "what colour is the star?", "a"),
    Question(4.6, "what just happened?", "c"),
    Question(100.0, "where is the red circle?", "late"),
]


def test_no_drop_threshold_gives_the_no_drop_output(random_adapter):
    fr = frames(8)
    off = list(StreamRun(random_adapter, fr, exact(drop_threshold=None), questions=QUESTIONS))
    keep_all = list(StreamRun(random_adapter, fr, exact(drop_threshold=2.0), questions=QUESTIONS))
    dropping = list(StreamRun(random_adapter, fr, exact(drop_threshold=0.9), questions=QUESTIONS))
    assert strip_times(keep_all) == strip_times(off)
    assert sum(isinstance(o, TextDelta) for o in off) > 5  # the comparison covers decoded text
    kept = [o.tokens_kept for o in dropping if isinstance(o, ChunkDone)]
    total = [o.tokens_total for o in dropping if isinstance(o, ChunkDone)]
    assert kept[0] == total[0] and sum(kept) < sum(total)  # first frame whole; the drop is real


def mrope_oracle(start: int, prefix: int, grid: tuple[int, int, int], kept: list[int], interval: float):
    t, h, w = grid
    cols = []
    for i in kept:
        it, rest = divmod(i, h * w)
        ih, iw = divmod(rest, w)
        s = start + prefix
        cols.append((s + int(it * interval), s + ih, s + iw))
    return cols


def test_kept_tokens_keep_their_positions(random_adapter):
    from streamrt.engine.chunker import Chunker
    from streamrt.engine.encoder import ChunkEncoder
    from streamrt.engine.session import Session

    cfg = exact(drop_threshold=0.9, response=Schedule(1e9))
    sess = Session(random_adapter, cfg)
    enc = ChunkEncoder(random_adapter, 0.9, None)
    ch = Chunker(2.0, 2, 1.0)
    prefix = len(random_adapter.encode(random_adapter.template.vision_prefix))
    checked = 0
    for f in frames(6):
        c = ch.push(f.pixels, f.t, 0.0)
        if c is None:
            continue
        e = enc.encode(c)
        store = sess.store
        start = store.next_position
        list(sess.process(e, [], 0.0, float("inf")))
        seg = [s for s in store.segments if s.kind == "vision"][-1]
        assert seg.pos_start == start and seg.kept is not None
        kept = e.kept.tolist()
        assert torch.nonzero(seg.kept).flatten().tolist() == kept
        rows = store.positions()[:, seg.start + prefix : seg.start + prefix + len(kept)]
        want = mrope_oracle(start, prefix, e.vision.grid_thw, kept, e.vision.time_interval)
        assert [tuple(c) for c in rows.T.tolist()] == want
        checked += len(kept) < e.total_tokens
    assert checked >= 2  # chunks with dropped tokens were checked


def test_questions_deltas_and_times(random_adapter):
    run = StreamRun(random_adapter, frames(8), exact(), questions=QUESTIONS)
    outs = list(run)
    chunk_ends = [o.t_end for o in outs if isinstance(o, ChunkDone)]
    answers = [o for o in outs if isinstance(o, ResponseEnd) and o.kind == "answer"]
    assert [a.question for a in answers] == ["a", "b", "c", "late"]  # stream-time order, arrival within ties
    for a in answers:
        q = next(q for q in QUESTIONS if q.id == a.question)
        due = [t for t in chunk_ends if t >= q.t]
        assert a.t == (due[0] if due else chunk_ends[-1])  # first boundary at/after it; end of stream
    for end in (o for o in outs if isinstance(o, ResponseEnd)):
        deltas = "".join(o.text for o in outs if isinstance(o, TextDelta) and o.segment == end.segment)
        assert deltas.strip() == end.text
    assert all(o.capture <= o.output for o in outs)
    s = run.summary()
    assert s.chunks == 8 and s.frames == 16 and s.answers == 4 and s.commentaries >= 2


def test_encoding_runs_ahead_of_decoding(random_adapter):
    run = StreamRun(random_adapter, frames(8), exact(response=Schedule(0.5), max_commentary_tokens=30))
    outs = list(run)
    ends = [o for o in outs if isinstance(o, ResponseEnd)]
    chunk_of = {o.t_end: o.index for o in outs if isinstance(o, ChunkDone)}
    ahead = 0
    for e in ends:
        k = chunk_of[e.t]
        ahead += any(idx > k and start < e.output for idx, start, _ in run.encoding_spans)
    assert ahead >= len(ends) - 1  # the next chunk was being/been encoded while this response decoded


def test_deadline_cut_and_resume(random_adapter):
    cut = list(
        StreamRun(
            random_adapter,
            frames(6),
            exact(
                response=Schedule(0.5), deadline_s=1e-4, on_deadline=CutResponse(), max_commentary_tokens=30
            ),
        )
    )
    ends = [o for o in cut if isinstance(o, ResponseEnd)]
    assert ends and all(o.reason == "deadline" and not o.deadline_met for o in ends)
    res = list(
        StreamRun(
            random_adapter,
            frames(6),
            exact(
                response=Schedule(0.5), deadline_s=1e-4, on_deadline=ResumeResponse(), max_commentary_tokens=3
            ),
        )
    )
    ends = [o for o in res if isinstance(o, ResponseEnd)]
    assert ends and all(o.tokens == 3 and o.reason == "max_tokens" for o in ends)
    first_end = next(i for i, o in enumerate(res) if isinstance(o, ResponseEnd))
    assert (
        sum(isinstance(o, ChunkDone) for o in res[:first_end]) >= 2
    )  # resumed after a later chunk's prefill


def test_bounded_memory_over_a_long_stream(random_adapter):
    retention = RetentionPolicy(sink_tokens=16, text_window=64, vision_chunks=4)
    cfg = exact(
        cache=StreamCacheConfig(capacity=512, retention=retention),
        response=Schedule(4.0),
        max_commentary_tokens=5,
    )
    run = StreamRun(
        random_adapter,
        frames(90, preset="demo"),
        cfg,
        questions=[Question(t, "how many objects are there?", str(t)) for t in range(3, 90, 7)],
    )
    peak_rows = peak_vision = 0
    for o in run:
        if isinstance(o, ChunkDone):
            st = run.session.store
            peak_rows = max(peak_rows, st.length)
            peak_vision = max(peak_vision, sum(s.kind == "vision" for s in st.segments))
    s = run.summary()
    assert s.chunks == 90 and peak_vision == 4 and peak_rows <= 512
    assert run.session.store.evictions > 0
    rss = [b for _, b in run.stats.rss]
    assert max(rss[45:]) - max(rss[:45]) < 32 * 2**20  # flat: no growth past the warm-up beyond 32 MiB


def test_chunk_queue_drops_are_counted(random_adapter):
    """Paced at 100x real time the model cannot keep up: the chunk queue (drop_oldest, bound 2) drops
    the oldest chunks, and chunks past their deadline are dropped before encoding; every chunk is
    either processed or counted as dropped."""
    cfg = exact(chunk_queue=2, response=Schedule(0.5), max_commentary_tokens=20)
    run = StreamRun(random_adapter, frames(40), cfg, speed=100.0)
    outs = list(run)
    s = run.summary()
    dropped = s.drops["chunks/drop_oldest"] + s.drops["chunks/stale"]
    assert s.drops["chunks/drop_oldest"] > 0 and s.chunks + dropped == 40
    assert run.chunks.stats().peak_depth <= 2 and run.encoded.stats().peak_depth <= cfg.encoded_queue
    idx = [o.index for o in outs if isinstance(o, ChunkDone)]
    assert idx == sorted(idx) and len(idx) == s.chunks
