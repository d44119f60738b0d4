"""`streamrt replay --report DIR` writes the run file and a report built from it."""

from __future__ import annotations

import json

from streamrt.cli import main


def test_replay_report_flag(tmp_path):
    rep = tmp_path / "rep"
    assert main(["replay", "--demo", "--speed", "max", "--no-progress", "--report", str(rep)]) == 0
    records = [json.loads(x) for x in (rep / "run.jsonl").read_text().splitlines()]
    kinds = [r["type"] for r in records]
    assert kinds[0] == "header" and kinds[-1] == "summary"
    assert kinds.count("chunk") == 25  # the 25 s demo clip in 1 s chunks (2 frames at 2 fps)
    html = (rep / "index.html").read_text()
    assert "shapes_demo.mp4" in html and html.count("data:image/png;base64,") >= 2  # plots inlined
