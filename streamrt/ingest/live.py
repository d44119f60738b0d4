"""Live sources: webcams through OpenCV, network streams through PyAV, each behind a latest-frame grabber.

A live source must never make the model wait and must never queue without bound: a grabber thread
reads as fast as the source delivers and keeps only the newest frame (drop policy "keep-latest";
every overwritten frame is counted in `stats.dropped`). The consumer's iterator blocks (with a
timeout) for a frame newer than the one it had. Network streams reconnect with exponential
backoff; a webcam that cannot be opened fails fast with `DeviceUnavailable`, one that stops
delivering (unplugged) is reported (log, `stats.disconnects`, `stats.last_problem`) and reopened
with exponential backoff, and `DeviceUnavailable` is raised once every attempt failed. What this
module does not know: files (see `decoder`) and pushed images (see `pushed`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from streamrt.ingest.errors import DeviceUnavailable, IngestError, SourceTimeout, StreamLost
from streamrt.ingest.types import Frame, PixelSpec

log = logging.getLogger(__name__)


@dataclass(slots=True)
class LiveStats:
    grabbed: int = 0
    delivered: int = 0
    dropped: int = 0  # frames overwritten before the consumer took them (policy: keep-latest)
    reconnects: int = 0  # reconnect attempts (network) / successful reopenings (webcam)
    disconnects: int = 0  # times a webcam stopped delivering frames
    last_problem: str = ""


# a grabbed frame: (pixels, pts seconds or None, capture time.monotonic(), keyframe)
Grabbed = tuple[np.ndarray, float | None, float, bool]


class LatestFrameGrabber:
    """Runs `read()` on a thread; keeps the newest result; the consumer waits for a newer one.

    `read()` returns a Grabbed tuple, or None at the end of the source; exceptions it raises are
    handed to the consumer. Owns the thread, the one-frame slot and the counters.
    """

    def __init__(
        self, read: Callable[[], Grabbed | None], name: str, timeout: float, stats: LiveStats | None = None
    ) -> None:
        self._read = read
        self.timeout = timeout
        self.stats = stats or LiveStats()
        self._cond = threading.Condition()
        self._latest: tuple[int, Grabbed] | None = None
        self._taken = -1
        self._ended = False
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        seq = 0
        try:
            while not self._stop.is_set():
                g = self._read()
                if g is None:
                    break
                with self._cond:
                    if self._latest is not None and self._latest[0] > self._taken:
                        self.stats.dropped += 1
                    self._latest = (seq, g)
                    self.stats.grabbed += 1
                    self._cond.notify_all()
                seq += 1
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            self._error = e
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def next(self) -> tuple[int, Grabbed] | None:
        """The newest frame not yet taken (seq, grabbed); None at the end; raises the reader's error."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._ended or (self._latest is not None and self._latest[0] > self._taken),
                self.timeout,
            )
            if self._latest is not None and self._latest[0] > self._taken:
                self._taken = self._latest[0]
                self.stats.delivered += 1
                return self._latest
            if self._error is not None:
                raise self._error
            if self._ended:
                return None
            if not ok:
                raise SourceTimeout(f"no frame for {self.timeout:.1f} s")
            return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


def _convert_bgr(img: np.ndarray, spec: PixelSpec) -> np.ndarray:
    """OpenCV BGR [H, W, 3] -> the spec's format and size."""
    import cv2

    if spec.crop:
        x, y, w, h = spec.crop
        img = img[y : y + h, x : x + w]
    h, w = img.shape[:2]
    size = spec.size
    if size is None and spec.short_side:
        s = spec.short_side / min(w, h)
        size = (max(2, round(w * s / 2) * 2), max(2, round(h * s / 2) * 2))
    if size is not None and size != (w, h):
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    if spec.format == "rgb24":
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if spec.format == "gray":
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return np.ascontiguousarray(img)


