"""One client session: its input buffer, parameters, pump (work through the scheduler), stats and outbox.

Input frames go to a drop-oldest buffer of `input_buffer` entries (default 2) the moment they arrive
(the reader never blocks); each carries its deadline (arrival + the session's budget). The pump takes
the oldest buffered frame, drops it when already late (`expired_in_buffer`), and hands the work (decode,
params, engine step, encode) to the scheduler; jobs that expire there are dropped too (`expired`).
Modes without input are paced: one tick every `engine.tick_interval_s()`, due one budget after its
release; a pump that falls more than a budget behind re-bases its clock (`behind`). Parameter changes
are merged (latest wins per key) and applied at the start of the next job. A job whose engine offers a
batch key (and that applies no new parameters) may run in one worker call with other sessions' jobs
(`run_batch`; the scheduler groups them). Owns: the buffer, counters,
latency window and the outbox. Does not know the socket (the server reads and writes it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from streamrt.server import protocol as P
from streamrt.server.engine import InputFrame, OutputFrame, SessionEngine, StepResult, TextSegment
from streamrt.server.media import decode_image, encode_image
from streamrt.server.outbox import Outbox
from streamrt.server.scheduler import EXPIRED, Batch, Scheduler

log = logging.getLogger(__name__)

SESSION_PARAMS = ("budget_ms", "out_codec", "out_quality")


@dataclass(frozen=True, slots=True)
class _Pending:
    header: P.FrameHeader
    payload: bytes
    arrived: float
    deadline: float


@dataclass(frozen=True, slots=True)
class _Work:
    result: StepResult | None
    frames: tuple[bytes, ...]
    run_s: float
    degraded: bool
    first_out_seq: int
    error: P.ProtocolError | None = None


@dataclass(frozen=True, slots=True)
class _Prepared:
    frame: InputFrame | None
    t0: float
    """perf_counter when the job started (its run time counts from here)."""
    wall_us: int
    degraded: bool
    first_out_seq: int


@dataclass(frozen=True, slots=True)
class _Call:
    """One job of a session: a callable for the scheduler (alone), or one member of `run_batch`."""

    session: Session
    item: _Pending | None
    params: dict[str, P.ParamValue]
    budget: float
    codec: P.Codec
    quality: int
    finish: bool

    def __call__(self, degrade: bool) -> _Work:
        return self.session._work(self, degrade)


def run_batch(calls: Sequence[_Call], degrades: Sequence[bool]) -> list[_Work | BaseException]:
    """Several sessions' jobs in one worker run (the scheduler's `Batch.run`).

    Each job is prepared alone (params, degrade, decode); the prepared ones are grouped by their
    engine's batch key as it stands now (a degrade may have changed it) and each group of two or more
    steps through the engine class's `step_batch`. When a group's fused step raises, its members step
    alone, so only a failing engine's own session gets the exception.
    """
    out: list[_Work | BaseException | None] = [None] * len(calls)
    groups: dict[Hashable, list[tuple[int, _Prepared]]] = {}
    for i, (c, d) in enumerate(zip(calls, degrades, strict=True)):
        try:
            prep = c.session._prepare(c, d)
        except Exception as e:
            out[i] = e
            continue
        if isinstance(prep, _Work):
            out[i] = prep
            continue
        key = c.session.engine.batch_key(prep.frame)
        groups.setdefault((type(c.session.engine), key) if key is not None else ("solo", i), []).append(
            (i, prep)
        )
    for members in groups.values():
        engines = [calls[i].session.engine for i, _ in members]
        results: list[StepResult] | None = None
        if len(members) > 1:
            try:
                results = type(engines[0]).step_batch(engines, [p.frame for _, p in members])
            except Exception as e:  # one member's engine is broken: find which, stepping alone
                log.warning(
                    "batched step of %d sessions failed (%r); stepping them one by one", len(members), e
                )
        for k, (i, prep) in enumerate(members):
            c = calls[i]
            try:
                res = results[k] if results is not None else c.session.engine.step(prep.frame)
                out[i] = c.session._complete(c, prep, res)
            except Exception as e:
                out[i] = e
    assert all(o is not None for o in out)
    return out  # type: ignore[return-value]


def split_params(
    params: Mapping[str, P.ParamValue],
) -> tuple[dict[str, P.ParamValue], dict[str, P.ParamValue]]:
    """(session-level, engine-level); session-level ones validated here (E_PARAM)."""
    mine = {k: v for k, v in params.items() if k in SESSION_PARAMS}
    for k, v in mine.items():
        ok = {
            "budget_ms": isinstance(v, int | float) and not isinstance(v, bool) and 1 <= v <= 60_000,
            "out_codec": v in P.CODEC_IDS,
            "out_quality": isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 100,
        }[k]
        if not ok:
            raise P.ProtocolError("E_PARAM", f"{k}: invalid value {v!r}")
    return mine, {k: v for k, v in params.items() if k not in SESSION_PARAMS}


class Session:
    """See module docstring."""

    def __init__(
        self,
        session_id: str,
        mode: str,
        engine: SessionEngine,
        scheduler: Scheduler,
        params: Mapping[str, P.ParamValue],
        *,
        max_frame_bytes: int,
        max_frame_pixels: int = 3840 * 2160,
        input_buffer: int = 2,
        output_frames: int = 2,
        budget_ms: float = 250.0,
    ) -> None:
        self.id, self.mode, self.engine, self.scheduler = session_id, mode, engine, scheduler
        self.max_frame_bytes = max_frame_bytes
        self.max_frame_pixels = max_frame_pixels
        self.budget_s = float(params.get("budget_ms", budget_ms)) / 1000
        self.out_codec: P.Codec = params.get("out_codec", "jpeg")  # type: ignore[assignment]
        self.out_quality = int(params.get("out_quality", 85))
        self.outbox = Outbox(frame_cap=output_frames)
        self.inbox: deque[_Pending] = deque()
        self.input_cap = input_buffer
        self.wake = asyncio.Event()
        self.paused = False
        self.input_ended = False
        self._params: dict[str, P.ParamValue] = {}
        """Validated engine parameters waiting for the next job (merged, latest wins per key)."""
        self._params_rev = -1
        self._unacked_rev: int | None = None
        self.out_seq = 0
        self.last_in_seq = -1
        self.est_s = 0.0
        self.level = 0
        self.counters: Counter[str] = Counter()
        """frames_in, frames_out, texts_out, steps (jobs that ran), hits, misses, degrades, errors."""
        self.drops: Counter[str] = Counter()
        """input_buffer_full, expired_in_buffer, expired, behind, paused, bad_image, too_large (slow_client in outbox)."""
        self.latencies: deque[float] = deque(maxlen=512)
        self.unreported: deque[float] = deque(maxlen=4096)
        """Latencies not yet handed to the metrics histogram (drained once a second)."""
        self.error_codes: Counter[str] = Counter()
        """Errors sent, by code (the server hands them to its metrics)."""
        self.reported: tuple[Counter[str], Counter[str]] = (Counter(), Counter())
        """(counters, drops) at the last metrics report."""
        self.started = time.monotonic()
        self.first_output_s: float | None = None

    # ---- from the reader (event loop) --------------------------------------------------------------
    def on_frame(self, data: bytes) -> None:
        """A binary message; raises ProtocolError (the caller sends it as `error`)."""
        bf = P.decode_frame(data, expect_kind=P.KIND_INPUT, max_bytes=self.max_frame_bytes)
        if not self.engine.wants_input:
            raise P.ProtocolError(
                "E_UNSUPPORTED", f"mode {self.mode} with these params takes no input frames"
            )
        if self.input_ended:
            raise P.ProtocolError("E_STATE", "input frame after end_input")
        self.counters["frames_in"] += 1
        self.last_in_seq = bf.header.seq
        if self.paused:
            self.drops["paused"] += 1
            return
        now = time.monotonic()
        if len(self.inbox) >= self.input_cap:
            self.inbox.popleft()
            self.drops["input_buffer_full"] += 1
        self.inbox.append(_Pending(bf.header, bf.payload, now, now + self.budget_s))
        self.wake.set()

    def set_params(self, rev: int, values: Mapping[str, P.ParamValue]) -> None:
        """`params{rev, set}`: validated now (E_PARAM), applied at the start of the next job and acked
        then with the seq of the first frame under them. Session-level keys apply at once."""
        if rev <= self._params_rev:
            raise P.ProtocolError(
                "E_PARAM", f"rev {rev} is not above the last applied rev {self._params_rev}"
            )
        mine, theirs = split_params(values)
        theirs = self.engine.validate(theirs)
        self._params_rev = rev
        if "budget_ms" in mine:
            self.budget_s = float(mine["budget_ms"]) / 1000
        self.out_codec = mine.get("out_codec", self.out_codec)  # type: ignore[assignment]
        self.out_quality = int(mine.get("out_quality", self.out_quality))
        self._params.update(theirs)
        self._unacked_rev = rev
        self.wake.set()

    def on_control(self, msg: P.Control) -> None:
        if isinstance(msg, P.Hello):
            raise P.ProtocolError("E_STATE", "hello after the session started")
        if isinstance(msg, P.Params):
            self.set_params(msg.rev, msg.set)
        elif isinstance(msg, P.Ask):
            self.engine.ask(msg.id, msg.text)  # adapters queue it; it is answered by later steps
        elif msg.type == "ping":
            self.outbox.control("pong", P.control("pong", t=time.time()))
        elif msg.type == "pause":
            self.paused = True
        elif msg.type == "resume":
            self.paused = False
            self.wake.set()
        elif msg.type == "end_input":
            self.input_ended = True
            self.wake.set()

    # ---- the pump ------------------------------------------------------------------------------------
    async def pump(self) -> None:
        """Runs until input ends (input modes) or forever (paced modes); cancelled at session end."""
        if self.engine.wants_input:
            await self._pump_input()
        else:
            await self._pump_paced()
        now = time.monotonic()  # the engine flushes what it holds (a partial chunk, open questions)
        await self._run(None, now, now + self.budget_s, self.budget_s, droppable=False, finish=True)
        self.outbox.end(P.control("end", reason="input_ended"))

    async def _pump_input(self) -> None:
        while True:
            while not self.inbox and not self.input_ended:
                self.wake.clear()
                await self.wake.wait()
            if not self.inbox:  # input ended and drained
                return
            item = self.inbox.popleft()
            if self.paused or time.monotonic() > item.deadline:
                self.drops["paused" if self.paused else "expired_in_buffer"] += 1
                continue
            await self._run(item, item.arrived, item.deadline, self.budget_s, droppable=True)

    async def _pump_paced(self) -> None:
        release = time.monotonic()
        while not self.input_ended:
            while self.paused and not self.input_ended:
                self.wake.clear()
                await self.wake.wait()
                release = time.monotonic()
            delay = release - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            budget = min(self.budget_s, self.engine.tick_interval_s())  # the ladder keeps real time
            await self._run(None, release, release + self.budget_s, budget, droppable=False)
            release += self.engine.tick_interval_s()
            now = time.monotonic()
            if release < now - self.budget_s:
                self.drops["behind"] += 1
                release = now

    async def _run(
        self,
        item: _Pending | None,
        origin: float,
        deadline: float,
        budget: float,
        *,
        droppable: bool,
        finish: bool = False,
    ) -> None:
        """One job through the scheduler; `budget` is what the engine's ladder compares its run time to."""
        params, self._params = self._params, {}
        rev, self._unacked_rev = self._unacked_rev, None
        call = _Call(self, item, params, budget, self.out_codec, self.out_quality, finish)
        key = None if finish or params else self.engine.batch_key(None)
        batch = Batch((type(self.engine), key), run_batch) if key is not None else None
        res = await self.scheduler.run(
            self.id, call, deadline=deadline, est_s=self.est_s, droppable=droppable, batch=batch
        )
        now = time.monotonic()
        if res is EXPIRED:  # nothing ran: the parameters wait for the next job
            self.drops["expired"] += 1
            self._params = params | self._params
            self._unacked_rev = self._unacked_rev if self._unacked_rev is not None else rev
            return
        assert isinstance(res, _Work)
        if rev is not None:
            at = item.header.seq if item is not None else res.first_out_seq
            self.outbox.control("params_ack", P.control("params_ack", rev=rev, applies_at_seq=at))
        self.est_s = res.run_s if self.est_s == 0 else 0.8 * self.est_s + 0.2 * res.run_s
        self.counters["degrades"] += res.degraded
        if res.error is not None:
            self.drops["too_large" if res.error.code == "E_TOO_LARGE" else "bad_image"] += 1
            self.error(res.error)
            return
        assert res.result is not None
        self.counters["steps"] += 1
        self.level = res.result.level
        self.counters["frames_out"] += len(res.frames)
        for data in res.frames:
            self.outbox.frame(data)
        for out in res.result.outputs:
            if isinstance(out, TextSegment):
                self.counters["texts_out"] += 1
                self.outbox.text(
                    out.segment_id,
                    P.control(
                        "text",
                        segment_id=out.segment_id,
                        ref_seq=out.ref_seq,
                        text=out.text,
                        final=out.final,
                        question_id=out.question_id,
                    ),
                )
        if res.result.counts:
            self.latencies.append(now - origin)
            self.unreported.append(now - origin)
            self.counters["hits" if now <= deadline else "misses"] += 1
            if self.first_output_s is None:
                self.first_output_s = now - self.started

    def _prepare(self, call: _Call, degrade: bool) -> _Prepared | _Work:
        """On the worker thread, before the engine steps: params, degrade, decode (a bad image: its _Work)."""
        t0 = time.perf_counter()
        wall_us = time.time_ns() // 1000
        first = self.out_seq
        eng = self.engine
        if call.params:
            eng.apply(call.params)
        degraded = degrade and eng.degrade()
        frame = None
        if call.item is not None:
            h = call.item.header
            try:
                px = decode_image(h.codec, call.item.payload, h.width, h.height, self.max_frame_pixels)
            except P.ProtocolError as e:
                return _Work(None, (), time.perf_counter() - t0, degraded, first, e)
            frame = InputFrame(h.seq, h.capture_us, px, call.item.arrived, call.item.deadline)
        return _Prepared(frame, t0, wall_us, degraded, first)

    def _complete(self, call: _Call, prep: _Prepared, result: StepResult) -> _Work:
        """On the worker thread, after the engine stepped: encode, observe."""
        frames = tuple(
            self._encode(o, call.codec, call.quality, prep.wall_us)
            for o in result.outputs
            if isinstance(o, OutputFrame)
        )
        run_s = time.perf_counter() - prep.t0
        self.engine.observe(run_s, call.budget)
        return _Work(result, frames, run_s, prep.degraded, prep.first_out_seq)

    def _work(self, call: _Call, degrade: bool) -> _Work:
        """One job alone: prepare, step (or finish), complete."""
        prep = self._prepare(call, degrade)
        if isinstance(prep, _Work):
            return prep
        eng = self.engine
        return self._complete(call, prep, eng.finish() if call.finish else eng.step(prep.frame))

    def _encode(self, o: OutputFrame, codec: P.Codec, quality: int, wall_us: int) -> bytes:
        """Output frame -> binary message; capture_us: the input's, or the step's start (no input)."""
        px: np.ndarray = o.pixels  # [H, W, 3] uint8
        flags = (P.FLAG_REPEATED if o.repeated else 0) | (P.FLAG_DEGRADED if o.degraded else 0)
        cap = o.capture_us if o.ref_seq >= 0 else wall_us
        h = P.FrameHeader(P.KIND_OUTPUT, codec, self.out_seq, cap, o.ref_seq, px.shape[1], px.shape[0], flags)
        self.out_seq += 1  # one job per session at a time: no race
        return P.encode_frame(h, encode_image(px, codec, quality))

    # ---- reporting -------------------------------------------------------------------------------------
    def error(self, e: P.ProtocolError) -> None:
        self.counters["errors"] += 1
        self.error_codes[e.code] += 1
        self.outbox.error(P.error(e.code, e.message))

    def stats(self, interval_s: float, prev: Counter[str]) -> dict[str, object]:
        """The `stats` message body; `prev` holds the counters of the previous report (for rates)."""
        lat = np.asarray(self.latencies) * 1000 if self.latencies else np.zeros(1)
        done = self.counters["hits"] + self.counters["misses"]
        drops = dict(self.drops) | {"slow_client": self.outbox.dropped_frames}
        return {
            "fps_in": round((self.counters["frames_in"] - prev["frames_in"]) / interval_s, 2),
            "fps_out": round((self.counters["frames_out"] - prev["frames_out"]) / interval_s, 2),
            "frames_in": self.counters["frames_in"],
            "frames_out": self.counters["frames_out"],
            "drops": drops,
            "latency_ms": {q: round(float(np.percentile(lat, int(q[1:]))), 2) for q in ("p50", "p95", "p99")},
            "deadline_miss_rate": round(self.counters["misses"] / done, 4) if done else 0.0,
            "queue": {
                "input": len(self.inbox),
                "output_frames": self.outbox.frames_pending,
                "scheduler": self.scheduler.queued,
            },
            "time_to_first_output_ms": None
            if self.first_output_s is None
            else round(self.first_output_s * 1000, 1),
            "level": self.level,
            "errors_suppressed": self.outbox.errors_suppressed,
        }
