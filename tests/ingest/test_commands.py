"""`streamrt decode` and `streamrt probe` through the real command line (subprocesses: worker
pools behave differently under a CLI `__main__`). Oracles: ffmpeg's framemd5 and ffprobe-free
facts we built the clips with (GOP length, frame rate, stream kinds)."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from streamrt.cli import main
from streamrt.ingest import FileDecoder, PixelSpec, Uniform

from .conftest import needs_ffmpeg  # noqa: TID252


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamrt", *args], capture_output=True, text=True, timeout=timeout
    )


def _inproc(capsys, *args: str) -> tuple[int, str, str]:
    """Commands that start no worker pool run in-process (a subprocess costs seconds of imports)."""
    try:
        rc = main(list(args))
    except SystemExit as e:  # argparse --help
        rc = int(e.code or 0)
    out = capsys.readouterr()
    return rc, out.out, out.err


@needs_ffmpeg
@pytest.mark.parametrize("name", ["h264_ts_start"])
def test_decode_framemd5_diffs_clean_against_ffmpeg(clips, name):
    path = str(clips[name])
    r = _cli("decode", path, "--framemd5", "--workers", "2")
    assert r.returncode == 0, r.stderr
    theirs = subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-i",
            path,
            "-map",
            "0:v",
            "-fflags",
            "+bitexact",
            "-f",
            "framemd5",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert r.stdout == theirs


def test_decode_images_and_index(clips, tmp_path, pool):
    path = str(clips["h264_vfr_mkv"])
    out = tmp_path / "frames"
    r = _cli("decode", path, "--frames", "4", "--size", "64x36", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    rows = [ln.split("\t") for ln in (out / "frames.tsv").read_text().splitlines()[1:]]
    with FileDecoder(
        path, pool=pool, sampling=Uniform(4), pixels=PixelSpec(format="bgr24", size=(64, 36))
    ) as d:
        ref = list(d)
    assert [int(r_[0]) for r_ in rows] == [f.index for f in ref]
    for row, f in zip(rows, ref, strict=True):
        img = cv2.imread(str(out / row[4]))
        assert np.array_equal(img, f.pixels)  # PNG is lossless
        assert float(row[2]) == pytest.approx(f.t, abs=1e-6)


def test_decode_reports_typed_errors(tmp_path, capsys):
    rc, _, err = _inproc(capsys, "decode", str(tmp_path / "missing.mp4"), "--framemd5")
    assert rc == 1 and "E_INGEST_NOT_FOUND" in err and "missing.mp4" in err
    (tmp_path / "e.mp4").write_bytes(b"")
    rc, _, err = _inproc(capsys, "probe", str(tmp_path / "e.mp4"))
    assert rc == 1 and "E_INGEST_EMPTY" in err


@needs_ffmpeg
def test_probe_lists_streams_and_keyframes(clips, capsys):
    rc, out, err = _inproc(capsys, "probe", str(clips["h264_bframes_audio_mp4"]), "--json")
    assert rc == 0, err
    info = json.loads(out)
    kinds = sorted(s["kind"] for s in info["streams"])
    assert kinds == ["audio", "video"]
    v = next(s for s in info["streams"] if s["kind"] == "video")
    assert (
        v["codec"] == "h264" and (v["width"], v["height"]) == (192, 108) and v["avg_fps"] == pytest.approx(30)
    )
    assert info["keyframe_times_s"] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])  # -g 15 at 30 fps
    _, text, _ = _inproc(capsys, "probe", str(clips["h264_rotated_mp4"]))
    assert "rotation" in text and "keyframes at" in text


def test_help_has_examples(capsys):
    for cmd in ("decode", "probe"):
        rc, out, _ = _inproc(capsys, cmd, "--help")
        assert rc == 0 and "examples:" in out
