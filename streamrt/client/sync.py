"""A blocking client: `AsyncClient` driven on an event loop in a background thread.

Every method blocks until its coroutine is done (with a timeout); `events(timeout)` iterates events
until `end`. Meant for scripts and notebooks; inside asyncio code use `AsyncClient`. Owns the loop thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import TypeVar

import numpy as np
from websockets.exceptions import ConnectionClosed

from streamrt.client.client import AsyncClient
from streamrt.client.events import End, Event
from streamrt.server import protocol as P

T = TypeVar("T")


class Client:
    """`with Client(url, "generate", {"prompt": "a red circle"}) as c: ...` (see module docstring)."""

    def __init__(
        self,
        url: str,
        mode: str,
        params: dict[str, P.ParamValue] | None = None,
        *,
        timeout_s: float = 30.0,
        **kw: object,
    ) -> None:
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="streamrt-client", daemon=True)
        self._thread.start()
        self.aio = AsyncClient(url, mode, params, **kw)  # type: ignore[arg-type]

    def _call(self, coro: Coroutine[object, object, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout or self.timeout_s)

    def connect(self) -> Event:
        return self._call(self.aio.connect())

    def send_frame(self, image: np.ndarray | bytes, **kw: object) -> int:
        return self._call(self.aio.send_frame(image, **kw))  # type: ignore[arg-type]

    def set_params(self, **values: P.ParamValue) -> int:
        return self._call(self.aio.set_params(**values))

    def ask(self, text: str, question_id: str | None = None) -> str:
        return self._call(self.aio.ask(text, question_id))

    def control(self, kind: str) -> None:
        self._call(self.aio.control(kind))

    def recv(self, timeout: float | None = None) -> Event:
        t = timeout or self.timeout_s
        return self._call(self.aio.recv(t), t + 1)

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Events until `end` (included) or the connection closes; TimeoutError when none comes in time."""
        while True:
            try:
                ev = self.recv(timeout)
            except ConnectionClosed:
                return
            yield ev
            if isinstance(ev, End):
                return

    def close(self) -> None:
        if self._loop.is_running():
            self._call(self.aio.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(self.timeout_s)
        self._loop.close()

    def __enter__(self) -> Client:
        try:
            self.connect()
        except BaseException:
            self.close()  # do not leave the loop thread behind
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
