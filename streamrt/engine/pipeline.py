"""One streaming session end to end: source frames -> chunks -> vision encoding -> language model.

Three stages, each on its own thread, joined by bounded queues with named drop policies:

    feeder thread   source frames, real-time pacing (files at --speed realtime), Chunker  ─► chunks
    encoder thread  ChunkEncoder: vision encoder + differential token drop                ─► encoded
    caller thread   Session: prefill, response policy, streamed decoding, questions       ─► outputs

The encoder never waits for text decoding: it runs ahead on its own thread, bounded by the `encoded`
queue (policy "block": an encoded chunk is never thrown away, since the token drop of the next one
refers to it). The `chunks` queue takes the pressure: "drop_oldest" for live sources and paced
replay (stale input goes, every drop counted), "block" at full speed (a file can wait); live and
paced, a chunk whose deadline passed while it queued is dropped before encoding (counted as stale).

Capture time and deadline of a chunk: live/paced, the capture time of its last frame; at full speed
("max"), the moment the language model could start it (the later of its completion and the end of
the previous chunk), so latency measures processing, not time spent queued behind a file that is
read faster than real time. The deadline is capture + budget (default: the chunk's duration, divided
by the speed-up when a file is paced faster than real time).

`StreamRun` owns the threads, the queues, the question inbox and the statistics; iterate it for
outputs, `ask()` from any thread, `close()` (or leave the `with` block) to stop everything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Protocol

import numpy as np

from streamrt.engine.asks import Inbox
from streamrt.engine.chunker import Chunker
from streamrt.engine.config import EngineConfig
from streamrt.engine.encoder import ChunkEncoder
from streamrt.engine.queues import BoundedQueue, Closed
from streamrt.engine.session import Session
from streamrt.engine.stats import StatsCollector, Summary
from streamrt.engine.types import Chunk, ChunkDone, EncodedChunk, Output, Question
from streamrt.models.vlm import VLMAdapter

log = logging.getLogger(__name__)


class FrameLike(Protocol):
    """What a source yields: `streamrt.ingest.Frame` and `streamrt.synth.SynthFrame` both fit."""

    @property
    def pixels(self) -> np.ndarray: ...  # [H, W, 3] uint8 RGB

    @property
    def t(self) -> float: ...


def source_drops(frames: object) -> dict[str, int]:
    """Drops counted by a live ingest source: the grabbers' keep-latest overwrites, the pushed
    buffer's drop-oldest and stale frames ({} for sources that never drop, e.g. files)."""
    st = getattr(frames, "stats", None)
    out = {}
    for attr, name in (
        ("dropped", "source/keep_latest"),
        ("dropped_oldest", "source/drop_oldest"),
        ("dropped_stale", "source/stale"),
    ):
        n = getattr(st, attr, None)
        if isinstance(n, int):
            out[name] = n
    return out


