"""Live sources: latest-frame grabbing with counted drops, network streams with reconnect and
timeouts, pushed images with a drop-oldest buffer that decides before decoding.

Oracles: OpenCV's own sequential read of the same file (the webcam path opens files through
cv2.VideoCapture), a sequential PyAV decode matched by pts (network), cv2.imdecode of the pushed
bytes (pushed images), and the operating system (sockets that never answer).
"""

from __future__ import annotations

import functools
import http.server
import socket
import threading
import time

import av
import cv2
import numpy as np
import pytest

from streamrt.ingest import NetworkSource, PixelSpec, PushedSource, WebcamSource, open_source, source_kind
from streamrt.ingest.errors import BadImage, DeviceUnavailable, SourceTimeout, StreamLost


def test_absent_webcam_is_a_clear_error():
    with pytest.raises(DeviceUnavailable, match="/dev/video97") as ei:
        WebcamSource("/dev/video97", timeout=1.0)
    assert ei.value.code == "E_INGEST_DEVICE"


def test_grabber_keeps_latest_and_counts_drops(clips):
    path = str(clips["h264_vfr_mkv"])
    cap = cv2.VideoCapture(path)
    ref = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        ref.append(img)
    got = []
    with WebcamSource(path, pixels=PixelSpec(format="bgr24"), timeout=5.0) as cam:
        for f in cam:
            got.append(f)
            time.sleep(0.01)  # a consumer slower than the source
        stats = cam.stats
    assert len(got) < len(ref) == stats.grabbed
    assert stats.delivered == len(got) and stats.dropped == stats.grabbed - stats.delivered
    idx = [f.index for f in got]
    assert idx == sorted(set(idx)) and idx[-1] == len(ref) - 1  # newest first, never a stale one
    assert all(np.array_equal(f.pixels, ref[f.index]) for f in got)
    assert all(f.capture_time is not None for f in got)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


@pytest.fixture
def http_dir(clips):
    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(clips["h264_vfr_mkv"].parent))
    )
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_network_stream_over_http(clips, http_dir):
    path = clips["h264_vfr_mkv"]
    with av.open(str(path)) as c:
        ref = {
            round(float(fr.pts * fr.time_base), 6): fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)
        }
    url = f"{http_dir}/{path.name}"
    assert source_kind(url) == "network"
    with open_source(url, pixels=PixelSpec(format="rgb24"), max_retries=0) as src:
        got = list(src)
    assert len(got) >= 1
    assert all(np.array_equal(f.pixels, ref[round(f.pts, 6)]) for f in got)
    assert src.stats.grabbed == len(ref)  # every frame was decoded; the consumer may have skipped some


def _serve_tcp(payloads: list[bytes | None]) -> int:
    """A TCP server answering each connection with the next payload (None: accept and stay silent)."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def run():
        held = []
        for data in payloads:
            conn, _ = srv.accept()
            if data is None:
                held.append(conn)
                continue
            conn.sendall(data)
            conn.close()
        if held:
            time.sleep(10)
        srv.close()  # later connections are refused

    threading.Thread(target=run, daemon=True).start()
    return port


def test_network_timeout_is_a_clear_error():
    port = _serve_tcp([None, None])
    t = time.monotonic()
    with pytest.raises(SourceTimeout) as ei:
        with NetworkSource(
            f"tcp://127.0.0.1:{port}", open_timeout=1.0, read_timeout=1.0, max_retries=1, backoff=(0.1, 0.1)
        ) as src:
            list(src)
    assert ei.value.code == "E_INGEST_TIMEOUT" and str(port) in str(ei.value)
    assert time.monotonic() - t < 15


def test_network_reconnects_with_backoff_then_reports_loss(clips):
    data = clips["h264_ts_start"].read_bytes()
    port = _serve_tcp([data[: len(data) // 2], data])  # first connection breaks half way
    frames = []
    with pytest.raises(StreamLost) as ei:
        with NetworkSource(
            f"tcp://127.0.0.1:{port}?timeout=2000000",
            open_timeout=2.0,
            read_timeout=2.0,
            max_retries=1,
            backoff=(0.1, 0.2),
            reconnect_on_eof=True,
        ) as src:
            for f in src:
                frames.append(f)
    assert ei.value.code == "E_INGEST_STREAM_LOST"
    assert src.stats.reconnects >= 1
    assert src.stats.grabbed > 75  # frames from both connections (75 in the file)
    assert len(frames) >= 1


def _jpeg(i: int, w: int = 64, h: int = 48) -> bytes:
    img = np.full((h, w, 3), (i * 20) % 256, np.uint8)
    img[:, : (i % w)] = 255
    return cv2.imencode(".jpg", img)[1].tobytes()


class _CountingPush(PushedSource):
    """Counts decode calls to show drops happen before any decode work."""

    decodes = 0

    def decode(self, data):
        type(self).decodes += 1
        return super().decode(data)


def test_pushed_drop_oldest_before_decode():
    src = _CountingPush(capacity=3, pixels=PixelSpec(format="bgr24"))
    blobs = [_jpeg(i) for i in range(10)]
    for b in blobs:
        src.push(b)
    src.end()
    got = list(src)
    assert [f.index for f in got] == [7, 8, 9]
    assert src.stats.dropped_oldest == 7 and src.stats.delivered == 3 and _CountingPush.decodes == 3
    assert all(
        np.array_equal(f.pixels, cv2.imdecode(np.frombuffer(blobs[f.index], np.uint8), cv2.IMREAD_COLOR))
        for f in got
    )


def test_pushed_reduced_size_stale_and_bad_images():
    src = PushedSource(capacity=8, max_age_s=0.05, reduce=2, pixels=PixelSpec(format="rgb24"))
    with pytest.raises(BadImage) as ei:
        src.push(b"not an image at all")
    assert ei.value.code == "E_INGEST_BAD_IMAGE"
    src.push(_jpeg(1))
    time.sleep(0.1)  # this one goes stale before anyone looks at it
    src.push(b"\xff\xd8\xff\xe0" + b"\x00" * 100)  # JPEG magic, garbage body: counted, skipped
    src.push(_jpeg(3, 64, 48))
    src.end()
    got = list(src)
    assert src.stats.dropped_stale == 1 and src.stats.bad == 1 and src.last_error is not None
    assert (
        len(got) == 1 and got[0].pixels.shape == (24, 32, 3) and got[0].index == 2
    )  # the third accepted push


def test_source_kinds():
    assert (
        source_kind(0) == "webcam"
        and source_kind("webcam:1") == "webcam"
        and source_kind("/dev/video2") == "webcam"
    )
    assert source_kind("push") == "push" and source_kind("rtsp://cam/stream") == "network"
    assert source_kind("srt://h:1") == "network" and source_kind("clip.mp4") == "file"
    assert isinstance(open_source("push"), PushedSource)
