"""Sessions under concurrency: isolation, a slow reader, a vanishing client, graceful shutdown.

Oracles: a direct GenEngine run per session (isolation; within one uint8 level, since sessions queued
together run as one cross-session batch, see test_batch.py), the paced frame rate and the session's budget
(slow reader), weak references and the event loop's task set (cleanup), the close codes and the `end`
message (shutdown)."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
import weakref

import numpy as np
from streamrt.models.gen.data import to_pixels
from websockets.asyncio.client import connect

from streamrt.client import AsyncClient, End, OutputFrameEvent
from streamrt.gen.config import GenEngineConfig
from streamrt.gen.engine import GenEngine
from streamrt.server import Server, ServerConfig
from streamrt.server import protocol as P
from streamrt.server.generate import DEFAULT_PRESET, generate_factory
from streamrt.server.security import new_session_id


def _direct(model, prompt: str, seed: int, n: int) -> list[np.ndarray]:
    eng = GenEngine(model, GenEngineConfig.preset(DEFAULT_PRESET, seed=seed))
    eng.set_prompt(prompt)
    out: list[np.ndarray] = []
    while len(out) < n:
        out.extend(to_pixels(eng.next_block()[0].float()))
    return out[:n]


async def _collect(c: AsyncClient, n: int) -> list[OutputFrameEvent]:
    got = []
    while len(got) < n:
        ev = await c.recv(10)
        if isinstance(ev, OutputFrameEvent):
            got.append(ev)
    return got


def test_two_concurrent_sessions_never_see_each_others_output(gen_model, serve, arun) -> None:
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
            readies = [await c.connect() for c in clients]
            got = await asyncio.gather(*(_collect(c, 8) for c in clients))
            for c in clients:
                await c.close()
            return readies, got

    readies, got = arun(body())
    assert len({r.session_id for r in readies}) == len(specs)
    for (prompt, seed), frames in zip(specs, got, strict=True):
        seqs = [f.header.seq for f in frames]
        assert seqs == sorted(set(seqs))  # in order, none twice (a slow reader may lose some)
        ref = _direct(gen_model, prompt, seed, seqs[-1] + 1)
        for f in frames:  # sessions queued together run as one batch: one uint8 level (test_batch.py)
            diff = np.abs(f.pixels().astype(int) - ref[f.header.seq].astype(int))
            assert diff.max() <= 1 and (diff == 0).mean() > 0.99, prompt


def test_session_ids_are_unguessable() -> None:
    ids = {new_session_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(
        len(i) == 24 and set(i) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        for i in ids
    )


def _slow_reader_body(model, seconds: float = 2.5, limit_s: float = 15.0):
    async def body():
        cfg = ServerConfig(port=0, stats_interval_s=0.5)
        async with Server(cfg, {"generate": generate_factory(model)}) as srv:
            # A: video-to-video, sends frames fast, never reads; a tiny receive buffer fills at once
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", srv.port))
            slow = await connect(
                srv.url, sock=sock, subprotocols=[P.SUBPROTOCOL], compression=None, max_queue=1
            )
            await slow.send(
                '{"type":"hello","mode":"generate","params":{"input":"video","out_codec":"raw","budget_ms":1000}}'
            )
            await asyncio.sleep(0.3)
            slow_session = next(iter(srv.sessions.values()))
            noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
            frame = P.encode_frame(P.FrameHeader(P.KIND_INPUT, "raw", 0, 0, -1, 128, 128), noise.tobytes())

            async def flood():
                while True:
                    await slow.send(frame)
                    await asyncio.sleep(0.005)

            flooder = asyncio.create_task(flood())
            # B: text to video, paced at 8 fps, reads everything
            b = AsyncClient(
                srv.url, "generate", {"prompt": "a red circle", "budget_ms": 250, "out_codec": "raw"}
            )
            await b.connect()
            t0 = time.monotonic()
            frames, lat = 0, []
            # at least `seconds`, and until the slow reader's writer has blocked (a loaded machine is slow)
            while (el := time.monotonic() - t0) < seconds or (
                slow_session.outbox.dropped_frames == 0 and el < limit_s
            ):
                ev = await b.recv(5)
                if isinstance(ev, OutputFrameEvent):
                    frames += 1
                    lat.append(ev.received - ev.header.capture_us / 1e6)
            elapsed = time.monotonic() - t0
            max_pending = slow_session.outbox.frames_pending
            dropped = slow_session.outbox.dropped_frames
            flooder.cancel()
            await b.close()
            slow.transport.abort()
            return frames, elapsed, lat, dropped, max_pending

    return body()


def test_slow_reader_loses_frames_and_other_sessions_keep_pace(arun) -> None:
    from streamrt.models.gen.dit import GenModelConfig
    from streamrt.models.gen.model import GenModel, GenSpec
    from streamrt.models.gen.text import shapes_world_vocab

    vocab = shapes_world_vocab()  # 128x128 frames, 32-pixel patches: big outputs (48 KB raw), cheap compute
    model = GenModel(
        GenSpec(
            GenModelConfig(patch=32, dim=24, heads=2, layers=1, text_len=6, vocab_size=len(vocab)),
            vocab,
            128,
            128,
            3.0,
        )
    )
    frames, elapsed, lat, dropped, pending = arun(_slow_reader_body(model))
    assert dropped > 0, "the slow reader's writer never blocked (test did not exercise backpressure)"
    assert pending <= 2
    assert frames >= 0.75 * 8 * elapsed, (frames, elapsed)  # B keeps its 8 fps
    assert float(np.percentile(lat, 95)) < 0.25, np.percentile(lat, 95)  # and its budget


def test_a_vanishing_client_is_cleaned_up(gen_model, arun) -> None:
    async def body():
        cfg = ServerConfig(port=0, stats_interval_s=0.1)
        async with Server(cfg, {"generate": generate_factory(gen_model)}) as srv:
            await asyncio.sleep(0.05)
            baseline = {t for t in asyncio.all_tasks() if not t.done()}
            refs = []
            for _ in range(3):
                c = AsyncClient(srv.url, "generate", {"input": "video", "budget_ms": 2000}, reconnect=False)
                await c.connect()
                sess = next(iter(srv.sessions.values()))
                refs.append((weakref.ref(sess), weakref.ref(sess.engine)))
                for _ in range(5):
                    await c.send_frame(np.zeros((16, 16, 3), np.uint8))
                c._ws.transport.abort()  # vanish: no close handshake
                await c.close()  # the client's own keep-alive task (the server saw no close frame)
                for _ in range(100):
                    if not srv.sessions:
                        break
                    await asyncio.sleep(0.05)
                assert not srv.sessions
                del sess, c
            await asyncio.sleep(0.2)  # the scheduler closes engines after their last job
            left = {t for t in asyncio.all_tasks() if not t.done()} - baseline - {asyncio.current_task()}
            gc.collect()
            return left, [(s(), e()) for s, e in refs], srv.scheduler.queued

    left, alive, queued = arun(body())
    assert not left, left
    assert all(s is None and e is None for s, e in alive), "session or engine still referenced"
    assert queued == 0


def test_graceful_shutdown_ends_every_session(factories, arun) -> None:
    async def body():
        srv = await Server(ServerConfig(port=0), factories).start()
        clients = [
            AsyncClient(srv.url, "generate", {"prompt": "a red circle"}, reconnect=False) for _ in range(2)
        ]
        for c in clients:
            await c.connect()
            await _collect(c, 1)
        stop = asyncio.create_task(srv.stop())
        ends = []
        for c in clients:
            async for ev in c:
                last = ev
            await asyncio.wait_for(c._ws.wait_closed(), 5)
            ends.append((last, c._ws.close_code))
        await stop
        try:
            await AsyncClient(srv.url, "generate", retries=0).connect()
            refused = False
        except Exception:
            refused = True
        return ends, refused

    ends, refused = arun(body())
    assert all(isinstance(e, End) and e.reason == "shutdown" and code == 1001 for e, code in ends), ends
    assert refused
