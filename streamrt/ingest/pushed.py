"""Pushed frames: encoded images (JPEG/PNG/WebP) handed in by the server, decoded on demand.

`push()` is called by the network reader and never blocks: the image is checked by its magic bytes
(a bad one raises `BadImage` at once) and appended to a bounded buffer whose policy is
drop-oldest. The decision to drop is taken *before* decoding, so a slow consumer costs no decode
work: frames that fall out of the buffer (`stats.dropped_oldest`) or are older than `max_age_s`
when the consumer gets to them (`stats.dropped_stale`) are never decoded. Decoding happens in the
consumer's `__iter__`, optionally at reduced size (JPEG DCT scaling through OpenCV's
IMREAD_REDUCED_*). An image that fails to decode is counted (`stats.bad`) and skipped; the stream
goes on. Knows nothing about websockets or files.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from streamrt.ingest.errors import BadImage, BadRequest, SourceTimeout
from streamrt.ingest.live import _convert_bgr
from streamrt.ingest.types import Frame, PixelSpec

_REDUCED = {1: None, 2: "IMREAD_REDUCED_COLOR_2", 4: "IMREAD_REDUCED_COLOR_4", 8: "IMREAD_REDUCED_COLOR_8"}


def image_kind(data: bytes) -> str | None:
    """'jpeg', 'png', 'webp' from the magic bytes, else None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


@dataclass(slots=True)
class PushStats:
    pushed: int = 0
    delivered: int = 0
    dropped_oldest: int = 0  # evicted by a newer push while the buffer was full
    dropped_stale: int = 0  # older than max_age_s when the consumer reached them
    bad: int = 0  # failed to decode (skipped)


class PushedSource:
    """A bounded drop-oldest buffer of encoded images, iterated as decoded `Frame`s."""

    def __init__(
        self,
        *,
        capacity: int = 4,
        max_age_s: float | None = None,
        pixels: PixelSpec = PixelSpec(),  # noqa: B008 - frozen dataclass
        reduce: int = 1,
        timeout: float | None = None,
        source_id: str = "push",
    ) -> None:
        if capacity < 1:
            raise BadRequest(f"{source_id}: capacity must be >= 1", source=source_id)
        if reduce not in _REDUCED:
            raise BadRequest(f"{source_id}: reduce must be 1, 2, 4 or 8, got {reduce}", source=source_id)
        self.source_id = source_id
        self.spec = pixels if pixels.format != "native" else PixelSpec(format="rgb24", size=pixels.size)
        self.capacity = capacity
        self.max_age_s = max_age_s
        self.reduce = reduce
        self.timeout = timeout
        self.stats = PushStats()
        self.last_error: BadImage | None = None
        self._buf: deque[tuple[int, bytes, float, float]] = deque()  # (seq, data, capture, arrival)
        self._cond = threading.Condition()
        self._ended = False
        self._seq = 0

    def push(self, data: bytes, capture_time: float | None = None) -> int:
        """Queue one encoded image; returns its sequence number. Raises BadImage for non-images."""
        if image_kind(data) is None:
            raise BadImage(
                f"{self.source_id}: pushed data is not a JPEG, PNG or WebP image "
                f"({len(data)} bytes starting {bytes(data[:8])!r})",
                source=self.source_id,
            )
        now = time.monotonic()
        with self._cond:
            if self._ended:
                raise BadRequest(f"{self.source_id}: push after end()", source=self.source_id)
            seq = self._seq
            self._seq += 1
            if len(self._buf) >= self.capacity:
                self._buf.popleft()  # drop-oldest, before any decode work
                self.stats.dropped_oldest += 1
            self._buf.append((seq, bytes(data), now if capture_time is None else capture_time, now))
            self.stats.pushed += 1
            self._cond.notify()
        return seq

    def end(self) -> None:
        """No more pushes: iteration ends once the buffer is drained."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def close(self) -> None:
        self.end()

    def _take(self) -> tuple[int, bytes, float, float] | None:
        with self._cond:
            while True:
                if not self._cond.wait_for(lambda: self._buf or self._ended, self.timeout):
                    raise SourceTimeout(
                        f"{self.source_id}: nothing pushed for {self.timeout} s", source=self.source_id
                    )
                if not self._buf:
                    return None
                item = self._buf.popleft()
                if self.max_age_s is not None and time.monotonic() - item[3] > self.max_age_s:
                    self.stats.dropped_stale += 1
                    continue
                return item

    def decode(self, data: bytes) -> np.ndarray:
        """Decode one image per the spec; raises BadImage."""
        import cv2

        flag = cv2.IMREAD_COLOR if self.reduce == 1 else getattr(cv2, _REDUCED[self.reduce])
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        if img is None:
            raise BadImage(
                f"{self.source_id}: image of {len(data)} bytes failed to decode", source=self.source_id
            )
        return _convert_bgr(img, self.spec)

    def __iter__(self) -> Iterator[Frame]:
        first: float | None = None
        while (item := self._take()) is not None:
            seq, data, cap, _ = item
            try:
                px = self.decode(data)
            except BadImage as e:
                self.stats.bad += 1
                self.last_error = e
                continue
            first = cap if first is None else first
            self.stats.delivered += 1
            yield Frame(
                px,
                cap,
                cap - first,
                seq,
                True,
                self.source_id,
                self.spec.format,
                px.shape[1],
                px.shape[0],
                capture_time=cap,
            )

    def __enter__(self) -> PushedSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
