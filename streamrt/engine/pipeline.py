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

Resume (`streamrt replay --resume`): at a chunk boundary (every output of the chunk consumed, no
response suspended, no question waiting) `state()` returns a `RunState`: the StreamCache's valid
rows and tables (`CacheSnapshot`), the session's response counter and last commentary time, the
token drop's reference frame features, the statistics and the index of the last chunk done.
`StreamRun(..., resume=state)` over the same source restores them and skips the chunks up to that
index (the chunker still sees every frame, so grid and counters are as before). Why the rest of the
run is then the uninterrupted run's: every later computation reads only that state and the later
chunks' pixels (the chunker and the decoder are deterministic functions of the file), and torch's
CPU kernels give bitwise-equal results for equal inputs and shapes; questions due by the boundary
were answered before it. `save_state` / `load_state` put a RunState in a file (torch tensors and
plain values only, loadable with `weights_only=True`), written to a temporary name and renamed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from streamrt.cache import CacheSnapshot
from streamrt.cache.types import Segment
from streamrt.engine.asks import Inbox
from streamrt.engine.chunker import Chunker
from streamrt.engine.config import EngineConfig
from streamrt.engine.encoder import ChunkEncoder
from streamrt.engine.errors import EngineError
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


@dataclass(slots=True)
class RunState:
    """A StreamRun at a chunk boundary: what it needs to go on exactly as if it had not stopped."""

    chunk: int
    """Index of the last chunk the language model finished."""
    t_end: float
    """Its stream end time (questions asked up to it were answered)."""
    cache: CacheSnapshot
    responses: int
    """Responses started so far (the next one's segment id is this + 1)."""
    last_spoke: float | None
    reference: torch.Tensor  # [h*w, C] last encoded frame's features (token-drop reference)
    stats: dict[str, object]
    """The StatsCollector's fields (counters and bounded latency rings)."""
    stale_chunks: int
    elapsed_s: float
    """Wall seconds the run had taken (so the summary's real-time factor spans the whole run)."""

    def to_dict(self) -> dict[str, object]:
        snap = {f.name: getattr(self.cache, f.name) for f in dataclasses.fields(self.cache)}
        snap["segments"] = [
            {f.name: getattr(s, f.name) for f in dataclasses.fields(s)} for s in self.cache.segments
        ]
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["cache"] = snap
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> RunState:
        snap = dict(d["cache"])  # type: ignore[call-overload]
        snap["segments"] = tuple(Segment(**s) for s in snap["segments"])
        return cls(**{**d, "cache": CacheSnapshot(**snap)})  # type: ignore[arg-type]


