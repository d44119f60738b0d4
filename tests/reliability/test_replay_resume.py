"""`streamrt replay --resume` through the real CLI, and a full disk while writing replay output.

Oracle: the same replay run once without interruption (`--speed max --on-deadline finish`, plain
greedy decoding's output is reproducible). The interrupted run is a real `python -m streamrt
replay` subprocess killed at seeded random points (when its JSONL reached a random number of
lines, plus a random delay so kills also land mid-write and mid-checkpoint): SIGKILL, then SIGKILL
again on the resumed run, then SIGINT, then a final `--resume` to the end. After every kill each
file holds only whole records (JSONL lines parse, cues parse strictly); at the end the JSONL equals
the uninterrupted run's record for record (timing fields aside) and the SRT/WebVTT files are byte
for byte equal.

Disk full: RLIMIT_FSIZE (no tmpfs of a chosen size can be mounted here) armed in the replay process
once its first records are out (earlier, it would also stop the decoder's shared memory): the run
fails with E_ENGINE_OUT_WRITE and exit code 3, the JSONL holds whole lines within the limit, and a
`--resume` without the limit finishes with the uninterrupted output. An --out on /dev/full fails the
same way at once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from streamrt.cli import main
from streamrt.engine.writers import content

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
TIMEOUT = 600


def argv(clip, model, outs) -> list[str]:
    a = [str(clip), "--model", str(model), "--speed", "max", "--on-deadline", "finish", "--no-progress"]
    a += ["--respond", "schedule:2", "--max-tokens", "5", "--ask", "3.1:how many objects are there?"]
    a += ["--ask", "7:what just happened?", "--checkpoint-every", "0.3"]
    for p in outs:
        a += ["--out", str(p)]
    return a


def jsonl(path) -> list[dict]:
    text = path.read_text()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # every line whole


def body(path) -> list[dict]:
    """Records between header and summary, timing fields aside."""
    return [content(r) for r in jsonl(path) if r["type"] not in ("header", "summary")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, clip, model_dir):
    d = tmp_path_factory.mktemp("ref")
    outs = [d / "r.jsonl", d / "r.srt", d / "r.vtt"]
    assert main(["replay", *argv(clip, model_dir, outs)]) == 0
    assert not (d / "r.jsonl.resume").exists()  # removed when the run ends
    return outs


def spawn(args: list[str], prefix: list[str] | None = None) -> subprocess.Popen:
    cmd = [sys.executable, *(prefix or ["-m", "streamrt"]), "replay", *args]
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, text=True, preexec_fn=_sigint_default
    )


def _sigint_default() -> None:
    """A test runner started in the background (`pytest &`) ignores SIGINT, and children inherit
    that; the replay must see Ctrl-C as a terminal would deliver it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_at(proc: subprocess.Popen, path, lines: int, delay: float, sig: int) -> bool:
    """Send `sig` once `path` has `lines` lines (+ delay); False if the run ended before."""
    end = time.monotonic() + TIMEOUT
    while proc.poll() is None and time.monotonic() < end:
        if path.exists() and path.read_bytes().count(b"\n") >= lines:
            time.sleep(delay)
            if proc.poll() is not None:
                return False  # it finished first
            proc.send_signal(sig)
            proc.wait(60)
            return True
        time.sleep(0.02)
    proc.wait(TIMEOUT)
    return False


def check_whole(outs, parse_cues) -> None:
    jsonl(outs[0])
    for p, fmt in ((outs[1], "srt"), (outs[2], "vtt")):
        if p.exists() and p.stat().st_size:
            parse_cues(p.read_text(), fmt)


def parse_cues(text: str, fmt: str) -> list[str]:
    """Strict enough: blocks end with a blank line, SRT numbered from 1, a timing line each."""
    assert text.endswith("\n\n") or text == ""
    blocks = [b for b in text.split("\n\n") if b]
    if fmt == "vtt":
        assert blocks[0] == "WEBVTT"
        blocks = blocks[1:]
    for n, b in enumerate(blocks, 1):
        lines = b.split("\n")
        if fmt == "srt":
            assert lines.pop(0) == str(n)
        assert " --> " in lines[0] and lines[1:]
    return blocks


