"""Bounded queues with named drop policies; every drop is counted.

`BoundedQueue` is the only queue between engine stages (ingest -> chunker -> vision encoder ->
language model). Its bound never grows; when it is full, its `DropPolicy` decides what happens:

- "block": the producer waits (back-pressure; for files replayed at full speed, where nothing is lost
  by waiting). Nothing is dropped.
- "drop_oldest": the oldest queued item is discarded to make room (live sources: stale input goes).
- "drop_newest": the incoming item is discarded (keeps what is already queued).

`close()` ends the stream: consumers drain what is left and then get `Closed`. The queue owns its
items and counters; it knows nothing about frames or chunks.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
DropPolicy = Literal["block", "drop_oldest", "drop_newest"]
DROP_POLICIES: tuple[str, ...] = ("block", "drop_oldest", "drop_newest")


class Closed(Exception):
    """The queue was closed and is empty."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counters of one queue."""

    name: str
    policy: str
    capacity: int
    put: int
    got: int
    dropped: int
    peak_depth: int


class BoundedQueue(Generic[T]):
    """A thread-safe FIFO of at most `capacity` items with a named drop policy."""

    def __init__(self, name: str, capacity: int, policy: DropPolicy) -> None:
        if capacity < 1:
            raise ValueError(f"queue {name!r}: capacity {capacity} < 1")
        if policy not in DROP_POLICIES:
            raise ValueError(f"queue {name!r}: unknown drop policy {policy!r}; known: {DROP_POLICIES}")
        self.name = name
        self.capacity = capacity
        self.policy: DropPolicy = policy
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._put = self._got = self._dropped = self._peak = 0

    def put(self, item: T) -> bool:
        """Add an item; False when the policy dropped one (the incoming or the oldest) or the queue is closed."""
        with self._cond:
            if self._closed:
                self._dropped += 1
                return False
            self._put += 1
            accepted = True
            if len(self._items) >= self.capacity:
                if self.policy == "block":
                    while len(self._items) >= self.capacity and not self._closed:
                        self._cond.wait()
                    if self._closed:
                        self._dropped += 1
                        return False
                elif self.policy == "drop_oldest":
                    self._items.popleft()
                    self._dropped += 1
                    accepted = False
                else:
                    self._dropped += 1
                    return False
            self._items.append(item)
            self._peak = max(self._peak, len(self._items))
            self._cond.notify_all()
            return accepted

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest item; None on timeout; raises `Closed` once closed and drained."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    raise Closed(self.name)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            self._got += 1
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def peek_ready(self) -> bool:
        """True when an item is waiting (no wait, no removal)."""
        with self._cond:
            return bool(self._items)

    def close(self) -> None:
        """No more puts; waiting producers and consumers wake up."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def stats(self) -> QueueStats:
        with self._cond:
            return QueueStats(
                self.name, self.policy, self.capacity, self._put, self._got, self._dropped, self._peak
            )
