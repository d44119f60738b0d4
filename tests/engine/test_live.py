"""A live source (pushed JPEGs, as the server receives them) at 8 fps in real time for 4 s: frames go onto
the model's 2 fps grid (the rest counted as skipped), a chunk's capture time is the capture time of
its last frame (not when the model got to it), a question asked mid-stream with `ask()` is answered
at a later chunk boundary, and the run ends cleanly when the source ends."""

from __future__ import annotations

import itertools
import threading
import time

import cv2

from streamrt.engine import ChunkDone, EngineConfig, FinishResponse, ResponseEnd, Schedule, StreamRun
from streamrt.ingest import PixelSpec, PushedSource
from streamrt.synth import World, WorldConfig


def test_live_pushed_source(random_adapter):
    src = PushedSource(capacity=8, pixels=PixelSpec(format="rgb24", size=(128, 80)))
    world = World(WorldConfig.preset("busy", seed=2, fps=8.0, width=128, height=80))
    jpegs = [
        cv2.imencode(".jpg", f.pixels[:, :, ::-1])[1].tobytes() for f in itertools.islice(world.frames(), 32)
    ]
    pushed: list[float] = []

    def pusher():
        start = time.monotonic()
        for i, data in enumerate(jpegs):
            time.sleep(max(0.0, start + i / 8 - time.monotonic()))
            cap = time.monotonic()
            pushed.append(cap)
            src.push(data, capture_time=cap)
        src.end()

    cfg = EngineConfig(
        response=Schedule(1.0), on_deadline=FinishResponse(), max_commentary_tokens=2, max_answer_tokens=2
    )
    run = StreamRun(random_adapter, src, cfg, live=True)
    th = threading.Thread(target=pusher)
    th.start()
    outs, asked = [], None
    for o in run:
        outs.append(o)
        if asked is None and isinstance(o, ChunkDone) and o.index == 1:
            asked = run.ask("how many objects are there?")
    th.join()
    chunks = [o for o in outs if isinstance(o, ChunkDone)]
    s = run.summary()
    assert s.frames + s.frames_skipped + s.drops["source/drop_oldest"] == 32 and s.frames_skipped >= 20
    assert 4 <= len(chunks) <= 5 and [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks[:-1]:  # the last may be padded at the end
        assert any(abs(c.capture - p) < 1e-6 for p in pushed)
    answers = [o for o in outs if isinstance(o, ResponseEnd) and o.kind == "answer"]
    assert asked is not None and [a.question for a in answers] == [asked.id]
    assert answers[0].t >= asked.t and answers[0].t > chunks[1].t_end - 1e-9