class StreamRun:
    """A running session over one source (see module docstring).

    speed: None = as fast as possible ("max"); a number = paced at that multiple of real time (1.0 =
    "realtime"). live: the source is live (frames carry `capture_time`; never paced; drop_oldest).
    """

    def __init__(
        self,
        adapter: VLMAdapter,
        frames: Iterable[FrameLike],
        config: EngineConfig | None = None,
        *,
        questions: Iterable[Question] = (),
        speed: float | None = None,
        live: bool = False,
    ) -> None:
        self.adapter = adapter
        self.config = cfg = config or EngineConfig()
        self.fps = cfg.fps or adapter.fps
        fpc = adapter.frames_per_chunk
        self.paced = speed is not None and not live
        self.budget_s = (cfg.deadline_s or fpc / self.fps) / (speed if self.paced and speed else 1.0)
        """Seconds from a chunk's capture to its outputs' deadline (paced at N x: a chunk's duration / N)."""
        self.speed = speed
        self.live = live
        self.chunker = Chunker(self.fps, fpc, self.budget_s)
        self.encoder = ChunkEncoder(adapter, cfg.drop_threshold, cfg.token_budget)
        self.session = Session(adapter, cfg)
        policy = "drop_oldest" if (live or self.paced) else "block"
        self.chunks: BoundedQueue[Chunk] = BoundedQueue("chunks", cfg.chunk_queue, policy)
        self.encoded: BoundedQueue[EncodedChunk] = BoundedQueue("encoded", cfg.encoded_queue, "block")
        self.inbox = Inbox(cfg.max_pending_questions)
        for q in questions:
            self.inbox.put(q)
        self.stats = StatsCollector()
        self.encoding_spans: list[tuple[int, float, float]] = []
        """(chunk index, start, end) monotonic times of vision encoding, last 1000 (for tests/traces)."""
        self.stale_chunks = 0
        """Chunks (live/paced) whose deadline had passed before encoding began: dropped, counted."""
        self._frames = frames
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._latest_t = 0.0
        self._threads = [
            threading.Thread(target=self._feed, name="streamrt-feeder", daemon=True),
            threading.Thread(target=self._encode, name="streamrt-encoder", daemon=True),
        ]
        self._started = False

    # ---- public --------------------------------------------------------------------------------
    def ask(self, text: str, t: float | None = None, qid: str | None = None) -> Question:
        """Ask at stream time `t` (default: the newest frame's time); answered at the next chunk boundary."""
        q = Question(
            self._latest_t if t is None else t, text, qid or f"q{len(self.inbox)}-{time.monotonic_ns()}"
        )
        self.inbox.put(q)
        return q

    def __iter__(self) -> Iterator[Output]:
        if self._started:
            raise RuntimeError("a StreamRun can be iterated once")
        self._started = True
        self.stats.started = time.monotonic()
        for th in self._threads:
            th.start()
        try:
            yield from self._language()
        finally:
            self.close()

    def close(self) -> None:
        """Stop every stage and join the threads (idempotent)."""
        self._stop.set()
        self.chunks.close()
        self.encoded.close()
        for th in self._threads:
            if th.is_alive() and th is not threading.current_thread():
                th.join(timeout=10)
        close = getattr(self._frames, "close", None)
        if callable(close):
            close()

    def summary(self) -> Summary:
        s = self.stats.summary(
            self.chunker.sampled, self.chunker.skipped, [self.chunks.stats(), self.encoded.stats()]
        )
        s.drops["chunks/stale"] = self.stale_chunks
        s.drops.update(source_drops(self._frames))
        return s

    def __enter__(self) -> StreamRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- stages --------------------------------------------------------------------------------
    def _feed(self) -> None:
        try:
            start = time.monotonic()
            for f in self._frames:
                if self._stop.is_set():
                    return
                if self.paced:
                    assert self.speed is not None
                    wait = start + f.t / self.speed - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        return
                capture = getattr(f, "capture_time", None) if self.live else None
                self._latest_t = f.t
                chunk = self.chunker.push(f.pixels, f.t, capture if capture is not None else time.monotonic())
                if chunk is not None:
                    self.chunks.put(chunk)
            chunk = self.chunker.flush()
            if chunk is not None:
                self.chunks.put(chunk)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            self._error = e
        finally:
            self.chunks.close()

    def _encode(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    chunk = self.chunks.get()
                except Closed:
                    break
                if chunk is None:
                    continue
                t0 = time.monotonic()
                if (self.live or self.paced) and t0 > chunk.deadline:
                    self.stale_chunks += 1  # its outputs could only be late: catch up instead
                    continue
                enc = self.encoder.encode(chunk)
                self.encoding_spans.append((chunk.index, t0, time.monotonic()))
                del self.encoding_spans[:-1000]
                self.encoded.put(enc)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            self._error = e
        finally:
            self.encoded.close()

    def _language(self) -> Iterator[Output]:
        free = time.monotonic()
        t_end = 0.0
        while True:
            try:
                enc = self.encoded.get(timeout=0.5)
            except Closed:
                break
            if self._error is not None:
                raise self._error
            if enc is None:
                continue
            chunk = enc.chunk
            capture = chunk.ready if (self.live or self.paced) else max(chunk.ready, free)
            deadline = capture + self.budget_s
            t_end = chunk.t_end
            for out in self.session.process(enc, self.inbox.due(chunk.t_end), capture, deadline):
                self.stats.observe(out)
                yield out
            free = time.monotonic()
        if self._error is not None:
            raise self._error
        for out in self.session.finish(self.inbox.due(float("inf")), t_end, time.monotonic()):
            self.stats.observe(out)
            yield out


__all__ = ["ChunkDone", "FrameLike", "StreamRun"]