class _LiveBase:
    source_id: str
    spec: PixelSpec
    _grabber: LatestFrameGrabber
    reconnecting: bool = False  # while True the consumer keeps waiting past the frame timeout

    @property
    def stats(self) -> LiveStats:
        return self._grabber.stats

    def __iter__(self) -> Iterator[Frame]:
        first_pts: float | None = None
        while True:
            try:
                got = self._grabber.next()
            except SourceTimeout:
                if self.reconnecting:  # bounded: the reconnect loop ends with frames or an error
                    continue
                raise SourceTimeout(
                    f"{self.source_id}: no frame for {self._grabber.timeout:.1f} s", source=self.source_id
                ) from None
            if got is None:
                return
            seq, (px, pts, cap, key) = got
            pts = cap if pts is None else pts
            first_pts = pts if first_pts is None else first_pts
            yield Frame(
                pixels=px,
                pts=pts,
                t=pts - first_pts,
                index=seq,
                keyframe=key,
                source_id=self.source_id,
                pix_fmt=self.spec.format,
                width=px.shape[1],
                height=px.shape[0],
                capture_time=cap,
            )

    def close(self) -> None:
        self._grabber.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_regular_file(device: int | str) -> bool:
    import os

    return isinstance(device, str) and os.path.isfile(device)


class WebcamSource(_LiveBase):
    """A V4L2/USB camera (index or /dev/videoN; anything cv2.VideoCapture opens) as live frames.

    Frame.index counts grabbed frames, so a gap means frames were dropped; pts is the grab time
    (time.monotonic()). `pixels.format` "native" is not available from OpenCV (bgr24 is used).
    A camera that cannot be opened raises `DeviceUnavailable` at once. One that stops delivering
    frames (unplugged, driver reset) is reopened with exponential backoff `backoff` (first, max)
    seconds, at most `max_retries` times in a row, then `DeviceUnavailable` reaches the consumer.
    reconnect: default True, except for a regular file opened as a camera (it simply ends).
    """

    def __init__(
        self,
        device: int | str,
        *,
        pixels: PixelSpec = PixelSpec(format="bgr24"),  # noqa: B008 - frozen dataclass
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        timeout: float = 5.0,
        reconnect: bool | None = None,
        max_retries: int = 5,
        backoff: tuple[float, float] = (0.5, 8.0),
        source_id: str | None = None,
    ) -> None:
        self.source_id = source_id or (f"webcam:{device}" if isinstance(device, int) else str(device))
        self.spec = pixels if pixels.format != "native" else PixelSpec(format="bgr24", size=pixels.size)
        self._device = device
        self._props = (width, height, fps)
        self._max_retries = max_retries
        self._backoff = backoff
        self._stop = threading.Event()
        self._stats = LiveStats()
        self._failures = 0  # reopen attempts since the last frame that was read
        self._cap = self._open()
        if self._cap is None:
            raise DeviceUnavailable(
                f"{self.source_id}: cannot open the camera (device absent, busy or not permitted)",
                source=self.source_id,
            )
        reconnect = not _is_regular_file(device) if reconnect is None else reconnect

        def read() -> Grabbed | None:
            while True:
                ok, img = self._cap.read() if self._cap is not None else (False, None)
                if ok:
                    self._failures = 0
                    return (_convert_bgr(img, self.spec), None, time.monotonic(), True)
                if not reconnect or not self._reopen():
                    return None

        self._grabber = LatestFrameGrabber(read, f"grab-{self.source_id}", timeout, self._stats)

    def _open(self):
        import cv2

        cap = cv2.VideoCapture(self._device)
        if not cap.isOpened():
            cap.release()
            return None
        for prop, v in zip(
            (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FPS), self._props, strict=True
        ):
            if v:
                cap.set(prop, v)
        return cap

    def _reopen(self) -> bool:
        """The camera stopped delivering: reopen it with backoff. False when closing; raises
        DeviceUnavailable after `max_retries` attempts without a frame read in between."""
        self.reconnecting = True
        try:
            if self._cap is not None:
                self._cap.release()
                self._cap = None
            st = self._stats
            st.disconnects += 1
            st.last_problem = f"{self.source_id}: the camera stopped delivering frames (unplugged?)"
            t0 = time.monotonic()
            while self._failures < self._max_retries:
                self._failures += 1
                delay = min(self._backoff[1], self._backoff[0] * 2 ** (self._failures - 1))
                log.warning(
                    "%s; reopening in %.2f s (%d/%d)",
                    st.last_problem,
                    delay,
                    self._failures,
                    self._max_retries,
                )
                if self._stop.wait(delay):
                    return False
                self._cap = self._open()
                if self._cap is not None:
                    st.reconnects += 1
                    log.warning("%s: camera open again (attempt %d)", self.source_id, self._failures)
                    return True
            st.last_problem = (
                f"{self.source_id}: the camera disappeared and {self._max_retries} reopen attempts "
                f"(the last {time.monotonic() - t0:.1f} s) brought no frame back"
            )
            raise DeviceUnavailable(st.last_problem, source=self.source_id)
        finally:
            self.reconnecting = False

    def close(self) -> None:
        self._stop.set()
        super().close()
        if self._cap is not None:
            self._cap.release()


