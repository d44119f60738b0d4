"""Loopback end to end, understand mode: real server + real client + the real streaming VLM engine
(the built-in architecture with random weights, real Hugging Face components).

Oracle: the same engine pieces (Chunker -> ChunkEncoder -> engine.Session) driven directly with the same
frames, capture times and question: the final text segments must equal the ResponseEnds, in order,
with the question's answer carrying its id."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from streamrt.client import AsyncClient, End, Text
from streamrt.engine import EngineConfig, Question, ResponseEnd, Session
from streamrt.engine.chunker import Chunker
from streamrt.engine.encoder import ChunkEncoder
from streamrt.server import Server, ServerConfig
from streamrt.server.understand import understand_factory

N = 7  # 3 full chunks of 2 frames + a partial one flushed at the end
ASK_AT = 4  # asked after frame 3 was processed: answered with the chunk frames 4 and 5 complete


def _frames() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return [np.roll(base, 4 * i, axis=1) for i in range(N)]


def _direct(adapter, frames) -> list[tuple[str, str | None]]:
    cfg = EngineConfig()
    ch = Chunker(adapter.fps, adapter.frames_per_chunk, 0.0)
    enc = ChunkEncoder(adapter, cfg.drop_threshold, cfg.token_budget)
    s = Session(adapter, cfg)
    outs = []
    for i, f in enumerate(frames):
        chunk = ch.push(f, i / adapter.fps, time.monotonic())
        if chunk is not None:
            qs = [Question(chunk.t_end, "what do you see?", "q1")] if i == ASK_AT + 1 else []
            outs += s.process(enc.encode(chunk), qs, time.monotonic(), float("inf"))
    chunk = ch.flush()
    outs += s.process(enc.encode(chunk), [], time.monotonic(), float("inf"))
    outs += s.finish([], chunk.t_end, time.monotonic())
    return [(o.text, o.question) for o in outs if isinstance(o, ResponseEnd)]


@pytest.mark.parametrize("which", ["random", "builtin"])
def test_understand_text_equals_direct_engine(request, arun, which: str) -> None:
    vlm_adapter = request.getfixturevalue("vlm_adapter" if which == "random" else "builtin_vlm")
    frames = _frames()
    fps = vlm_adapter.fps

    async def body():
        async with Server(ServerConfig(port=0), {"understand": understand_factory(vlm_adapter)}) as srv:
            async with AsyncClient(srv.url, "understand", {"budget_ms": 20000, "degrade": False}) as c:
                sess = srv.sessions[c.session_id]
                for i, f in enumerate(frames):
                    if i == ASK_AT:
                        await c.ask("what do you see?", "q1")
                    await c.send_frame(f, codec="png", capture_time=100.0 + i / fps)
                    while sess.counters["steps"] < i + 1:  # lock-step: no frame waits in the buffer
                        await asyncio.sleep(0.01)
                await c.end_input()
                events = [ev async for ev in c]
                return events, sess.drops

    events, drops = arun(body(), timeout=120)
    assert isinstance(events[-1], End) and events[-1].reason == "input_ended"
    assert not +drops
    texts = [e for e in events if isinstance(e, Text)]
    finals = [(e.text, e.question_id) for e in texts if e.final]
    assert finals == _direct(vlm_adapter, frames)
    assert "q1" in {q for _, q in finals}
    for e in texts:  # a non-final version is a prefix of its segment's final text
        final = next(t for t in texts if t.segment_id == e.segment_id and t.final)
        assert final.text.startswith(e.text)
    assert all(0 <= e.ref_seq < N for e in texts)
