"""The streamrt server: websockets (asyncio) sessions plus HTTP /healthz, /metrics and static files.

One websocket per session (subprotocol `streamrt.v1`, permessage-deflate off: media does not compress).
Plain HTTP requests on the same port go through `process_request`: `/healthz` (JSON), `/metrics`
(Prometheus text), and GETs of files under `static_dir`. Upgrades are checked there too: Origin,
path (`/` or `/ws`), admission (a full server answers 503 with Retry-After; nothing queues). With a
`MemoryBudget`, a hello is admitted only when its mode's session cost still fits the budget (else
E_FULL with `retry_after_s`); the reservation is released when the session is gone.
Per connection: wait for a valid hello (timeout), check token and mode, build the engine off the loop,
send `ready`, then run three tasks: the reader (this handler; never blocks on work), the session's pump
(work through the scheduler) and the writer (drains the outbox; a slow reader only stalls its own
writer), plus a stats ticker. Graceful stop: refuse new sessions, `end{reason:"shutdown"}` (or another
reason with a retry hint, e.g. "draining") to every session after its pending output, close, stop the workers.
Owns: the sessions table, the scheduler, the metrics. Does not know what the engines compute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import time
import traceback
from collections import Counter
from collections.abc import Mapping
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from streamrt.server import protocol as P
from streamrt.server.budget import MemoryBudget
from streamrt.server.engine import EngineFactory
from streamrt.server.metrics import ServerMetrics
from streamrt.server.scheduler import Scheduler
from streamrt.server.security import ServerConfig, new_session_id, origin_allowed, token_ok
from streamrt.server.session import Session, split_params

log = logging.getLogger(__name__)


def default_static_dir() -> Path | None:
    d = Path(str(resources.files("streamrt.apps"))) / "web"
    return d if d.is_dir() else None


def _response(status: int, body: bytes, content_type: str, **headers: str) -> Response:
    h = Headers(
        [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
    )
    for k, v in headers.items():
        h[k.replace("_", "-")] = v
    return Response(status, HTTPStatus(status).phrase, h, body)


class Server:
    """`async with Server(cfg, {"generate": factory}) as srv:` ... (see module docstring)."""

    def __init__(
        self,
        cfg: ServerConfig,
        factories: Mapping[str, EngineFactory],
        budget: MemoryBudget | None = None,
    ) -> None:
        self.cfg = cfg
        self.factories = dict(factories)
        self.budget = budget
        self.static_dir = cfg.static_dir if cfg.static_dir is not None else default_static_dir()
        self.scheduler = Scheduler(cfg.workers, cfg.max_batch)
        self.metrics = ServerMetrics()
        self.sessions: dict[str, Session] = {}
        self._tasks: set[asyncio.Task] = set()
        self._ws = None
        self._closing = False
        self.started = time.monotonic()

    # ---- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> Server:
        self._ws = await serve(
            self._handler,
            self.cfg.host,
            self.cfg.port,
            subprotocols=[P.SUBPROTOCOL],
            compression=None,
            process_request=self._process_request,
            open_timeout=self.cfg.handshake_timeout_s,
            ping_interval=self.cfg.ping_interval_s,
            ping_timeout=self.cfg.ping_interval_s,
            close_timeout=2,
            max_size=self.cfg.max_message_bytes,
            max_queue=4,
        )
        log.info("serving %s on %s (modes: %s)", P.SUBPROTOCOL, self.url, ", ".join(self.factories))
        return self

    @property
    def port(self) -> int:
        assert self._ws is not None
        return self._ws.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = self.cfg.host if ":" not in self.cfg.host else f"[{self.cfg.host}]"
        return f"ws://{host}:{self.port}/ws"

    async def stop(self, reason: str = "shutdown", retry_after_s: int | None = None) -> None:
        """Graceful: refuse new sessions, end every session with `end{reason}` (plus `retry_after_s`
        when given: e.g. reason "draining", the client may open a new session elsewhere), flush, close."""
        if self._ws is None:
            return
        self._closing = True
        self._ws.close(close_connections=False)  # stop listening; open sessions go on for now
        extra = {} if retry_after_s is None else {"retry_after_s": retry_after_s}
        for s in list(self.sessions.values()):
            s.outbox.end(P.control("end", reason=reason, **extra))
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.cfg.shutdown_grace_s)
        self._ws.close()
        await self._ws.wait_closed()
        self.scheduler.close()
        self._ws = None

    async def __aenter__(self) -> Server:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- HTTP ------------------------------------------------------------------------------------------
    def _process_request(self, conn: ServerConnection, req: Request) -> Response | None:
        path = urlsplit(req.path).path
        if req.headers.get("Upgrade", "").lower() != "websocket":
            if path == "/healthz":
                body = {"status": "stopping" if self._closing else "ok", "sessions": len(self.sessions)}
                body |= {
                    "max_sessions": self.cfg.max_sessions,
                    "modes": sorted(self.factories),
                    "protocol": P.SUBPROTOCOL,
                    "uptime_s": round(time.monotonic() - self.started, 1),
                    "worker_busy_s": round(self.scheduler.busy_s, 3),
                    "batches": self.scheduler.counters["batches"],
                    "batched_jobs": self.scheduler.counters["batched_jobs"],
                }
                if self.budget is not None:
                    body["memory"] = self.budget.describe()
                return _response(200, json.dumps(body).encode() + b"\n", "application/json")
            if path == "/metrics":
                self.metrics.active.set(len(self.sessions))
                self.metrics.queued.set(self.scheduler.queued)
                self.metrics.busy.set(self.scheduler.busy_s)
                return _response(200, self.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
            return self._static(path)
        if not origin_allowed(req.headers.get("Origin"), req.headers.get("Host"), self.cfg.origins):
            self.metrics.refused.labels("origin").inc()
            return _response(403, b"origin not allowed\n", "text/plain")
        if path not in ("/", "/ws"):
            return _response(404, b"websocket endpoint is /ws\n", "text/plain")
        assert self._ws is not None
        if self._closing or len(self._ws.connections) >= self.cfg.max_sessions:
            self.metrics.refused.labels("full").inc()
            retry = str(self.cfg.retry_after_s)
            return _response(
                503, b"E_FULL: server at capacity, retry later\n", "text/plain", Retry_After=retry
            )
        return None

    def _static(self, path: str) -> Response:
        root = self.static_dir
        if root is None:
            return _response(404, b"no static files here; websocket endpoint is /ws\n", "text/plain")
        rel = unquote(path).lstrip("/") or "index.html"
        f = (root / rel).resolve()
        if not f.is_relative_to(root.resolve()) or not f.is_file():
            return _response(404, b"not found\n", "text/plain")
        ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        return _response(200, f.read_bytes(), ctype)

    # ---- a session -------------------------------------------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            session = await self._open(ws)
            if session is not None:
                await self._serve(ws, session)
        except ConnectionClosed:
            pass
        finally:
            self._tasks.discard(task)

    async def _send_error(self, ws: ServerConnection, e: P.ProtocolError, **extra: object) -> None:
        self.metrics.errors.labels(e.code).inc()
        await ws.send(P.error(e.code, e.message, **extra))

    async def _refuse_full(self, ws: ServerConnection, message: str, reason: str) -> None:
        self.metrics.refused.labels(reason).inc()
        retry = self.cfg.retry_after_s
        await self._send_error(
            ws, P.ProtocolError("E_FULL", f"{message}; retry after {retry} s"), retry_after_s=retry
        )
        await ws.close(1013, f"retry after {retry} s")

    async def _open(self, ws: ServerConnection) -> Session | None:
        """Wait for a valid hello; build the engine; send ready. None: the socket was closed."""
        deadline = time.monotonic() + self.cfg.hello_timeout_s
        while True:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    msg = await ws.recv()
            except TimeoutError:
                await self._send_error(ws, P.ProtocolError("E_STATE", "no valid hello in time"))
                await ws.close(1008, "hello timeout")
                return None
            try:
                if isinstance(msg, bytes):
                    raise P.ProtocolError("E_STATE", "binary frame before hello")
                hello = P.decode_control(msg, max_bytes=self.cfg.max_control_bytes)
                if not isinstance(hello, P.Hello):
                    raise P.ProtocolError("E_STATE", f"{type(hello).__name__.lower()} before hello")
                if not token_ok(hello.token, self.cfg.token):
                    await self._send_error(ws, P.ProtocolError("E_AUTH", "missing or wrong token"))
                    self.metrics.refused.labels("auth").inc()
                    await ws.close(1008, "auth")
                    return None
                if hello.mode not in self.factories:
                    raise P.ProtocolError(
                        "E_MODE", f"mode {hello.mode!r} not served here; modes: {', '.join(self.factories)}"
                    )
                if len(self.sessions) >= self.cfg.max_sessions or self._closing:
                    await self._refuse_full(ws, "server at capacity", "full")
                    return None
                _, engine_params = split_params(hello.params)  # session-level ones are validated here
                if self.budget is not None and not self.budget.reserve(hello.mode):
                    await self._refuse_full(ws, self.budget.refusal(hello.mode), "memory")
                    return None
                factory = self.factories[hello.mode]
                try:
                    engine = await asyncio.get_running_loop().run_in_executor(None, factory, engine_params)
                except BaseException:
                    if self.budget is not None:
                        self.budget.release(hello.mode)
                    raise
            except P.ProtocolError as e:
                await self._send_error(ws, e)
                continue
            except Exception as e:  # the engine could not be built: say so, do not leave the client guessing
                log.exception("building a %s engine failed", getattr(hello, "mode", "?"))
                await self._send_error(
                    ws, P.ProtocolError("E_INTERNAL", f"engine failed to start: {type(e).__name__}: {e}")
                )
                await ws.close(1011, "engine failed")
                return None
            params = hello.params
            sid = new_session_id()
            s = Session(
                sid,
                hello.mode,
                engine,
                self.scheduler,
                params,
                max_frame_bytes=self.cfg.max_frame_bytes,
                max_frame_pixels=self.cfg.max_frame_pixels,
                input_buffer=self.cfg.input_buffer,
                output_frames=self.cfg.output_frames,
                budget_ms=self.cfg.budget_ms,
            )
            self.sessions[sid] = s
            self.metrics.sessions.labels(hello.mode).inc()
            limits = {
                "max_frame_bytes": self.cfg.max_frame_bytes,
                "max_frame_pixels": self.cfg.max_frame_pixels,
                "max_question_chars": P.MAX_TEXT,
                "max_control_bytes": self.cfg.max_control_bytes,
                "max_message_bytes": self.cfg.max_message_bytes,
                "input_buffer": self.cfg.input_buffer,
                "budget_ms": s.budget_s * 1000,
                "idle_timeout_s": self.cfg.idle_timeout_s,
                "stats_interval_s": self.cfg.stats_interval_s,
            }
            s.outbox.control("ready", P.control("ready", session_id=sid, mode=hello.mode, limits=limits))
            log.info("session %s… mode=%s from %s", sid[:6], hello.mode, ws.remote_address)
            return s

    async def _serve(self, ws: ServerConnection, s: Session) -> None:
        writer = asyncio.create_task(self._writer(ws, s), name=f"writer-{s.id[:6]}")
        pump = asyncio.create_task(s.pump(), name=f"pump-{s.id[:6]}")
        ticker = asyncio.create_task(self._ticker(s), name=f"stats-{s.id[:6]}")
        try:
            await self._reader(ws, s, writer, pump)
            if s.outbox.ended is not None:  # flush what is pending, then the end message
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(writer), self.cfg.shutdown_grace_s)
        except ConnectionClosed:
            pass
        finally:
            for t in (writer, pump, ticker):
                t.cancel()
            await asyncio.gather(writer, pump, ticker, return_exceptions=True)
            self._report(s)
            self.sessions.pop(s.id, None)
            self.scheduler.forget(s.id)
            self.scheduler.after_current(s.id, s.engine.close)
            if self.budget is not None:
                self.budget.release(s.mode)
            log.info("session %s… closed", s.id[:6])

    async def _reader(
        self, ws: ServerConnection, s: Session, writer: asyncio.Task, pump: asyncio.Task
    ) -> None:
        """Read until the client leaves, idles out, or the session ends (the writer finishing)."""
        while not writer.done():
            recv = asyncio.ensure_future(ws.recv())
            done, _ = await asyncio.wait(
                {recv, writer, pump}, timeout=self.cfg.idle_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if recv not in done:
                recv.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await recv
                if pump in done and pump.exception() is not None:
                    e = pump.exception()
                    assert e is not None
                    # formatted now: a log record holding the exception would keep its traceback's
                    # frames, and so the session and its engine, alive for as long as the record lives
                    trace = "".join(traceback.format_exception(e))
                    log.error("session %s… engine failed:\n%s", s.id[:6], trace)
                    s.error(P.ProtocolError("E_INTERNAL", f"engine failed: {type(e).__name__}: {e}"))
                    s.outbox.end(P.control("end", reason="error"))
                    return
                if pump in done:  # input ended and drained: the outbox ends the session
                    return
                if not done:
                    s.outbox.end(P.control("end", reason="idle"))
                    return
                continue
            msg = recv.result()  # raises ConnectionClosed when the client left
            try:
                if isinstance(msg, bytes):
                    s.on_frame(msg)
                else:
                    s.on_control(P.decode_control(msg, max_bytes=self.cfg.max_control_bytes))
            except P.ProtocolError as e:
                s.error(e)

    async def _writer(self, ws: ServerConnection, s: Session) -> None:
        box = s.outbox
        while True:
            item = box.pop()
            if item is None:
                end = box.take_end()
                if end is not None:
                    await ws.send(end)
                    await ws.close(1001 if self._closing else 1000)
                    return
                box.event.clear()
                await box.event.wait()
                continue
            await ws.send(item)  # only this session waits when its client reads slowly

    async def _ticker(self, s: Session) -> None:
        prev: Counter[str] = Counter()
        while True:
            await asyncio.sleep(self.cfg.stats_interval_s)
            s.outbox.stats(P.control("stats", **s.stats(self.cfg.stats_interval_s, prev)))
            self._report(s)
            prev = Counter(s.counters)

    def _report(self, s: Session) -> None:
        """Hand the session's counters since its last report to the Prometheus metrics."""
        before, drops_before = s.reported
        drops = s.drops + Counter({"slow_client": s.outbox.dropped_frames})
        self.metrics.add(s.mode, s.counters, drops, before, drops_before)
        while s.unreported:
            self.metrics.latency.labels(s.mode).observe(s.unreported.popleft())
        for code, n in s.error_codes.items():
            self.metrics.errors.labels(code).inc(n)
        s.error_codes.clear()
        s.reported = (Counter(s.counters), drops)