class NetworkSource(_LiveBase):
    """rtsp/rtmp/http(s)/udp/tcp/srt streams through PyAV in live mode (no seeking).

    Reconnects on errors (and on end of stream when `reconnect_on_eof`) with exponential backoff
    `backoff` (first, max) seconds, at most `max_retries` times in a row; then raises `StreamLost`
    (or `SourceTimeout` when the last failure was a timeout). Frame.pts is the stream's time in
    seconds (it may restart after a reconnect); capture_time is when the frame was decoded.
    """

    def __init__(
        self,
        url: str,
        *,
        pixels: PixelSpec = PixelSpec(),  # noqa: B008 - frozen dataclass
        open_timeout: float = 5.0,
        read_timeout: float = 5.0,
        max_retries: int = 5,
        backoff: tuple[float, float] = (0.5, 8.0),
        reconnect_on_eof: bool = False,
        options: dict[str, str] | None = None,
        source_id: str | None = None,
    ) -> None:
        self.url = url
        self.source_id = source_id or url
        self.spec = pixels
        # no "fflags nobuffer": it drops the packets read while probing (checked: frames lost)
        self._opts = {
            **({"rtsp_transport": "tcp"} if url.startswith("rtsp") else {}),
            **(options or {}),
        }
        self._timeouts = (open_timeout, read_timeout)
        self._max_retries = max_retries
        self._backoff = backoff
        self._reconnect_on_eof = reconnect_on_eof
        self._stop = threading.Event()
        self._frames = self._decode_forever()
        self._grabber = LatestFrameGrabber(
            lambda: next(self._frames, None), f"grab-{url}", open_timeout + read_timeout + backoff[1] + 1.0
        )

    def _decode_forever(self) -> Iterator[Grabbed]:
        import av

        from streamrt.ingest.convert import geometry, native_nbytes, rotation_degrees, to_pixels

        failures = 0
        geo = None
        while not self._stop.is_set():
            last_error: IngestError | None = None
            try:
                with av.open(self.url, options=self._opts, timeout=self._timeouts) as c:
                    if not c.streams.video:
                        raise StreamLost(f"{self.url}: the stream has no video", source=self.url)
                    vs = c.streams.video[0]
                    vs.thread_type = "AUTO"  # one live stream: let FFmpeg use the cores
                    for fr in c.decode(vs):
                        failures = 0
                        if geo is None:
                            geo = geometry(
                                self.spec, fr.width, fr.height, rotation_degrees(fr), native_nbytes(fr)
                            )
                        pts = float(fr.pts * fr.time_base) if fr.pts is not None else None
                        yield (to_pixels(fr, self.spec, geo), pts, time.monotonic(), bool(fr.key_frame))
                        if self._stop.is_set():
                            return
                if not self._reconnect_on_eof:
                    return
                last_error = StreamLost(f"{self.url}: stream ended", source=self.url)
            except StreamLost:
                raise
            except (av.error.TimeoutError, av.error.ExitError):  # ExitError: PyAV's timeout interrupt fired
                last_error = SourceTimeout(
                    f"{self.url}: timed out (open {self._timeouts[0]} s, read {self._timeouts[1]} s)",
                    source=self.url,
                )
            except (av.error.FFmpegError, OSError) as e:
                last_error = StreamLost(f"{self.url}: {e}", source=self.url)
            failures += 1
            if failures > self._max_retries:
                if isinstance(last_error, SourceTimeout):
                    raise last_error
                raise StreamLost(
                    f"{last_error} (gave up after {self._max_retries} reconnects)", source=self.url
                )
            delay = min(self._backoff[1], self._backoff[0] * 2 ** (failures - 1))
            log.warning("%s; reconnecting in %.1f s (%d/%d)", last_error, delay, failures, self._max_retries)
            self._grabber.stats.reconnects += 1
            if self._stop.wait(delay):
                return

    def close(self) -> None:
        self._stop.set()
        super().close()
