"""Faults inside ingest (issue #11): corrupt frames in the middle of a file, a camera that disappears.

(Killed decode workers are tested in test_cleanup.py, beside the other process checks.)

Oracles: a plain sequential PyAV decode of the same damaged file that skips the packets FFmpeg
rejects and notes the frames it flags corrupt; the file's own packet count (every frame is either
delivered or counted as skipped); OpenCV's own sequential read for the camera stand-in. There is no
camera on this machine: a video file opened through the same cv2.VideoCapture call stands in for
/dev/videoN. It "unplugs" when its frames run out (read() fails, as it does for a pulled USB camera)
while its path is gone, and is "plugged back" by putting the file back.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import threading
import time
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from streamrt.ingest import FileDecoder, PixelSpec, WebcamSource
from streamrt.ingest.errors import CorruptData, DeviceUnavailable

from .conftest import needs_ffmpeg  # noqa: TID252

NATIVE = PixelSpec(format="native")


def _packed_md5(fr: av.VideoFrame) -> str:
    planes = [
        np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width].tobytes() for p in fr.planes
    ]
    return hashlib.md5(b"".join(planes)).hexdigest()


def _sequential(path) -> tuple[int, list[tuple[int, str, bool]], list[list[int]]]:
    """(video packets, [(pts, md5, flagged corrupt)] of the frames FFmpeg returns, GOPs as pts lists)."""
    frames, gops, packets = [], [], 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        for pkt in c.demux(s):
            if pkt.size:
                packets += 1
                if pkt.is_keyframe or not gops:
                    gops.append([])
                gops[-1].append(pkt.pts)
            try:
                out = s.codec_context.decode(pkt if pkt.size else None)
            except av.error.InvalidDataError:
                continue
            frames += [(fr.pts, _packed_md5(fr), fr.is_corrupt) for fr in out]
    return packets, frames, gops


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> dict[str, object]:
    """An H.264 mp4 (4 s, GOP 25, B-frames) and two copies with noise written over bytes near the middle:
    3000 bytes (FFmpeg rejects packets) and 200 bytes (FFmpeg conceals and flags the frame)."""
    d = tmp_path_factory.mktemp("damaged")
    clean = d / "clean.mp4"
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
            "testsrc2=size=192x108:rate=25", "-t", "4", "-c:v", "libx264", "-preset", "fast", "-bf", "3",
            "-g", "25", "-pix_fmt", "yuv420p", str(clean),
        ],
        check=True,
        timeout=120,
    )  # fmt: skip
    data = clean.read_bytes()
    out: dict[str, object] = {"clean": clean}
    for name, n in (("rejected", 3000), ("flagged", 200)):
        noise = np.random.default_rng(3).integers(0, 256, n, dtype=np.uint8).tobytes()
        # where 200 bytes of noise make FFmpeg conceal (and flag) a frame depends on the encoder
        # build's bitstream: move the damage in steps from the middle until the sequential decode
        # (the oracle) flags one
        for step in range(40):
            at = len(data) // 2 + step * 1009
            (d / f"{name}.mp4").write_bytes(data[:at] + noise + data[at + n :])
            if name == "rejected" or any(c for _, _, c in _sequential(d / f"{name}.mp4")[1]):
                break
        else:
            raise AssertionError("no placement of 200 noise bytes made FFmpeg flag a concealed frame")
        out[name] = (d / f"{name}.mp4", at, at + n)
    return out


def _damaged_gops(path, lo: int, hi: int) -> set[int]:
    hit: set[int] = set()
    gop: list[tuple[int, int, int]] = []
    with av.open(str(path)) as c:
        pkts = [(p.pts, p.pos, p.size, p.is_keyframe) for p in c.demux(c.streams.video[0]) if p.size]
    for i, (pts, pos, size, key) in enumerate(pkts):
        if key and gop:
            if any(p < hi and p + s > lo for _, p, s in gop):
                hit |= {x for x, _, _ in gop}
            gop = []
        gop.append((pts, pos, size))
        if i == len(pkts) - 1 and any(p < hi and p + s > lo for _, p, s in gop):
            hit |= {x for x, _, _ in gop}
    return hit


@needs_ffmpeg
@pytest.mark.parametrize("kind", ["rejected", "flagged"])
def test_corrupt_frames_mid_stream_are_skipped_and_counted(damaged, pool, kind):
    path, lo, hi = damaged[kind]
    packets, ref, _ = _sequential(path)
    bad_gop = _damaged_gops(path, lo, hi)
    assert 0 < len(bad_gop) < packets // 2
    with FileDecoder(str(path), pixels=NATIVE, pool=pool, strict=False, interval_frames=1) as d:
        tb = Fraction(d.info.time_base)
        got = [(round(Fraction(f.pts) / tb), hashlib.md5(f.pixels).hexdigest()) for f in d]
        report = d.report
    # every frame is delivered or counted, and only frames of the damaged GOP are skipped
    assert report.corrupt_frames > 0 and len(got) + report.corrupt_frames == packets
    good_ref = [(p, h) for p, h, _ in ref if p not in bad_gop]
    assert [g for g in got if g[0] not in bad_gop] == good_ref
    delivered_bad = {p for p, _ in got if p in bad_gop}
    assert len(delivered_bad) == len(bad_gop) - report.corrupt_frames
    assert "corrupt frames skipped" in report.problem and str(path) in report.problem
    if kind == "flagged":  # FFmpeg concealed the damage: the flagged frame is the one we skipped
        flagged = {p for p, _, c in ref if c}
        assert flagged and not flagged & {p for p, _ in got}
    # strict: a typed error naming the file, after the frames before the damage were delivered
    seen = []
    with pytest.raises(CorruptData) as ei:
        with FileDecoder(str(path), pixels=NATIVE, pool=pool, interval_frames=1) as d:
            seen.extend(round(Fraction(f.pts) / tb) for f in d)
    assert ei.value.code == "E_INGEST_CORRUPT" and str(path) in str(ei.value)
    lenient = [p for p, _ in got]
    assert seen == lenient[: len(seen)] and len(seen) < len(lenient)  # raised at the damaged GOP's end
    assert set(seen) >= {p for p in lenient if p < min(bad_gop)}


@needs_ffmpeg
def test_clean_file_skips_nothing(damaged, pool):
    with FileDecoder(str(damaged["clean"]), pixels=NATIVE, pool=pool, strict=False, interval_frames=1) as d:
        n = sum(1 for _ in d)
        assert d.report.corrupt_frames == 0 and d.report.problem == "" and n == 100


# ------------------------------------------------------------------ a camera that disappears


def _cv2_frames(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        out.append(img)
    cap.release()
    return out


@needs_ffmpeg
def test_camera_unplugged_is_reported_and_reopened_with_backoff(damaged, tmp_path):
    src = damaged["clean"]
    cam_path = tmp_path / "video7.mp4"  # stands in for /dev/video7
    shutil.copy(src, cam_path)
    ref = _cv2_frames(src)
    cam = WebcamSource(str(cam_path), reconnect=True, max_retries=8, backoff=(0.05, 0.4), timeout=2.0)
    cam_path.unlink()  # the device node is gone: the open handle still delivers its last frames
    got = []
    plugged_back = threading.Event()

    def plug_back() -> None:  # once at least two reopen attempts failed, the camera comes back
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and cam.stats.disconnects == 0:
            time.sleep(0.01)
        time.sleep(0.05 + 0.1 + 0.02)  # first two backoff delays
        shutil.copy(src, cam_path)
        plugged_back.set()

    threading.Thread(target=plug_back, daemon=True).start()
    t0 = time.monotonic()
    with cam:
        for f in cam:
            got.append(f)
            if plugged_back.is_set() and cam.stats.reconnects >= 1 and f.index >= len(ref) + 5:
                break  # frames flow again after the reconnect
            assert time.monotonic() - t0 < 30
        stats = cam.stats
    assert stats.disconnects >= 1 and stats.reconnects >= 1
    assert "stopped delivering frames" in stats.last_problem
    idx = [f.index for f in got]
    assert idx == sorted(set(idx))  # one increasing frame count across the reconnect
    after = [f for f in got if f.index >= len(ref)]
    assert after and all(np.array_equal(f.pixels, ref[f.index - len(ref)]) for f in after)


@needs_ffmpeg
def test_camera_gone_for_good_raises_after_bounded_retries(damaged, tmp_path):
    cam_path = tmp_path / "video8.mp4"
    shutil.copy(damaged["clean"], cam_path)
    cam = WebcamSource(str(cam_path), reconnect=True, max_retries=3, backoff=(0.05, 0.1), timeout=1.0)
    cam_path.unlink()
    t0 = time.monotonic()
    with pytest.raises(DeviceUnavailable) as ei, cam:
        for _ in cam:
            pass
    assert ei.value.code == "E_INGEST_DEVICE" and str(cam_path) in str(ei.value)
    assert "3 reopen attempts" in str(ei.value)
    assert cam.stats.disconnects == 1 and cam.stats.reconnects == 0
    assert time.monotonic() - t0 < 10  # 0.05 + 0.1 + 0.1 s of backoff, never a hang


def test_regular_file_as_camera_just_ends(damaged):
    with WebcamSource(str(damaged["clean"]), timeout=2.0) as cam:
        n = sum(1 for _ in cam)
        assert n >= 1 and cam.stats.disconnects == 0
