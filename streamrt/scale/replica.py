"""One engine process of the cluster: the streamrt server, admitting only clients with a valid ticket.

`TicketServer` is the plain `streamrt.server.Server` plus one rule at the websocket upgrade: the URL
must carry a ticket (`?ticket=...`, see `tickets`) minted for this replica, unexpired and not used
before; anything else is refused with HTTP 401 before any engine work. HTTP GETs (/healthz, /metrics)
need no ticket. It remembers which ticket each open connection came with, so the replica can report
its open slots to the registry. (Interim: the server has no authorisation hook yet, so this overrides
its `_process_request` and `_handler`; docs/scale.md names the hook that would replace this.)

`ReplicaHost` runs a TicketServer on its own event loop in a background thread (the Ray Serve replica
keeps its own loop for Serve) and a heartbeat task that calls `report(open_nonces)` every
`heartbeat_s` (after a first `register(url)`); when `report` answers False (the registry dropped this replica), `register()` is called
again. `load()` reports slots in use and the recent deadline-miss rate (the autoscaler's inputs);
`stop("draining", retry_after_s)` ends every session with that reason and hint.
Owns the thread, the loop, the server and the used-ticket memory. Does not know Ray.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from streamrt.scale.autoscale import ReplicaLoad
from streamrt.scale.tickets import TICKET_PARAM, Ticket, verify
from streamrt.server import Server, ServerConfig
from streamrt.server.engine import EngineFactory
from streamrt.server.server import _response

log = logging.getLogger(__name__)


def _ticket_text(path: str) -> str | None:
    values = parse_qs(urlsplit(path).query).get(TICKET_PARAM)
    return values[0] if values else None


class TicketServer(Server):
    """See module docstring."""

    def __init__(
        self, cfg: ServerConfig, factories: Mapping[str, EngineFactory], *, replica: str, secret: str
    ) -> None:
        super().__init__(cfg, factories)
        self.replica = replica
        self._secret = secret
        self._used: dict[str, float] = {}  # nonce -> expiry: a ticket admits one connection
        self._admitted: dict[ServerConnection, str] = {}  # upgraded connection -> its ticket's nonce
        self.open_nonces: set[str] = set()
        self.refused_tickets = 0

    def _process_request(self, conn: ServerConnection, req: Request) -> Response | None:
        if req.headers.get("Upgrade", "").lower() == "websocket":
            now = time.time()
            for n in [n for n, e in self._used.items() if e < now]:
                del self._used[n]
            for c in [c for c, n in self._admitted.items() if n not in self._used]:
                del self._admitted[c]  # upgraded long ago but never handled (the handshake failed)
            t = verify(self._secret, _ticket_text(req.path), self.replica, now)
            if isinstance(t, Ticket) and t.nonce in self._used:
                t = "ticket already used"
            if not isinstance(t, Ticket):
                self.refused_tickets += 1
                self.metrics.refused.labels("ticket").inc()
                return _response(
                    401, f"E_AUTH: {t}; get a ticket from POST /v1/sessions\n".encode(), "text/plain"
                )
            refused = super()._process_request(conn, req)
            if refused is None:
                self._used[t.nonce] = t.expires
                self._admitted[conn] = t.nonce
            return refused
        return super()._process_request(conn, req)

    async def _handler(self, ws: ServerConnection) -> None:
        nonce = self._admitted.pop(ws, None)  # every upgrade went through _process_request
        if nonce is not None:
            self.open_nonces.add(nonce)
        try:
            await super()._handler(ws)
        finally:
            self.open_nonces.discard(nonce)  # type: ignore[arg-type]


class ReplicaHost:
    """A TicketServer on a background event loop, with its heartbeat (see module docstring)."""

    def __init__(
        self,
        cfg: ServerConfig,
        factories: Mapping[str, EngineFactory],
        *,
        replica: str,
        secret: str,
        register: Callable[[str], None],
        report: Callable[[list[str]], bool],
        heartbeat_s: float = 0.25,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="streamrt-replica", daemon=True)
        self.thread.start()
        self.server = TicketServer(cfg, factories, replica=replica, secret=secret)
        self._register, self._report, self.heartbeat_s = register, report, heartbeat_s
        self._seen = (0.0, 0.0)  # deadline hits, misses at the last load()
        self._call(self.server.start())
        self._beat = asyncio.run_coroutine_threadsafe(self._heartbeat(), self.loop)

    def _call(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _heartbeat(self) -> None:
        await asyncio.to_thread(self._register, self.server.url)
        while True:
            try:
                known = await asyncio.to_thread(self._report, sorted(self.server.open_nonces))
                if not known:
                    await asyncio.to_thread(self._register, self.server.url)
            except Exception:  # noqa: BLE001 - a lost heartbeat is retried; the registry times us out
                log.exception("heartbeat failed")
            await asyncio.sleep(self.heartbeat_s)

    def alive(self) -> bool:
        return self.thread.is_alive() and not self._beat.done()

    def load(self) -> ReplicaLoad:
        """Slots in use and the deadline-miss rate of the outputs since the previous call (thread-safe:
        reads the server's Prometheus counters, which sessions update at every stats tick)."""
        hits = misses = 0.0
        for metric in self.server.metrics.deadline.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    if sample.labels["outcome"] == "miss":
                        misses += sample.value
                    else:
                        hits += sample.value
        d_hits, d_misses = hits - self._seen[0], misses - self._seen[1]
        self._seen = (hits, misses)
        done = d_hits + d_misses
        return ReplicaLoad(
            len(self.server.open_nonces), self.server.cfg.max_sessions, d_misses / done if done else 0.0
        )

    def stop(self, reason: str = "shutdown", retry_after_s: int | None = None) -> None:
        """Graceful: refuse new connections, end every session with `end{reason}` (and the retry hint),
        stop the heartbeat, the loop and the thread. Draining is `stop("draining", retry_after_s)`."""
        self._beat.cancel()
        try:
            self._call(self.server.stop(reason, retry_after_s))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
