"""Speculative decoding inside the engine, against the engine's own plain greedy path as the oracle
(`EngineConfig(spec=None)`: one token per forward, no drafters).

On generated shapes-world streams, with the shipped built-in model and its shipped draft (whatever
checkpoint is shipped: only spec against plain is compared, never a fixed text), and on the random
built-in architecture: the same commentary and answers (text, token counts, end reasons, stream
times), and the same StreamCache after the session: segment table, positions, arrival index,
eviction counters, and K/V rows. Caches small enough to evict during the stream (and during
responses) are included. Bitwise K/V needs the target's forward over k + 1 tokens to compute each
row as a one-token forward does: those runs use `batch_invariant`; the others compare K/V to float
tolerance (the text must still be identical).

Also: rounds really speculate (several tokens per forward), a response at an expired deadline is cut
(or, policy "resume", advanced by one token per turn) exactly as plain decoding does it, and the
decoder's history is the text the model has seen.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from streamrt.cache import RetentionPolicy, StreamCacheConfig
from streamrt.models.vlm import load_adapter

from streamrt.engine import (
    ChunkDone,
    EngineConfig,
    FinishResponse,
    Question,
    ResponseEnd,
    ResumeResponse,
    Schedule,
    SilenceArgmax,
    StreamRun,
    TextDelta,
)
from streamrt.engine.config import Speculation
from streamrt.engine.session import Session
from streamrt.spec import SpecConfig
from streamrt.spec.invariant import batch_invariant
from streamrt.synth import World, WorldConfig


@pytest.fixture(scope="module")
def builtin():
    return load_adapter("builtin")


def frames(adapter, seconds: float, seed: int, preset: str = "demo"):
    h, w = adapter.settings.frame_size or (80, 128)
    world = World(WorldConfig.preset(preset, seed=seed, fps=adapter.fps, width=w, height=h))
    return list(itertools.islice(world.frames(), round(seconds * adapter.fps)))


SMALL = StreamCacheConfig(
    capacity=1024, retention=RetentionPolicy(sink_tokens=16, text_window=40, vision_chunks=2)
)
"""Evicts often: vision beyond 2 chunks, text beyond 40 tokens (a response alone can overflow it)."""


def run(adapter, fr, questions, **kw) -> tuple[list[tuple], Session]:
    cfg = EngineConfig(on_deadline=FinishResponse(), **kw)
    r = StreamRun(adapter, fr, cfg, questions=questions)
    outs = [(o.kind, o.t, o.text, o.tokens, o.reason, o.question) for o in r if isinstance(o, ResponseEnd)]
    r.close()
    return outs, r.session


def assert_same_cache(a: Session, b: Session, bitwise: bool) -> None:
    x, y = a.store, b.store
    n = x.length
    assert n == y.length
    fields = lambda s: (s.kind, s.start, s.length, s.pos_start, s.pos_end, s.pinned, s.timestamp)  # noqa: E731
    assert [fields(s) for s in x.segments] == [fields(s) for s in y.segments]
    assert torch.equal(x.positions(), y.positions())
    assert torch.equal(x.token_index[:n], y.token_index[:n])
    assert (x.next_position, x.evictions, x.evicted_tokens) == (
        y.next_position,
        y.evictions,
        y.evicted_tokens,
    )
    for buf in ("k", "v"):
        got, want = getattr(x, buf)[..., :n, :], getattr(y, buf)[..., :n, :]
        if bitwise:
            assert torch.equal(got, want), buf
        else:
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def spec_vs_plain(adapter, fr, questions, bitwise: bool, **kw) -> tuple[list[tuple], Session]:
    spec = Speculation(decoder=SpecConfig(adaptive=False, fixed_draft=4))  # always draft: real rounds
    want, plain = run(adapter, fr, questions, spec=None, **kw)
    got, fast = run(adapter, fr, questions, spec=spec, **kw)
    assert got == want
    assert_same_cache(fast, plain, bitwise)
    return got, fast


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_builtin_spec_equals_plain(builtin, seed: int) -> None:
    fr = frames(builtin, 20.0, seed)
    qs = [
        Question(6.0, "what colour is the circle?", "a"),
        Question(13.0, "how many objects are there?", "b"),
    ]
    outs, session = spec_vs_plain(builtin, fr, qs, bitwise=False)
    assert (
        any(o[0] == "commentary" and o[3] > 0 for o in outs)
        and len([o for o in outs if o[0] == "answer"]) == 2
    )
    assert session.decoder is not None and session.decoder.totals.accepted > 0  # several tokens per forward


@pytest.mark.parametrize("seed", [5, 6])
def test_builtin_spec_equals_plain_while_evicting(builtin, seed: int) -> None:
    fr = frames(builtin, 30.0, seed, preset="busy")
    qs = [Question(9.0, "what just happened?", "a")]
    _, session = spec_vs_plain(builtin, fr, qs, bitwise=False, cache=SMALL)
    assert session.store.evicted_tokens > 0


def test_bitwise_cache_with_batch_invariant_forward(builtin) -> None:
    fr = frames(builtin, 16.0, 7, preset="busy")
    with batch_invariant(builtin.model):
        spec_vs_plain(builtin, fr, [Question(5.0, "what shape is red?", "a")], bitwise=True, cache=SMALL)


def test_random_weights_greedy_policy_bitwise(random_adapter) -> None:
    """The random built-in architecture (no shipped draft: n-gram lookup only) with the greedy
    response policy, tiny caches and token drop off."""
    fr = frames(random_adapter, 12.0, 8, preset="busy")
    with batch_invariant(random_adapter.model):
        spec_vs_plain(
            random_adapter, fr, [Question(3.0, "what colour is the square?", "a")], bitwise=True,
            cache=SMALL, response=SilenceArgmax(), drop_threshold=None, max_commentary_tokens=12,
        )  # fmt: skip


def test_expired_deadline_cuts_like_plain(builtin) -> None:
    """A deadline already past: plain and speculative decoding both cut before the first token."""
    fr = frames(builtin, 6.0, 2)
    outs = {}
    for name, spec in (("plain", None), ("spec", Speculation())):
        cfg = EngineConfig(spec=spec, deadline_s=1e-9)
        r = StreamRun(builtin, fr, cfg)
        outs[name] = [(o.kind, o.text, o.reason) for o in r if isinstance(o, ResponseEnd)]
        r.close()
    assert outs["spec"] == outs["plain"] and all(o == ("commentary", "", "deadline") for o in outs["spec"])


def test_resume_when_late_matches_plain(random_adapter) -> None:
    """Deadline policy "resume" with every deadline already past: speculation feeds plain decoding's
    one token per turn, so the interleaving of chunks and response tokens is plain decoding's."""
    fr = frames(random_adapter, 6.0, 4, preset="busy")
    seqs = {}
    for name, spec in (("plain", None), ("spec", Speculation())):
        cfg = EngineConfig(
            response=Schedule(0.5), deadline_s=1e-4, on_deadline=ResumeResponse(), max_commentary_tokens=4,
            spec=spec,
        )  # fmt: skip
        r = StreamRun(random_adapter, fr, cfg)
        seqs[name] = [
            ("chunk", o.index) if isinstance(o, ChunkDone) else ("delta", o.segment, o.text)
            if isinstance(o, TextDelta) else ("end", o.segment, o.text, o.tokens, o.reason)
            for o in r
        ]  # fmt: skip
        r.close()
    assert seqs["spec"] == seqs["plain"]
    assert sum(o[0] == "end" for o in seqs["plain"]) >= 2


def test_history_is_the_text_the_model_saw(builtin) -> None:
    """Without evictions the decoder's history holds every text row of the cache (vision chunks count
    their marker rows), starting with the system prompt; no token is left pending."""
    keep_all = StreamCacheConfig(
        capacity=4096, retention=RetentionPolicy(sink_tokens=16, text_window=4096, vision_chunks=1000)
    )
    qs = [Question(4.0, "what colour is the circle?", "a")]
    _, session = run(builtin, frames(builtin, 10.0, 3), qs, spec=Speculation(), cache=keep_all)
    a, dec = builtin, session.decoder
    assert dec is not None and dec.pending is None
    marks = [*a.encode(a.template.vision_prefix), *a.encode(a.template.vision_suffix)]
    segs = session.store.segments
    text_rows = sum(s.length for s in segs if s.kind != "vision")
    assert len(dec.history.tokens) == text_rows + len(marks) * sum(s.kind == "vision" for s in segs)
    assert dec.history.tokens[: len(a.system_ids())] == a.system_ids()
    assert dec.totals.tokens > 0