def save_state(path: Path, state: RunState, extra: dict[str, object]) -> None:
    """Write `state` (and `extra`: plain values) to `path` atomically: a temporary file, fsync, rename.
    A failure (disk full) leaves the previous file in place and raises E_ENGINE_OUT_WRITE."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save({**extra, "state": state.to_dict()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch's zip writer reports a failed write as RuntimeError
        tmp.unlink(missing_ok=True)
        why = e.strerror if isinstance(e, OSError) else "write failed; disk full?"
        raise EngineError("E_ENGINE_OUT_WRITE", f"{path}: cannot write the resume checkpoint ({why})") from e


def load_state(path: Path) -> tuple[RunState, dict[str, object]]:
    """Read what `save_state` wrote: (state, extra). E_ENGINE_RESUME when unreadable."""
    try:
        d = torch.load(path, weights_only=True)
        return RunState.from_dict(d.pop("state")), d
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is the same user problem
        raise EngineError("E_ENGINE_RESUME", f"{path}: unreadable resume checkpoint ({e})") from e


class StreamRun:
    """A running session over one source (see module docstring).

    speed: None = as fast as possible ("max"); a number = paced at that multiple of real time (1.0 =
    "realtime"). live: the source is live (frames carry `capture_time`; never paced; drop_oldest).
    resume: go on from a `RunState` of a run over the same source and config (see module docstring).
    on_boundary: called on the caller's thread after every chunk, once all its outputs were
    consumed (where `state()` can be taken).
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
        resume: RunState | None = None,
        on_boundary: Callable[[], None] | None = None,
    ) -> None:
        self.adapter = adapter
        self.config = cfg = (config or EngineConfig()).for_model(adapter)
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
        self._on_boundary = on_boundary
        self._done: tuple[int, float, torch.Tensor] | None = None
        """The last chunk done: (index, t_end, its last frame's features [h*w, C])."""
        self._skip_through = -1
        """Chunks up to this index were done before a resume: the feeder does not send them."""
        self._resume_t = 0.0
        self._elapsed = 0.0
        if resume is not None:
            self._restore(resume)

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
        self.stats.started = time.monotonic() - self._elapsed
        for th in self._threads:
            th.start()
        try:
            yield from self._language()
        finally:
            self.close()

    def state(self) -> RunState | None:
        """The run at the current chunk boundary, or None where it cannot be resumed from (before the
        first chunk, a response suspended or a question waiting). Call from `on_boundary`."""
        s = self.session
        if self._done is None or s._suspended is not None or s._waiting:  # noqa: SLF001
            return None
        index, t_end, ref = self._done
        stats = {f.name: getattr(self.stats, f.name) for f in dataclasses.fields(self.stats)}
        for k, v in stats.items():
            if isinstance(v, (deque, set)):
                stats[k] = [list(x) if isinstance(x, tuple) else x for x in v]
        return RunState(
            chunk=index,
            t_end=t_end,
            cache=s.store.snapshot(),
            responses=s._segments,  # noqa: SLF001 - the session's response counter
            last_spoke=s.last_spoke,
            reference=ref.clone(),
            stats=stats,
            stale_chunks=self.stale_chunks,
            elapsed_s=time.monotonic() - self.stats.started,
        )

    def _restore(self, r: RunState) -> None:
        s = self.session
        s.store.restore(r.cache)
        s._segments = r.responses  # noqa: SLF001 - the session's response counter
        s.last_spoke = r.last_spoke
        self.encoder._prev = r.reference  # noqa: SLF001 - the token drop's reference frame
        self.inbox.due(r.t_end)  # answered before the boundary
        for k, v in r.stats.items():
            cur = getattr(self.stats, k)
            if isinstance(cur, deque):
                cur.extend(tuple(x) if isinstance(x, list) else x for x in v)  # type: ignore[attr-defined]
            elif isinstance(cur, set):
                cur.update(v)  # type: ignore[arg-type]
            else:
                setattr(self.stats, k, v)
        self.stale_chunks = r.stale_chunks
        self._skip_through = r.chunk
        self._resume_t = r.t_end
        self._elapsed = r.elapsed_s
        self._done = (r.chunk, r.t_end, r.reference)

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
            skipping = self._skip_through >= 0
            for f in self._frames:
                if self._stop.is_set():
                    return
                if skipping and f.t >= self._resume_t - 0.5 / self.fps:
                    skipping = False  # resumed: the first frame after the boundary; pace from here
                    start = time.monotonic() - f.t / (self.speed or 1.0)
                if self.paced and not skipping:
                    assert self.speed is not None
                    wait = start + f.t / self.speed - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        return
                capture = getattr(f, "capture_time", None) if self.live else None
                self._latest_t = f.t
                chunk = self.chunker.push(f.pixels, f.t, capture if capture is not None else time.monotonic())
                if chunk is not None and chunk.index > self._skip_through:
                    self.chunks.put(chunk)
            chunk = self.chunker.flush()
            if chunk is not None and chunk.index > self._skip_through:
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
            self._done = (chunk.index, chunk.t_end, enc.vision.features[-1])
            if self._on_boundary is not None:
                self._on_boundary()
            free = time.monotonic()
        if self._error is not None:
            raise self._error
        for out in self.session.finish(self.inbox.due(float("inf")), t_end, time.monotonic()):
            self.stats.observe(out)
            yield out


__all__ = ["ChunkDone", "FrameLike", "RunState", "StreamRun", "load_state", "save_state"]