@pytest.mark.parametrize("seed", [1])
def test_killed_replay_resumes_to_the_uninterrupted_output(tmp_path, clip, model_dir, reference, seed):
    total = len(jsonl(reference[0]))
    rng = random.Random(seed)
    outs = [tmp_path / "k.jsonl", tmp_path / "k.srt", tmp_path / "k.vtt"]
    args = argv(clip, model_dir, outs)
    done, kills, first, near_end = False, 0, True, False
    for sig in (signal.SIGKILL, signal.SIGKILL, signal.SIGINT):
        have = len(jsonl(outs[0])) if outs[0].exists() else 0
        if (
            have >= total - 2
        ):  # a kill landed late (records flushed during its delay): too close to kill again
            near_end = True
            break
        proc = spawn(args if first else [*args, "--resume"])
        first = False
        if not kill_at(proc, outs[0], rng.randint(have + 1, total - 2), rng.uniform(0, 0.3), sig):
            done = True
            break
        kills += 1
        check_whole(outs, parse_cues)
        if sig == signal.SIGINT:
            assert proc.returncode == 130
            assert jsonl(outs[0])[-1]["type"] == "summary" and jsonl(outs[0])[-1]["complete"] is False
    assert kills >= 2 or done or (near_end and kills >= 1)
    proc = spawn([*args, "--resume"])
    assert proc.wait(TIMEOUT) == 0, proc.stderr.read()[-3000:] if proc.stderr else ""
    assert body(outs[0]) == body(reference[0])
    assert jsonl(outs[0])[-1]["complete"] is True
    for got, want in zip(outs[1:], reference[1:], strict=True):
        assert got.read_bytes() == want.read_bytes()
    assert not (tmp_path / "k.jsonl.resume").exists()
    again = spawn([*args, "--resume"])  # nothing left to do
    assert again.wait(TIMEOUT) == 0 and "already complete" in again.stderr.read()


FSIZE = textwrap.dedent(
    """
    import os, resource, signal, sys, threading, time
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    limit, watch = int(sys.argv[1]), sys.argv[2]
    def arm():
        while not (os.path.exists(watch) and open(watch, "rb").read().count(b"\\n") >= 3):
            time.sleep(0.005)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    threading.Thread(target=arm, daemon=True).start()
    from streamrt.cli import main
    sys.exit(main(sys.argv[3:]))
    """
)


def test_disk_full_keeps_whole_records_and_resumes(tmp_path, clip, model_dir, reference):
    out = tmp_path / "d.jsonl"
    size = reference[0].stat().st_size
    limit = size // 2
    args = argv(clip, model_dir, [out])
    proc = spawn(args, prefix=["-c", FSIZE, str(limit), str(out)])
    err = proc.communicate(timeout=TIMEOUT)[1]
    assert proc.returncode == 3, err[-3000:]
    assert "E_ENGINE_OUT_WRITE" in err and str(out) in err and "--resume" in err
    recs = jsonl(out)  # whole lines only
    assert 0 < out.stat().st_size <= limit and recs[0]["type"] == "header"
    assert body(out) == body(reference[0])[: len(recs) - 1]  # what was written is the run's start
    proc = spawn([*args, "--resume"])
    assert proc.wait(TIMEOUT) == 0, proc.stderr.read()[-3000:] if proc.stderr else ""
    assert body(out) == body(reference[0])


def test_output_on_a_full_device_fails_clearly(tmp_path, clip, model_dir):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    out = tmp_path / "full.jsonl"
    out.symlink_to("/dev/full")
    proc = spawn(argv(clip, model_dir, [out]))
    err = proc.communicate(timeout=TIMEOUT)[1]
    assert proc.returncode == 3 and "E_ENGINE_OUT_WRITE" in err and "disk full" in err, err[-2000:]


def test_resume_refuses_other_arguments(tmp_path, clip, model_dir, capsys):
    outs = [tmp_path / "a.jsonl"]
    proc = spawn(argv(clip, model_dir, outs))
    kill_at(proc, outs[0], 6, 0.0, signal.SIGKILL)
    if not (tmp_path / "a.jsonl.resume").exists():
        pytest.skip("killed before the first checkpoint")
    assert main(["replay", *argv(clip, model_dir, outs), "--max-tokens", "7", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "E_ENGINE_RESUME" in err and "max_tokens" in err
