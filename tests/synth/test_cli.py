"""`streamrt synth` and `streamrt bench synth` through the real command line (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

from streamrt.synth import parse, read_timeline


def streamrt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamrt", *args], capture_output=True, text=True, timeout=300
    )


def test_help_explains_with_examples():
    r = streamrt("synth", "--help")
    assert r.returncode == 0
    assert "examples:" in r.stdout and "--gop" in r.stdout and "--print-events" in r.stdout


def test_synth_writes_clip_timeline_and_prints_events(tmp_path):
    out = tmp_path / "clip.mkv"
    r = streamrt(
        "synth", "--seconds", "2", "--fps", "15", "--size", "160x90", "--preset", "busy", "--seed", "4",
        "--codec", "h264", "--gop", "10", "--bframes", "2", "--out", str(out), "--print-events",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    header, events = read_timeline(tmp_path / "clip.events.jsonl")
    assert (
        header["config"]["width"] == 160 and header["config"]["fps"] == 15 and header["config"]["seed"] == 4
    )
    assert (
        header["video"]["gop"] == 10 and header["video"]["bframes"] == 2 and header["video"]["frames"] == 30
    )
    lines = r.stdout.splitlines()
    assert len(lines) == len(events) > 0 and lines[0].startswith("[    0.00s] ")
    assert len(parse(r.stdout)) == len(events)  # every printed line is a sentence of the grammar
    assert json.loads((tmp_path / "clip.events.jsonl").read_text().splitlines()[1])["text"] in r.stdout


def test_bad_input_exits_2_with_the_code(tmp_path):
    r = streamrt("synth", "--seconds", "1", "--out", str(tmp_path / "x.avi"), "--no-progress")
    assert r.returncode == 2 and "E_SYNTH_CONTAINER" in r.stderr
    r = streamrt("synth", "--seconds", "1", "--preset", "nope", "--out", str(tmp_path / "x.mp4"))
    assert r.returncode == 2 and "E_SYNTH_PRESET" in r.stderr


def test_bench_synth_quick_runs():
    r = subprocess.run(
        [sys.executable, "-m", "streamrt", "bench", "synth", "--quick", "--repeats", "1", "--warmup", "0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "render 640x360" in r.stdout and "render+h264+write" in r.stdout and "frames/s" in r.stdout
