"""The asyncio client of protocol v1: connect, send frames, set params, ask, iterate events, reconnect.

`AsyncClient(url, mode, params)`: `await connect()` returns the server's `Ready`. `url` is a server's
websocket (`ws://host:8765/ws`) or a cluster's gateway (`http://host:8000`, `streamrt serve --ray`):
then each connect first asks `POST /v1/sessions` for a replica and a one-use ticket (see
`streamrt.scale.connect`; a full cluster's retry hint is honoured like a full server's); `send_frame` takes an
RGB uint8 array (encoded here, JPEG by default) or already encoded bytes, stamps seq and capture time;
`set_params` / `ask` / `pause` / `resume` / `end_input` / `ping` send control messages; `recv()` /
`async for event in client` yield typed events (`events.py`). A keep-alive task pings when nothing was
sent for a third of the server's idle timeout. When the connection drops without an
`end` from the server, the client reconnects with exponential backoff and jitter (honouring a full
server's Retry-After), sends hello again with the parameters as last set, and yields the new `Ready`.
Owns: the socket, seq counters, the merged parameters. Does not know engines.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import time
from collections.abc import AsyncIterator

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streamrt.client.events import End, Event, ServerError, parse_event
from streamrt.scale.errors import ScaleError
from streamrt.server import protocol as P
from streamrt.server.media import encode_image

log = logging.getLogger(__name__)


class ClientError(Exception):
    """Connection failures after all retries, or a refused hello (`code`: the server's code or E_CONNECT)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class AsyncClient:
    def __init__(
        self,
        url: str,
        mode: str,
        params: dict[str, P.ParamValue] | None = None,
        *,
        token: str | None = None,
        reconnect: bool = True,
        retries: int = 5,
        backoff_s: tuple[float, float] = (0.2, 5.0),
        open_timeout_s: float = 10.0,
        origin: str | None = None,
    ) -> None:
        self.url, self.mode, self.token = url, mode, token
        self.params: dict[str, P.ParamValue] = dict(params or {})
        self.reconnect, self.retries, self.backoff_s = reconnect, retries, backoff_s
        self.open_timeout_s, self.origin = open_timeout_s, origin
        self._ws: ClientConnection | None = None
        self._seq = itertools.count()
        self._rev = itertools.count(1)
        self._ask_ids = itertools.count(1)
        self._pending: list[Event] = []
        self._ended: End | None = None
        self.session_id: str | None = None
        self.limits: dict[str, object] = {}
        self.reconnects = 0
        self._last_sent = 0.0
        self._keepalive: asyncio.Task | None = None
        self.replica: str | None = None
        """With a cluster address: the replica of the current grant."""
        self._avoid: list[str] = []  # granted replicas that could not be reached

    # ---- connection ------------------------------------------------------------------------------------
    async def connect(self) -> Event:
        """Open the socket, send hello, return the `Ready` (raises ClientError on refusal)."""
        delay = self.backoff_s[0]
        for attempt in range(self.retries + 1):
            try:
                return await self._open()
            except ScaleError as e:  # the cluster's gateway refused or could not be reached
                if e.code not in ("E_SCALE_FULL", "E_SCALE_CONNECT") or attempt == self.retries:
                    raise ClientError(e.code, str(e)) from None
                wait = e.retry_after_s or delay
            except InvalidStatus as e:
                if self.replica is not None:
                    self._avoid.append(self.replica)
                if e.response.status_code != 503 or attempt == self.retries:
                    raise ClientError("E_CONNECT", f"{self.url}: HTTP {e.response.status_code}") from None
                hint = e.response.headers.get("Retry-After")
                wait = float(hint) if hint and hint.isdigit() else delay
            except (OSError, TimeoutError, ConnectionClosed) as e:
                if self.replica is not None:  # the granted replica died: the next grant avoids it
                    self._avoid.append(self.replica)
                if attempt == self.retries:
                    raise ClientError("E_CONNECT", f"{self.url}: {e!r}") from None
                wait = delay
            wait *= 0.5 + random.random()  # jitter: clients refused together do not return together
            log.info("connect to %s failed; retry %d in %.2f s", self.url, attempt + 1, wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, self.backoff_s[1])
        raise AssertionError("unreachable")

    async def _endpoint(self) -> tuple[str, str | None]:
        """The websocket URL and hello token: `url` and `token` themselves, or, for a cluster address
        (`http(s)://` of a `streamrt serve --ray` gateway), a fresh grant from `POST /v1/sessions`
        (`token` is then the cluster token): every connect and reconnect asks for a new one-use ticket."""
        if not self.url.startswith(("http://", "https://")):
            return self.url, self.token
        from streamrt.scale.connect import request_session  # plain HTTP, no Ray

        grant = await asyncio.to_thread(
            request_session, self.url, self.mode, token=self.token, avoid=self._avoid
        )
        self.replica = grant.replica
        return grant.url, grant.token

    async def _open(self) -> Event:
        url, token = await self._endpoint()
        ws = await connect(
            url,
            subprotocols=[P.SUBPROTOCOL],  # type: ignore[list-item]
            compression=None,
            open_timeout=self.open_timeout_s,
            max_size=None,
            origin=self.origin,  # type: ignore[arg-type]
        )
        hello: dict[str, object] = {"type": "hello", "mode": self.mode, "params": self.params}
        if token is not None:
            hello["token"] = token
        await ws.send(json.dumps(hello))
        async with asyncio.timeout(self.open_timeout_s):
            while True:  # the server may answer errors (E_PARAM, E_MODE) before ready
                ev = parse_event(await ws.recv())
                if isinstance(ev, ServerError):
                    await ws.close()
                    raise ClientError(ev.code, ev.message)
                if ev.kind == "ready":
                    break
        self._ws = ws
        self._ended = None
        self.session_id = ev.session_id  # type: ignore[union-attr]
        self.limits = ev.limits  # type: ignore[union-attr]
        self._last_sent = time.monotonic()
        idle = self.limits.get("idle_timeout_s")
        if self._keepalive is None and isinstance(idle, int | float) and idle > 0:
            self._keepalive = asyncio.create_task(self._keep_alive(idle / 3))
        return ev

    async def _keep_alive(self, every_s: float) -> None:
        """Send `ping` when nothing was sent for `every_s` (a third of the server's idle timeout)."""
        while True:
            await asyncio.sleep(max(0.0, self._last_sent + every_s - time.monotonic()))
            if self._ws is None or self._ended is not None:
                return
            if time.monotonic() - self._last_sent >= every_s:
                try:
                    await self.ping()
                except (ConnectionClosed, ClientError):
                    return

    async def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if self._ws is not None:
            await self._ws.close()
            self._ws = None

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _send(self, data: str | bytes) -> None:
        if self._ws is None:
            raise ClientError("E_STATE", "not connected")
        self._last_sent = time.monotonic()
        try:
            await self._ws.send(data)
        except ConnectionClosed:
            if not self._can_reconnect():
                raise
            self._pending.append(await self._reopen())
            await self._ws.send(data)

    def _can_reconnect(self) -> bool:
        return self.reconnect and self._ended is None

    async def _reopen(self) -> Event:
        self.reconnects += 1
        log.warning("connection to %s lost; reconnecting", self.url)
        return await self.connect()

    # ---- sending -----------------------------------------------------------------------------------------
    async def send_frame(
        self,
        image: np.ndarray | bytes,
        *,
        capture_time: float | None = None,
        codec: P.Codec = "jpeg",
        quality: int = 85,
    ) -> int:
        """Send one input frame (RGB [H, W, 3] uint8, or bytes already in `codec`); returns its seq.

        capture_time: seconds on the client's wall clock (default: now); sent as microseconds.
        """
        w = h = 0
        if isinstance(image, np.ndarray):
            h, w = image.shape[:2]
            payload = encode_image(image, codec, quality)
        else:
            payload = image
        seq = next(self._seq) & 0xFFFFFFFF
        cap = int((time.time() if capture_time is None else capture_time) * 1e6)
        hdr = P.FrameHeader(P.KIND_INPUT, codec, seq, cap, -1, w, h)
        await self._send(P.encode_frame(hdr, payload))
        return seq

    async def set_params(self, **values: P.ParamValue) -> int:
        """Change parameters (latest wins per key); returns the rev the server acks in `params_ack`."""
        rev = next(self._rev)
        self.params.update(values)
        await self._send(json.dumps({"type": "params", "rev": rev, "set": values}))
        return rev

    async def ask(self, text: str, question_id: str | None = None) -> str:
        qid = question_id or f"q{next(self._ask_ids)}"
        await self._send(json.dumps({"type": "ask", "id": qid, "text": text}))
        return qid

    async def control(self, kind: str) -> None:
        """pause, resume, end_input or ping."""
        await self._send(json.dumps({"type": kind}))

    async def pause(self) -> None:
        await self.control("pause")

    async def resume(self) -> None:
        await self.control("resume")

    async def end_input(self) -> None:
        await self.control("end_input")

    async def ping(self) -> None:
        await self.control("ping")

    # ---- receiving ---------------------------------------------------------------------------------------
    async def recv(self, timeout: float | None = None) -> Event:
        """The next event (raises TimeoutError, or ConnectionClosed once the session has ended)."""
        if self._pending:
            return self._pending.pop(0)
        if self._ws is None:
            raise ClientError("E_STATE", "not connected")
        try:
            async with asyncio.timeout(timeout):
                ev = parse_event(await self._ws.recv(), time.time())
        except ConnectionClosed:
            if not self._can_reconnect():
                raise
            return await self._reopen()
        if isinstance(ev, End):
            self._ended = ev
        return ev

    async def __aiter__(self) -> AsyncIterator[Event]:
        """Events until the server's `end` (included) or the connection closes."""
        while True:
            try:
                ev = await self.recv()
            except ConnectionClosed:
                return
            yield ev
            if isinstance(ev, End):
                return
