"""A session's outgoing messages: bounded, merged or dropped so a slow reader never blocks anyone.

Order of sending: control (ready, params_ack, pong, end), errors, text segments, stats, output frames.
- control: one pending slot per kind where repeats are meaningless (latest params_ack, one pong).
- errors: up to `error_cap` pending; beyond that they are counted as `errors_suppressed` (a flood of bad
  input cannot grow memory) and reported in stats.
- text: merged per segment id (a newer version of a segment replaces the pending one), never dropped.
- stats: latest wins.
- output frames: a drop-oldest buffer of `frame_cap`; every drop is counted (`slow_client`).
- after `end`: what is pending is flushed, then the end message; new text, stats and frames are ignored.
Owns the pending items and the counters. Does not know the socket (the session's writer drains it).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque


class Outbox:
    def __init__(self, frame_cap: int = 2, error_cap: int = 32) -> None:
        self._control: OrderedDict[str, str] = OrderedDict()
        self._errors: deque[str] = deque()
        self._error_cap = error_cap
        self._texts: OrderedDict[int, str] = OrderedDict()
        self._stats: str | None = None
        self._frames: deque[bytes] = deque(maxlen=frame_cap)
        self._end: str | None = None
        self.dropped_frames = 0
        self.errors_suppressed = 0
        self.event = asyncio.Event()

    def control(self, kind: str, message: str) -> None:
        """Pending control message; a newer one of the same `kind` replaces it (ready, params_ack, pong)."""
        self._control[kind] = message
        self._control.move_to_end(kind)
        self.event.set()

    def error(self, message: str) -> None:
        if len(self._errors) >= self._error_cap:
            self.errors_suppressed += 1
            return
        self._errors.append(message)
        self.event.set()

    def text(self, segment_id: int, message: str) -> None:
        if self._end is not None:  # the session is over: nothing new after `end`
            return
        self._texts[segment_id] = message
        self.event.set()

    def stats(self, message: str) -> None:
        if self._end is not None:
            return
        self._stats = message
        self.event.set()

    def frame(self, data: bytes) -> None:
        if self._end is not None:  # a paced engine may still produce; the end must not wait behind it
            return
        if len(self._frames) == self._frames.maxlen:
            self.dropped_frames += 1  # deque(maxlen) evicts the oldest on append
        self._frames.append(data)
        self.event.set()

    def end(self, message: str) -> None:
        """The last message: sent once everything pending is flushed; nothing follows it."""
        if self._end is None:
            self._end = message
        self.event.set()

    @property
    def frames_pending(self) -> int:
        return len(self._frames)

    def pop(self) -> str | bytes | None:
        """The next message to send (the end message is taken separately, after everything else)."""
        if self._control:
            return self._control.popitem(last=False)[1]
        if self._errors:
            return self._errors.popleft()
        if self._texts:
            return self._texts.popitem(last=False)[1]
        if self._stats is not None:
            s, self._stats = self._stats, None
            return s
        if self._frames:
            return self._frames.popleft()
        return None

    @property
    def ended(self) -> str | None:
        return self._end

    def take_end(self) -> str | None:
        e, self._end = self._end, None
        return e
