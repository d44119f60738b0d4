"""The replay report from a real `streamrt replay` run on a generated shapes-world clip.

Oracles: the run file itself read independently (json per line: how many chunks, which responses
have text, which questions were asked), the clip decoded independently with PyAV (each thumbnail is
the frame at or before its stream time), the PNG plots decoded with PIL, and the page rendered by
headless Chromium (every image loads, the time line has one row per response with text or answer).
An interrupted run (no summary line) still gets a report; unusable files fail with E_REPORT_INPUT.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image
from streamrt.apps.report import ReportError, read_run, report_jsonl, write_report

from streamrt.cli import main

QUESTIONS = ("2:how many objects are there?", "5:what colour is the square?")
CLIP_S = 8.0


@pytest.fixture(scope="module")
def replayed(models, tmp_path_factory) -> tuple[Path, Path]:
    """(clip, run.jsonl) of a real replay of 8 s of the shapes world, with two questions."""
    from streamrt.synth import World, WorldConfig, write_video

    d = tmp_path_factory.mktemp("replay")
    clip = d / "clip.mp4"
    write_video(clip, World(WorldConfig.preset("demo", seed=11)), CLIP_S, gop=30)
    out = d / "run.jsonl"
    argv = ["replay", str(clip), "--model", models.vlm, "--speed", "max", "--out", str(out)]
    argv += ["--max-tokens", "12", "--no-progress", "--threads", "1"]
    for q in QUESTIONS:
        argv += ["--ask", q]
    assert main(argv) == 0
    return clip, out


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def data_uris(page: str, mime: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(rf'src="data:{mime};base64,([^"]+)"', page)]


def frame_at(clip: Path, t: float, size: tuple[int, int]) -> np.ndarray:
    """The clip's frame at or before stream time t, decoded with PyAV, resized: [H, W, 3] BGR."""
    with av.open(str(clip)) as c:
        s = c.streams.video[0]
        best = None
        for f in c.decode(s):
            if f.time - s.start_time * s.time_base > t + 1e-6:
                break
            best = f.to_ndarray(format="bgr24")
    assert best is not None
    return cv2.resize(best, size, interpolation=cv2.INTER_AREA)


def test_report_of_a_real_replay(replayed, tmp_path, make_chrome) -> None:
    clip, run_file = replayed
    recs = records(run_file)
    chunks = [r for r in recs if r["type"] == "chunk"]
    shown = [r for r in recs if r["type"] == "response" and (r["kind"] == "answer" or r["text"].strip())]
    assert len([r for r in shown if r["kind"] == "answer"]) == len(QUESTIONS)

    index = write_report(run_file, tmp_path / "report")
    page = index.read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained
    for q in QUESTIONS:
        assert q.split(":", 1)[1] in page
    summary = next(r for r in recs if r["type"] == "summary")
    assert f"<td>chunks</td><td>{summary['chunks']}</td>" in page and summary["chunks"] == len(chunks)

    # plots: two 900x300 PNGs with content
    pngs = data_uris(page, "image/png")
    assert len(pngs) == 2
    for png in pngs:
        im = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
        assert im.shape == (300, 900) and im.std() > 10

    # thumbnails: one per row, each the source frame at that stream time
    thumbs = data_uris(page, "image/jpeg")
    assert len(thumbs) == len(shown)
    for r, jpg in zip(shown, thumbs, strict=True):
        got = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
        err = {
            dt: np.abs(got.astype(int) - frame_at(clip, r["t"] + dt, got.shape[1::-1]).astype(int)).mean()
            for dt in (-0.5, 0.0, 0.5)
            if dt == 0 or 0 <= r["t"] + dt < CLIP_S - 0.1
        }  # the frame at t, not one half a second away (those differ by 7-25 grey levels here)
        assert err[0.0] < 5 and all(err[0.0] < e for dt, e in err.items() if dt), (r["t"], err)

    # the page in a real browser: images load, one time-line row per response shown
    drv = make_chrome(None, width=1100, height=1600)
    drv.get(index.as_uri())
    state = drv.execute_script(
        "return {imgs: Array.from(document.images).map(i => i.complete && i.naturalWidth),"
        " rows: document.querySelectorAll('#timeline li').length,"
        " h1: document.querySelector('h1').textContent}"
    )
    assert state["h1"] == "streamrt replay report" and state["rows"] == len(shown)
    assert len(state["imgs"]) == 2 + len(shown) and all(w and w > 0 for w in state["imgs"]), state
    shot = np.asarray(Image.open(io.BytesIO(drv.get_screenshot_as_png())).convert("L"))
    assert shot.std() > 10
    (tmp_path / "report.png").write_bytes(drv.get_screenshot_as_png())


def test_interrupted_run_and_bad_files(replayed, tmp_path, capsys) -> None:
    _, run_file = replayed
    lines = [ln for ln in run_file.read_text().splitlines() if '"type": "summary"' not in ln]
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[: len(lines) * 2 // 3]) + "\n")
    run = read_run(cut)
    chunks = [r for r in records(cut) if r["type"] == "chunk"]
    assert not run.complete and run.summary["chunks"] == len(chunks) > 0
    assert run.summary["chunk_deadline_misses"] == sum(not c["deadline_met"] for c in chunks)
    assert run.budget_s == pytest.approx(run.header["frames_per_chunk"] / run.header["fps"])
    page = write_report(cut, tmp_path / "cut", source=tmp_path / "missing.mp4").read_text()
    assert "did not finish" in page and "No thumbnails" in page

    (tmp_path / "junk.jsonl").write_text('{"type": "header"}\nnot json\n')
    with pytest.raises(ReportError) as e:
        read_run(tmp_path / "junk.jsonl")
    assert e.value.code == "E_REPORT_INPUT" and "junk.jsonl:2" in str(e.value)
    (tmp_path / "nohead.jsonl").write_text(lines[1] + "\n")
    with pytest.raises(ReportError, match="no header"):
        read_run(tmp_path / "nohead.jsonl")
    assert main(["report", str(tmp_path / "nohead.jsonl"), "--out", str(tmp_path / "x")]) == 2
    assert "E_REPORT_INPUT" in capsys.readouterr().err
    assert main(["report", str(run_file), "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "index.html").is_file()


def test_report_jsonl_for_the_replay_hook(tmp_path) -> None:
    outs = [tmp_path / "subs.srt"]
    assert report_jsonl(tmp_path / "r", outs) == tmp_path / "r" / "run.jsonl"
    assert outs == [tmp_path / "subs.srt", tmp_path / "r" / "run.jsonl"]
    outs = [tmp_path / "a.srt", tmp_path / "mine.jsonl"]
    assert report_jsonl(tmp_path / "r", outs) == tmp_path / "mine.jsonl" and len(outs) == 2
