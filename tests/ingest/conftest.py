"""Test clips for ingest, generated once per session: ffmpeg CLI (lavfi testsrc2) and PyAV encoding.

Every clip is tiny (<= 192x108, a few seconds) so the whole ingest suite stays within a few minutes
on one core. `CLIPS` maps a name to (how it is made, what it exercises). Tests that need the
ffmpeg CLI skip when it is absent (CI installs it: `apt-get install -y ffmpeg`).
"""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from streamrt.ingest.pool import DecodePool

HAVE_FFMPEG = shutil.which("ffmpeg") is not None
needs_ffmpeg = pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg CLI not installed")

_SRC = "testsrc2=size={size}:rate={rate}"
_X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]


def _ffmpeg_encoders() -> str:
    if not HAVE_FFMPEG:
        return ""
    return subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout


# name -> (file name, ffmpeg output args, seconds, rate, extra inputs)
FFMPEG_CLIPS: dict[str, tuple[str, list[str], float, int, list[str]]] = {
    # B-frames (pyramid), closed GOP, plus an audio track
    "h264_bframes_audio_mp4": (
        "bf.mp4",
        [
            "-map",
            "0:v",
            "-map",
            "1:a",
            *_X264,
            "-preset",
            "fast",
            "-bf",
            "3",
            "-g",
            "15",
            "-c:a",
            "aac",
            "-shortest",
        ],
        3.0,
        30,
        ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000"],
    ),
    # open GOP with leading B-frames, Matroska
    "h264_opengop_mkv": (
        "og.mkv",
        [*_X264, "-preset", "fast", "-bf", "3", "-g", "20", "-x264-params", "open-gop=1"],
        4.0,
        30,
        [],
    ),
    # MPEG-TS: start time 1.4 s, approximate seeking
    "h264_ts_start": ("st.ts", [*_X264, "-preset", "fast", "-bf", "2", "-g", "12"], 3.0, 25, []),
    # QuickTime with a non-zero start time from an edit list
    "h264_mov_offset": ("off.mov", [*_X264, "-g", "10", "-output_ts_offset", "2.5"], 2.0, 25, []),
    "hevc_mp4": (
        "h.mp4",
        [
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "keyint=12:log-level=error:bframes=2",
            "-pix_fmt",
            "yuv420p",
            "-tag:v",
            "hvc1",
        ],
        2.0,
        25,
        [],
    ),
    "vp9_webm": (
        "v.webm",
        ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", "10", "-pix_fmt", "yuv420p"],
        2.0,
        25,
        [],
    ),
    "mjpeg_mov": ("m.mov", ["-c:v", "mjpeg", "-q:v", "5", "-pix_fmt", "yuvj420p"], 1.5, 20, []),
    # a single GOP (one keyframe)
    "h264_single_gop_mp4": ("one.mp4", [*_X264, "-bf", "2", "-g", "1000"], 3.0, 25, []),
}
_AV1 = (
    "av1_mkv",
    ("a.mkv", ["-c:v", "libaom-av1", "-cpu-used", "8", "-g", "10", "-pix_fmt", "yuv420p"], 1.0, 15, []),
)


def _make_ffmpeg(
    out: Path, args: list[str], seconds: float, rate: int, extra: list[str], size: str = "192x108"
) -> Path:
    cmd = [
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        _SRC.format(size=size, rate=rate),
        *extra,
        "-t",
        str(seconds),
        *args,
        str(out),
    ]
    subprocess.run(cmd, check=True, timeout=120)
    return out


def _make_vfr_pyav(out: Path) -> Path:
    """Variable frame rate H.264 with B-frames in Matroska, encoded with PyAV (irregular pts)."""
    rng = np.random.default_rng(0)
    with av.open(str(out), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 128, 72, "yuv420p"
        s.time_base = Fraction(1, 1000)
        s.codec_context.time_base = Fraction(1, 1000)
        s.options = {"bf": "2", "g": "12", "preset": "ultrafast"}
        s.codec_context.gop_size = 12
        pts = 0
        for i in range(70):
            img = np.zeros((72, 128, 3), np.uint8)
            img[:, :, 0] = (i * 7) % 256
            img[10 + i % 50 : 20 + i % 50, 20:60, 1] = 255
            img += rng.integers(0, 20, img.shape, dtype=np.uint8)
            fr = av.VideoFrame.from_ndarray(img, format="rgb24")
            fr.pts = pts
            fr.time_base = Fraction(1, 1000)
            pts += int(rng.choice([20, 33, 50, 90]))
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return out


def _make_rotated(src: Path, out: Path) -> Path:
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(src),
            "-c",
            "copy",
            "-metadata:s:v",
            "rotate=90",
            str(out),
        ],
        check=True,
        timeout=60,
    )
    return out


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """All generated test clips by name (ffmpeg ones only when the CLI is installed)."""
    d = tmp_path_factory.mktemp("clips")
    out: dict[str, Path] = {"h264_vfr_mkv": _make_vfr_pyav(d / "vfr.mkv")}
    if HAVE_FFMPEG:
        specs = dict(FFMPEG_CLIPS)
        if "libaom-av1" in _ffmpeg_encoders():
            specs[_AV1[0]] = _AV1[1]
        for name, (fname, args, secs, rate, extra) in specs.items():
            out[name] = _make_ffmpeg(d / fname, args, secs, rate, extra)
        out["h264_rotated_mp4"] = _make_rotated(out["h264_single_gop_mp4"], d / "rot.mp4")
    return out


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory, clips) -> dict[str, Path]:
    """Broken inputs: empty, not media, audio only, truncated mp4/mkv, corrupted middle."""
    d = tmp_path_factory.mktemp("bad")
    out = {}
    (d / "empty.mp4").write_bytes(b"")
    out["empty"] = d / "empty.mp4"
    (d / "notes.txt").write_text("this is a text file, not a video\n" * 50)
    out["text"] = d / "notes.txt"
    with av.open(str(d / "audio.m4a"), "w") as c:  # audio only, encoded with PyAV
        s = c.add_stream("aac", rate=16000)
        for i in range(20):
            fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            fr.sample_rate, fr.pts = 16000, i * 1024
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    out["audio_only"] = d / "audio.m4a"
    if HAVE_FFMPEG:
        full = _make_ffmpeg(d / "fs.mp4", [*_X264, "-g", "10", "-movflags", "+faststart"], 3.0, 25, [])
        data = full.read_bytes()
        (d / "trunc.mp4").write_bytes(data[: len(data) * 6 // 10])
        out["truncated_mp4"] = d / "trunc.mp4"
        mkv = clips["h264_opengop_mkv"].read_bytes()
        (d / "trunc.mkv").write_bytes(mkv[: len(mkv) // 2])
        out["truncated_mkv"] = d / "trunc.mkv"
        ts = clips["h264_ts_start"].read_bytes()
        mid = len(ts) // 2
        rng = np.random.default_rng(1)
        (d / "corrupt.ts").write_bytes(
            ts[:mid] + rng.integers(0, 256, 6000, dtype=np.uint8).tobytes() + ts[mid + 6000 :]
        )
        out["corrupt_ts"] = d / "corrupt.ts"
    return out


@pytest.fixture(scope="session")
def pool():
    """One 2-worker decode pool shared by the suite (spawning workers costs ~0.5 s each time)."""
    with DecodePool(2) as p:
        yield p
