"""`streamrt replay` end to end: clear messages and exit code 2 for bad sources, unknown models and
bad arguments; output files valid (SRT/WebVTT parsed back strictly, JSONL one complete object per
line, flushed per event); a run killed with SIGKILL mid-stream leaves files that are valid up to
the last event written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from streamrt.cli import main


def fails(argv, capsys, code):
    assert main(["replay", *argv]) == 2
    err = capsys.readouterr().err
    assert code in err and "error:" in err
    return err


def test_bad_sources_fail_clearly(tmp_path, capsys, random_model_dir):
    err = fails([str(tmp_path / "nope.mp4"), "--model", str(random_model_dir)], capsys, "E_INGEST_NOT_FOUND")
    assert "nope.mp4" in err
    (tmp_path / "notes.txt").write_text("not a video\n" * 100)
    fails([str(tmp_path / "notes.txt"), "--model", str(random_model_dir)], capsys, "E_INGEST_UNSUPPORTED")
    fails([str(tmp_path), "--model", str(random_model_dir)], capsys, "E_INGEST_UNSUPPORTED")


def test_unknown_models_fail_clearly(tmp_path, capsys, clip):
    err = fails([str(clip), "--model", str(tmp_path / "no-such-model")], capsys, "E_MODEL_UNKNOWN")
    assert "no-such-model" in err
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    fails([str(clip), "--model", str(tmp_path / "odd")], capsys, "E_MODEL_UNKNOWN")


def test_bad_arguments_fail_clearly(tmp_path, capsys, clip, random_model_dir):
    m = ["--model", str(random_model_dir)]
    fails([str(clip), *m, "--ask", "soon: what?"], capsys, "E_ENGINE_ASK")
    fails([str(clip), *m, "--ask-file", str(tmp_path / "none.txt")], capsys, "E_ENGINE_ASK_FILE")
    fails([str(clip), *m, "--out", str(tmp_path / "x.txt")], capsys, "E_ENGINE_OUT_FORMAT")
    fails([str(clip), *m, "--respond", "sometimes"], capsys, "E_ENGINE_POLICY")


def test_replay_writes_valid_files(tmp_path, capsys, clip, random_model_dir, parse_cues):
    outs = [tmp_path / "o.jsonl", tmp_path / "o.srt", tmp_path / "o.vtt"]
    argv = [str(clip), "--model", str(random_model_dir), "--speed", "max", "--respond", "schedule:3"]
    argv += ["--ask", "2.2:how many objects are there?", "--max-tokens", "5", "--on-deadline", "finish"]
    for p in outs:
        argv += ["--out", str(p)]
    assert main(["replay", *argv]) == 0
    cap = capsys.readouterr()
    assert "visual tokens kept" in cap.err and "latency p50" in cap.err and "peak memory" in cap.err
    assert "Q: how many objects are there?  A:" in cap.out
    recs = [json.loads(line) for line in outs[0].read_text().splitlines()]
    assert recs[0]["type"] == "header" and recs[-1]["type"] == "summary"
    chunks = [r for r in recs if r["type"] == "chunk"]
    responses = [r for r in recs if r["type"] == "response"]
    assert len(chunks) == 12 and recs[-1]["chunks"] == 12  # 12 s at 2 fps, 2 frames per chunk
    assert all(isinstance(r["latency_s"], float) and isinstance(r["deadline_met"], bool) for r in chunks)
    answer = [r for r in responses if r["kind"] == "answer"]
    assert len(answer) == 1 and answer[0]["t"] == 3.0
    for p, fmt in ((outs[1], "srt"), (outs[2], "vtt")):
        cues = parse_cues(p.read_text(), fmt)
        assert len(cues) == sum(1 for r in responses if r["text"] or r["kind"] == "answer")


def test_killed_run_leaves_valid_files(tmp_path, clip, random_model_dir, parse_cues):
    outs = [tmp_path / "k.jsonl", tmp_path / "k.srt", tmp_path / "k.vtt"]
    cmd = [sys.executable, "-m", "streamrt", "replay", str(clip), "--model", str(random_model_dir)]
    cmd += ["--speed", "realtime", "--respond", "schedule:1", "--max-tokens", "4", "--no-progress"]
    for t in range(1, 12):
        cmd += ["--ask", f"{t}:how many objects are there?"]
    for p in outs:
        cmd += ["--out", str(p)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if outs[0].exists() and outs[0].read_text().count('"type": "response"') >= 3:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = outs[0].read_text()
    assert text.endswith("\n")
    recs = [json.loads(line) for line in text.splitlines()]  # every line complete
    assert recs[0]["type"] == "header" and all(r["type"] != "summary" for r in recs)
    assert sum(r["type"] == "response" for r in recs) >= 3
    n = sum(r["type"] == "response" and (bool(r["text"]) or r["kind"] == "answer") for r in recs)
    for p, fmt in ((outs[1], "srt"), (outs[2], "vtt")):
        assert len(parse_cues(p.read_text(), fmt)) >= n - 1  # written in the same loop, just after
