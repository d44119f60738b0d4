"""Cross-session batching (streamrt.server.batch, GenerateEngine.step_batch, the scheduler's batches).

Oracle: each session run alone through the real GenEngine (`next_block` / `transform`). Tolerance: a
batched forward multiplies [B x frames, d] matrices where a solo one multiplies [frames, d]; the fp32
GEMM kernel chosen for the small timestep-embedding matmul then sums the same products in another
order (1 ulp, ~5e-7, at the first layer; every other op was checked bitwise equal row by row). Carried
through the cache for 10 blocks that stays below 1e-4 in pixel units ([-1, 1]), under 1/78 of one
uint8 level (2/255): so the float blocks must agree to 1e-4 and the uint8 frames to within one level.
Exact checks on top: a batch of one equals the solo engine bit for bit (the plan/commit split
replicates the engine), and a session's rows do not depend on which other session shares its batch
(bitwise), so no data crosses sessions.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import torch
from streamrt.models.gen.data import to_pixels

from streamrt.client import AsyncClient, OutputFrameEvent
from streamrt.gen.config import GenEngineConfig
from streamrt.gen.engine import GenEngine
from streamrt.server import batch as B
from streamrt.server.engine import InputFrame
from streamrt.server.generate import DEFAULT_PRESET, GenerateEngine, generate_factory
from streamrt.server.scheduler import Batch, Scheduler

PROMPTS = ["a red circle", "a blue square moving left", "a green triangle", "a red circle"]
TOL = 1e-4


def _engines(model, preset: str, n: int, **over) -> list[GenEngine]:
    out = []
    for i in range(n):
        e = GenEngine(model, GenEngineConfig.preset(preset, seed=10 + i, **over))
        e.set_prompt(PROMPTS[i % len(PROMPTS)])
        out.append(e)
    return out


def _batched_blocks(engines: list[GenEngine]) -> list[torch.Tensor]:
    plans = [B.plan_t2v(e) for e in engines]
    outs = B.run_blocks(engines, plans)
    for e, p, o in zip(engines, plans, outs, strict=True):
        B.finish(e, p, o)
    return outs


def test_batched_text_to_video_blocks_equal_solo_runs(gen_model, builtin_gen) -> None:
    for model, preset, blocks, over in (
        (gen_model, "quality", 10, {"sampler": "euler"}),
        (
            gen_model,
            "quality",
            6,
            {"sampler": "renoise"},
        ),  # fresh noise per step, from each engine's generator
        (gen_model, "quality", 6, {"guidance": 1.5, "guidance_frames": 6}),  # guided, then not
        (gen_model, "fast", 10, {}),
        (builtin_gen, "fast", 4, {}),
    ):
        solo, bat = _engines(model, preset, 3, **over), _engines(model, preset, 3, **over)
        worst = 0.0
        for _ in range(blocks):  # the first block (first_block_steps), then steady state with a full ring
            ref = [e.next_block() for e in solo]
            got = _batched_blocks(bat)
            worst = max(worst, max((r - g).abs().max().item() for r, g in zip(ref, got, strict=True)))
        assert worst <= TOL, (preset, worst)
        assert [e.cache.committed for e in bat] == [e.cache.committed for e in solo]
        assert all(e.emitted == s.emitted for e, s in zip(bat, solo, strict=True))


def test_a_batch_of_one_is_bitwise_the_solo_engine(gen_model) -> None:
    (solo,), (one,) = _engines(gen_model, "quality", 1), _engines(gen_model, "quality", 1)
    for _ in range(8):
        assert torch.equal(solo.next_block(), _batched_blocks([one])[0])


def test_a_sessions_rows_do_not_depend_on_its_batch_partner(gen_model) -> None:
    a1, b = _engines(gen_model, "fast", 2)
    a2, _, c = _engines(gen_model, "fast", 3)
    for _ in range(6):
        x = _batched_blocks([a1, b])[0]
        y = _batched_blocks([a2, c])[0]
        assert torch.equal(x, y)


def _frame(seq: int, px: np.ndarray) -> InputFrame:
    return InputFrame(seq, seq * 125_000, px, 0.0, 1e9)


def test_step_batch_video_to_video_equals_solo_steps_including_skips(gen_model) -> None:
    factory = generate_factory(gen_model)
    params = [{"input": "video", "seed": s, "prompt": p, "degrade": False} for s, p in enumerate(PROMPTS[:3])]
    solo = [factory(p) for p in params]
    bat = [factory(p) for p in params]
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)  # resized to the model's 16x16
    repeats = 0
    for k in range(8):
        frames = [
            _frame(k, base if k in (3, 4) and i == 1 else np.roll(base, 3 * k + i, axis=1)) for i in range(3)
        ]
        ref = [e.step(f) for e, f in zip(solo, frames, strict=True)]
        got = GenerateEngine.step_batch(bat, frames)
        for r, g in zip(ref, got, strict=True):
            (ro,), (go,) = r.outputs, g.outputs
            assert (ro.ref_seq, ro.repeated) == (go.ref_seq, go.repeated)
            repeats += go.repeated
            diff = np.abs(ro.pixels.astype(int) - go.pixels.astype(int))
            assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    assert repeats >= 1  # the near-identical input of session 1 was skipped in both paths


def test_a_failed_batch_leaves_every_engine_as_before(gen_model) -> None:
    factory = generate_factory(gen_model)
    good = [factory({"seed": s}) for s in (1, 2)]
    oracle = [factory({"seed": s}) for s in (1, 2)]
    for e in (*good, *oracle):
        e.step(None)
    broken = factory({"seed": 3})
    broken.step(None)
    broken.engine.text = broken.engine.text[..., :5]  # a corrupted state: the model raises on it
    try:
        GenerateEngine.step_batch([good[0], broken, good[1]], [None, None, None])
        raise AssertionError("the batch should have raised")
    except RuntimeError:
        pass
    for g, o in zip(good, oracle, strict=True):  # stepping alone now gives the untouched engine's block
        (go, *_), (oo, *_) = g.step(None).outputs, o.step(None).outputs
        assert np.array_equal(go.pixels, oo.pixels)


def test_scheduler_batches_queued_jobs_of_one_key_and_isolates_failures(arun) -> None:
    calls: list[list[str]] = []
    gate = threading.Event()

    def runner(fns, degrades):
        calls.append([f.__name__ for f in fns])
        out = []
        for f in fns:
            try:
                out.append(f(False))
            except Exception as e:
                out.append(e)
        return out

    def job(name: str, fail: bool = False):
        def f(degrade: bool) -> str:
            if fail:
                raise RuntimeError(f"{name} broke")
            return name

        f.__name__ = name
        return f

    async def body():
        s = Scheduler(1, max_batch=3)
        now = time.monotonic()
        blocker = asyncio.create_task(s.run("z", lambda d: gate.wait(5), deadline=now, droppable=False))
        await asyncio.sleep(0.05)
        spec = [("a", "k", 1.0, False), ("b", "k", 2.0, True), ("c", "j", 3.0, False)]
        spec += [("d", "k", 4.0, False), ("e", "k", 5.0, False)]
        tasks = [
            asyncio.create_task(
                s.run(n, job(n, fail), deadline=now + dl, droppable=False, batch=Batch(key, runner))
            )
            for n, key, dl, fail in spec
        ]
        await asyncio.sleep(0.05)
        gate.set()
        await blocker
        res = await asyncio.gather(*tasks, return_exceptions=True)
        s.close()
        return res, s.counters

    res, counters = arun(body())
    assert calls == [["a", "b", "d"]], calls  # c (another key) and e (no partner left) run alone
    assert res[0] == "a" and isinstance(res[1], RuntimeError) and res[2:] == ["c", "d", "e"]
    assert counters["batches"] == 1 and counters["batched_jobs"] == 3 and counters["failed"] == 1


def test_server_batches_sessions_and_each_gets_its_own_stream(gen_model, serve, arun) -> None:
    """Three paced sessions queue behind a busy worker, run as one batch, and still match solo runs."""
    specs = [("a red circle", 1), ("a blue square moving left", 2), ("a green triangle", 3)]

    async def body():
        async with serve() as srv:
            clients = [
                AsyncClient(
                    srv.url,
                    "generate",
                    {"prompt": p, "seed": s, "degrade": False, "out_codec": "raw", "budget_ms": 5000},
                )
                for p, s in specs
            ]
            for c in clients:
                await c.connect()
            for _ in range(3):  # occupy the worker so the sessions' ticks queue up together
                await srv.scheduler.run("blocker", lambda d: time.sleep(0.4), deadline=0, droppable=False)
            got = await asyncio.gather(*(_collect(c, 10) for c in clients))
            for c in clients:
                await c.close()
            return got, dict(srv.scheduler.counters)

    got, counters = arun(body(), 120)
    assert counters["batches"] >= 1, counters
    for (prompt, seed), frames in zip(specs, got, strict=True):
        eng = GenEngine(gen_model, GenEngineConfig.preset(DEFAULT_PRESET, seed=seed))
        eng.set_prompt(prompt)
        ref = []
        while len(ref) <= max(f.header.seq for f in frames):
            ref.extend(to_pixels(eng.next_block()[0].float()))
        for f in frames:  # by output seq (a frame dropped for a slow reader does not shift the rest)
            r = ref[f.header.seq]
            diff = np.abs(f.pixels().astype(int) - r.astype(int))
            assert diff.max() <= 1 and (diff == 0).mean() > 0.99, prompt


async def _collect(c: AsyncClient, n: int) -> list[OutputFrameEvent]:
    got = []
    while len(got) < n:
        ev = await c.recv(10)
        if isinstance(ev, OutputFrameEvent):
            got.append(ev)
    return got
