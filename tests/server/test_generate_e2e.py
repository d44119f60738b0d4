"""Loopback end to end, generate mode: real server + real client + real GenEngine (tiny random weights).

Oracle: the same GenEngine driven directly (same model, preset, seed, prompt schedule) without any
server. Raw output frames must be bit-identical, in order, with the right seq / ref_seq, and a prompt
switch sent as `params` must take effect exactly at the seq named by `params_ack`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from streamrt.models.gen.data import to_pixels, to_tensor

from streamrt.client import AsyncClient, End, OutputFrameEvent, ParamsAck, Stats
from streamrt.gen.config import GenEngineConfig
from streamrt.gen.engine import GenEngine
from streamrt.server.generate import DEFAULT_PRESET


def _direct_t2v(model, prompts: dict[int, str], n: int, preset: str = DEFAULT_PRESET) -> list[np.ndarray]:
    """Frames of a direct GenEngine run; prompts maps an output frame index to the prompt from there."""
    eng = GenEngine(model, GenEngineConfig.preset(preset, seed=0))
    out: list[np.ndarray] = []
    switched = set()
    while len(out) < n:
        if len(out) in prompts and len(out) not in switched:  # once, at the first step producing that index
            eng.set_prompt(prompts[len(out)])
            switched.add(len(out))
        block = eng.next_block()  # None while a pipelined schedule fills
        if block is not None:
            out.extend(to_pixels(block[0].float()))
    return out[:n]


async def _frames(c: AsyncClient, n: int, acks: list[ParamsAck] | None = None) -> list[OutputFrameEvent]:
    got: list[OutputFrameEvent] = []
    while len(got) < n:
        ev = await c.recv(10)
        if isinstance(ev, OutputFrameEvent):
            got.append(ev)
        elif isinstance(ev, ParamsAck) and acks is not None:
            acks.append(ev)
    return got


@pytest.mark.parametrize("preset", ["fast", "rolling"])
def test_text_to_video_frames_equal_direct_engine(gen_model, serve, arun, preset: str) -> None:
    async def body():
        async with serve() as srv:
            params = {
                "prompt": "a red circle",
                "degrade": False,
                "out_codec": "raw",
                "budget_ms": 5000,
                "preset": preset,
            }
            async with AsyncClient(srv.url, "generate", params) as c:
                first = await _frames(c, 6)
                acks: list[ParamsAck] = []
                rev = await c.set_params(prompt="a blue square")
                rest = await _frames(c, 8, acks)
                while not acks:
                    ev = await c.recv(10)
                    if isinstance(ev, ParamsAck):
                        acks.append(ev)
                return first + rest, acks, rev

    frames, acks, rev = arun(body())
    assert [f.header.seq for f in frames] == list(range(len(frames)))
    assert all(f.header.ref_seq == -1 and f.header.codec == "raw" for f in frames)
    assert acks[0].rev == rev
    switch = acks[0].applies_at_seq
    assert 6 <= switch <= 12 and (switch % 2 == 0 or preset == "rolling")  # fast: whole blocks of 2 frames
    ref = _direct_t2v(gen_model, {0: "a red circle", switch: "a blue square"}, len(frames), preset)
    for f, r in zip(frames, ref, strict=True):
        assert np.array_equal(f.pixels(), r), f.header.seq
    # the switch changed the stream: the frames after it differ from a run without the switch
    noswitch = _direct_t2v(gen_model, {0: "a red circle"}, len(frames), preset)
    assert not np.array_equal(frames[switch].pixels(), noswitch[switch])


def test_video_to_video_answers_every_input_exactly(gen_model, serve, arun) -> None:
    rng = np.random.default_rng(1)
    inputs = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(6)]

    async def body():
        async with serve() as srv:
            params = {
                "prompt": "a green triangle",
                "input": "video",
                "degrade": False,
                "out_codec": "raw",
                "budget_ms": 5000,
            }
            async with AsyncClient(srv.url, "generate", params) as c:
                got, stats = [], []
                for i, x in enumerate(inputs):
                    seq = await c.send_frame(x, codec="raw", capture_time=1000.0 + i)
                    assert seq == i
                    got += await _frames(c, 1)  # lock-step: no input is dropped
                await c.end_input()
                async for ev in c:
                    if isinstance(ev, Stats):
                        stats.append(ev)
                    last = ev
                return got, last

    got, last = arun(body())
    assert isinstance(last, End) and last.reason == "input_ended"
    assert [f.header.ref_seq for f in got] == list(range(6))
    assert [f.header.capture_us for f in got] == [int((1000.0 + i) * 1e6) for i in range(6)]
    eng = GenEngine(gen_model, GenEngineConfig.preset(DEFAULT_PRESET, seed=0))
    eng.set_prompt("a green triangle")
    for f, x in zip(got, inputs, strict=True):
        out, repeated = eng.transform(to_tensor(x)[None, None].to(torch.float32))
        assert np.array_equal(f.pixels(), to_pixels(out[0].float())[0])
        assert bool(f.header.flags & 1) == repeated


def test_jpeg_roundtrip_and_stats(serve, arun) -> None:
    async def body():
        async with serve(stats_interval_s=0.3) as srv:
            params = {"prompt": "a red circle", "input": "video", "out_codec": "jpeg", "budget_ms": 5000}
            async with AsyncClient(srv.url, "generate", params) as c:
                frame = np.full((48, 64, 3), 200, np.uint8)  # resized to the model's 16x16 by the server
                await c.send_frame(frame)
                f = (await _frames(c, 1))[0]
                while not isinstance(ev := await c.recv(5), Stats):
                    pass
                return f, ev

    f, st = arun(body())
    assert f.pixels().shape == (16, 16, 3) and f.header.codec == "jpeg"
    d = st.data
    assert d["frames_in"] == 1 and d["frames_out"] == 1 and d["deadline_miss_rate"] == 0.0
    assert set(d["latency_ms"]) == {"p50", "p95", "p99"} and d["time_to_first_output_ms"] > 0
    assert d["queue"] == {"input": 0, "output_frames": 0, "scheduler": 0}


def test_builtin_generator_through_the_server(builtin_gen, arun) -> None:
    """The shipped model: 8 text-to-video frames through server and client equal the direct engine."""
    from streamrt.server import Server, ServerConfig
    from streamrt.server.generate import generate_factory

    async def body():
        async with Server(ServerConfig(port=0), {"generate": generate_factory(builtin_gen)}) as srv:
            params = {"prompt": "a red circle", "degrade": False, "out_codec": "raw", "budget_ms": 10000}
            async with AsyncClient(srv.url, "generate", params) as c:
                return await _frames(c, 8)

    frames = arun(body(), timeout=120)
    ref = _direct_t2v(builtin_gen, {0: "a red circle"}, 8)
    assert frames[0].pixels().shape == (builtin_gen.spec.height, builtin_gen.spec.width, 3)
    assert all(np.array_equal(f.pixels(), r) for f, r in zip(frames, ref, strict=True))
