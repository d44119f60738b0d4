"""streamrt.apps.report: the self-contained HTML report of a `streamrt replay` run.

    from streamrt.apps.report import write_report
    index = write_report("run.jsonl", "report/", source="clip.mp4")   # -> report/index.html

Modules: `run` (reads the replay's JSONL into typed records), `plots` (matplotlib PNGs: latency
against the deadline, token-drop share), `html` (the page, thumbnails from the source). The command
line is `streamrt report RUN.jsonl --source VIDEO --out DIR` and `streamrt replay ... --report DIR`.
"""

from __future__ import annotations

from pathlib import Path

from streamrt.apps.report.run import ReportError, Run, read_run


def write_report(run_jsonl: str | Path, out_dir: str | Path, source: str | Path | None = None) -> Path:
    """Write `out_dir/index.html` for the run in `run_jsonl` (thumbnails from `source`, default the
    source named in the run's header); returns the path. Raises ReportError on an unusable run file."""
    from streamrt.apps.report.html import render

    run = read_run(run_jsonl)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = out / "index.html"
    tmp = index.with_suffix(".html.tmp")
    tmp.write_text(render(run, source), encoding="utf-8")
    tmp.replace(index)  # a reader never sees half a report
    return index


def report_jsonl(report_dir: str | Path, outs: list[Path]) -> Path:
    """For `streamrt replay --report DIR`: the JSONL the report is built from. The first .jsonl/.json in
    `outs` (the replay's --out list) if there is one, else DIR/run.jsonl, appended to `outs` so the
    replay writes it."""
    for p in outs:
        if p.suffix.lower() in (".jsonl", ".json"):
            return p
    path = Path(report_dir) / "run.jsonl"
    outs.append(path)
    return path


__all__ = ["ReportError", "Run", "read_run", "report_jsonl", "write_report"]
