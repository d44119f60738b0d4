"""Batch replay on Ray: a folder of generated shapes-world videos replayed as Ray tasks on a local
cluster (2 CPUs, started here) against the oracle of the single-file replay (`streamrt replay`'s own
`run`, in this process, one file at a time). Outputs are compared on everything that does not depend
on the machine's clock (SRT bytes; JSONL records without capture/output times, latencies and the
deadline flags). Resuming: a second run replays nothing; a video whose marker is gone (a run killed
between moving its file and writing its marker) is replayed again and its file replaced whole; a
broken video fails alone, leaving no output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from streamrt.scale import ScaleError
from streamrt.scale.batch import (
    STATE_DIR,
    BatchJob,
    find_inputs,
    finished,
    marker_path,
    plan,
    replay_namespace,
)

REPLAY_ARGS = ["--on-deadline", "finish"]  # reproducible output: deadlines never cut a response
# P(silence) < 0.5: the built-in model's calibrated policy (speak on a scene change) stays silent on
# these 2 s clips, and the comparison needs text to compare
REPLAY_ARGS += ["--respond", "model", "--silence-threshold", "0.5"]
CLOCK_FIELDS = {"capture", "output", "latency_s", "deadline_met", "encode_s", "prefill_s", "started_unix"}


def _stable(jsonl: Path) -> tuple[list[dict], dict[int, str]]:
    """The records of a replay's JSONL that do not depend on timing: every record but the summary and
    the streamed deltas, without clock fields; and each segment's deltas joined (how a response's text
    is cut into deltas depends on when the reader looks)."""
    recs, deltas = [], {}
    for line in jsonl.read_text().splitlines():
        rec = json.loads(line)
        if rec["type"] == "delta":
            deltas[rec["segment"]] = deltas.get(rec["segment"], "") + rec["text"]
        elif rec["type"] != "summary":
            recs.append({k: v for k, v in rec.items() if k not in CLOCK_FIELDS and k != "source"})
    return recs, deltas


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    from streamrt.synth import World, WorldConfig, write_video

    d = tmp_path_factory.mktemp("videos")
    for i in range(2):
        cfg = WorldConfig.preset("simple", seed=10 + i, width=160, height=96, fps=10)
        write_video(d / f"clip{i}.mp4", World(cfg), 2.0)  # also writes clipN.events.jsonl: not a video
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return d


# ---- without Ray -------------------------------------------------------------------------------------
def test_inputs_folder_and_glob(videos: Path) -> None:
    names = [Path(f).name for f in find_inputs(videos)]
    assert names == ["broken.mp4", "clip0.mp4", "clip1.mp4"]  # the .events.jsonl is not a video
    assert [Path(f).name for f in find_inputs(f"{videos}/clip[1-9].mp4")] == ["clip1.mp4"]
    with pytest.raises(ScaleError) as e:
        find_inputs(f"{videos}/*.mov")
    assert e.value.code == "E_SCALE_NO_INPUTS"


def test_name_clash_and_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ScaleError) as e:
        plan(["a/x.mp4", "b/x.mkv"])
    assert e.value.code == "E_SCALE_NAME_CLASH" and "a/x.mp4" in str(e.value)
    for bad in (["--out", "x.srt"], ["--speed", "fast"], ["--summary-json", "s.json"], ["other.mp4"]):
        with pytest.raises(ScaleError) as e:
            replay_namespace("v.mp4", bad)
        assert e.value.code == "E_SCALE_ARGS", bad
    ns = replay_namespace("v.mp4", ["--respond", "schedule:2"])
    assert ns.speed is None and ns.respond == "schedule:2" and ns.no_progress  # batch default: --speed max
    assert replay_namespace("v.mp4", ["--speed", "2"]).speed == 2.0


def test_finished_needs_marker_and_every_output(tmp_path: Path) -> None:
    job = BatchJob("/v/a.mp4", "a")
    (tmp_path / STATE_DIR).mkdir()
    (tmp_path / "a.jsonl").write_text("{}\n")
    assert finished(tmp_path, job, [".jsonl"]) is None  # output without marker: not finished
    marker_path(tmp_path, "a").write_text(json.dumps({"source": "/v/a.mp4", "outputs": ["a.jsonl"]}))
    assert finished(tmp_path, job, [".jsonl"]) is not None
    assert finished(tmp_path, job, [".jsonl", ".srt"]) is None  # a newly requested format is missing
    assert finished(tmp_path, BatchJob("/w/a.mp4", "a"), [".jsonl"]) is None  # another source


# ---- on a local Ray cluster ------------------------------------------------------------------------
def _single_file_replay(source: str, out: Path) -> None:
    from streamrt.commands import replay

    parser = argparse.ArgumentParser()
    replay.add_arguments(parser)
    args = parser.parse_args(
        [source, *REPLAY_ARGS, "--speed", "max", "--threads", "1", "--no-progress"]
        + ["--out", str(out / f"{Path(source).stem}.jsonl"), "--out", str(out / f"{Path(source).stem}.srt")]
    )
    assert replay.run(args) == 0


def test_batch_equals_single_file_replay_and_resumes(local_ray, videos: Path, tmp_path: Path) -> None:
    from streamrt.scale.batch import run_batch

    out = tmp_path / "out"
    kw = dict(replay_args=REPLAY_ARGS, formats=["jsonl", "srt"], progress=False)
    first = run_batch(videos, out, **kw)
    status = {r.name: r.status for r in first.results}
    assert status == {"broken": "failed", "clip0": "done", "clip1": "done"}
    broken = next(r for r in first.results if r.name == "broken")
    assert broken.error and "E_INGEST" in broken.error
    assert not list(out.glob("broken.*")) and not marker_path(out, "broken").exists()
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [
        f"clip{i}{ext}" for i in range(2) for ext in (".jsonl", ".srt")
    ]
    assert [p.name for p in (out / STATE_DIR).iterdir() if ".part-" in p.name] == []  # scratch cleaned up

    ref = tmp_path / "ref"
    for i in range(2):
        _single_file_replay(str(videos / f"clip{i}.mp4"), ref)
        assert (out / f"clip{i}.srt").read_bytes() == (ref / f"clip{i}.srt").read_bytes()
        assert _stable(out / f"clip{i}.jsonl") == _stable(ref / f"clip{i}.jsonl")
        assert (out / f"clip{i}.srt").stat().st_size > 0  # the model did speak: the comparison has content

    second = run_batch(videos, out, **kw)
    assert {r.name: r.status for r in second.results} == status | {f"clip{i}": "skipped" for i in range(2)}
    assert [r.summary["chunks"] for r in second.results if r.status == "skipped"] == [
        r.summary["chunks"] for r in first.results if r.status == "done"
    ]
    table = second.table()
    assert "clip1" in table and "skipped" in table and "2 already finished (skipped), 1 failed" in table

    # a run killed after clip1's file was moved but before its marker: clip1 alone is replayed, whole
    marker_path(out, "clip1").unlink()
    (out / "clip1.srt").write_text("1\n00:00:00,000 --> 00:00:02,000\nhalf")
    # ... through the command line wiring (`streamrt replay --ray GLOB --out DIR`), with a glob
    from streamrt.commands import replay

    parser = argparse.ArgumentParser()
    replay.add_arguments(parser)  # includes the --ray options
    clip0_marker = marker_path(out, "clip0").read_bytes()
    argv = ["--ray", f"{videos}/clip*.mp4", "--out", str(out), "--format", "jsonl,srt", "--no-progress"]
    assert replay.run(parser.parse_args([*argv, *REPLAY_ARGS, "--threads", "1"])) == 0
    assert marker_path(out, "clip0").read_bytes() == clip0_marker  # skipped
    assert json.loads(marker_path(out, "clip1").read_text())["replay_options"]["speed"] is None  # full speed
    assert (out / "clip1.srt").read_bytes() == (ref / "clip1.srt").read_bytes()
