"""The self-contained HTML replay report: the run summary, the two plots, and the commentary and answers
on a time line, each beside a thumbnail of the source at that stream time.

Everything is inlined (CSS, PNG plots and JPEG thumbnails as data URIs, no script): the file can be
mailed or opened offline. Thumbnails come from the source video (decoded with streamrt.ingest at
exactly the times needed); a live or missing source gives a report without them (and says so).
Owns the page layout and the thumbnail extraction; the data comes from `Run`, the plots from plots.py.
"""

from __future__ import annotations

import base64
import html
import logging
import math
from pathlib import Path

import numpy as np
from streamrt.apps.report.plots import drop_plot, latency_plot
from streamrt.apps.report.run import ResponseRec, Run

log = logging.getLogger(__name__)

MAX_ROWS = 500
"""Time-line rows shown (the first ones); the report says how many were left out."""
THUMB_SHORT_SIDE = 90
"""Thumbnail height for landscape video (shorter side, pixels)."""

CSS = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1000px; color: #1d232a; padding: 0 12px; }
h1 { font-size: 1.4rem; margin-bottom: 4px; } h2 { font-size: 1.1rem; margin-top: 28px; }
.meta { color: #5b6570; font-size: 0.9rem; }
table.summary { border-collapse: collapse; font-size: 0.9rem; }
table.summary td { padding: 3px 12px 3px 0; border-bottom: 1px solid #e3e6ea; }
table.summary td:first-child { color: #5b6570; }
img.plot { width: 100%; max-width: 900px; border: 1px solid #e3e6ea; }
ol.timeline { list-style: none; padding: 0; }
ol.timeline li { display: grid; grid-template-columns: 5.5em auto 1fr; gap: 12px; align-items: center;
  padding: 6px 0; border-bottom: 1px solid #eef0f2; }
.t { font-family: ui-monospace, monospace; color: #5b6570; }
.thumb { height: 72px; border-radius: 4px; background: #000; }
.nothumb { width: 128px; height: 72px; background: #eef0f2; border-radius: 4px; }
li.answer .text b { color: #b5651d; }
.lat { color: #8a929c; font-size: 0.8rem; }
.miss { color: #d62728; }
.note { background: #fff6e0; border: 1px solid #f0c36d; padding: 6px 10px; border-radius: 6px; }
"""


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnails(source: str | Path, times: list[float]) -> dict[float, bytes]:
    """JPEG thumbnails of `source` at (or just before) each stream time; {} when it cannot be decoded."""
    import cv2

    from streamrt.ingest import AtTimes, IngestError, PixelSpec, open_source, source_kind

    if not times or source_kind(str(source)) != "file" or not Path(source).is_file():
        return {}
    wanted = sorted(set(times))
    try:
        dec = open_source(
            str(source),
            pixels=PixelSpec(format="bgr24", short_side=THUMB_SHORT_SIDE),
            sampling=AtTimes(tuple(wanted)),
        )
        try:
            frames = [(f.t, f.pixels) for f in dec]  # pixels: [H, W, 3] uint8 BGR
        finally:
            dec.close()
    except IngestError as e:
        log.warning("no thumbnails: %s", e)
        return {}
    if not frames:
        return {}
    ts = np.asarray([t for t, _ in frames])
    out: dict[float, bytes] = {}
    for t in wanted:
        i = max(0, int(np.searchsorted(ts, t + 1e-6, side="right")) - 1)  # the frame at or before t
        ok, jpg = cv2.imencode(".jpg", frames[i][1], [cv2.IMWRITE_JPEG_QUALITY, 75])
        if ok:
            out[t] = jpg.tobytes()
    return out


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {x}" for k, x in v.items()) or "none"
    return str(v)


SUMMARY_ROWS: tuple[tuple[str, str, float], ...] = (
    ("stream_s", "stream seconds", 1),
    ("wall_s", "wall seconds", 1),
    ("realtime_factor", "real-time factor", 1),
    ("chunks", "chunks", 1),
    ("frames", "frames", 1),
    ("tokens_total", "visual tokens", 1),
    ("tokens_kept", "visual tokens kept", 1),
    ("drop_share", "share dropped (%)", 100),
    ("commentaries", "commentaries", 1),
    ("answers", "answers", 1),
    ("chunk_latency_p50_s", "chunk latency p50 (ms)", 1000),
    ("chunk_latency_p99_s", "chunk latency p99 (ms)", 1000),
    ("response_latency_p50_s", "response latency p50 (ms)", 1000),
    ("response_latency_p99_s", "response latency p99 (ms)", 1000),
    ("chunk_deadline_misses", "chunk deadline misses", 1),
    ("response_deadline_misses", "response deadline misses", 1),
    ("cut_responses", "responses cut at the deadline", 1),
    ("drops", "queue drops", 1),
    ("peak_rss_bytes", "peak memory (MiB)", 2**-20),
)
"""(summary key, label, scale) in display order; keys the summary lacks are left out."""


def _summary_table(run: Run) -> str:
    rows = []
    for key, label, scale in SUMMARY_ROWS:
        if key not in run.summary:
            continue
        v = run.summary[key]
        if scale != 1 and isinstance(v, int | float):
            v = float(v) * scale
        rows.append(f"<tr><td>{html.escape(label)}</td><td>{html.escape(_fmt(v))}</td></tr>")
    return '<table class="summary">' + "".join(rows) + "</table>"


def _row(r: ResponseRec, thumb: bytes | None) -> str:
    img = (
        f'<img class="thumb" alt="frame at {r.t:.2f} s" src="{_data_uri("image/jpeg", thumb)}">'
        if thumb
        else '<div class="nothumb"></div>'
    )
    miss = "" if r.deadline_met else ' <span class="miss">deadline missed</span>'
    lat = f'<span class="lat">{1000 * r.latency_s:.0f} ms{miss}</span>'
    if r.kind == "answer":
        body = f"<b>Q:</b> {html.escape(r.question_text or '')}<br><b>A:</b> {html.escape(r.text or '(no answer)')}"
    else:
        body = html.escape(r.text)
    return (
        f'<li class="{html.escape(r.kind)}"><span class="t">{r.t:7.2f} s</span>{img}'
        f'<span class="text">{body} {lat}</span></li>'
    )


def render(run: Run, source: str | Path | None) -> str:
    """The report page as one HTML string (see module docstring)."""
    shown = [r for r in run.responses if r.kind == "answer" or r.text.strip()]
    silent = sum(1 for r in run.responses if r.kind != "answer" and not r.text.strip())
    rows = shown[:MAX_ROWS]
    src = source if source is not None else run.header.get("source")
    thumbs = thumbnails(str(src), [r.t for r in rows]) if src else {}
    h = run.header
    notes = []
    if not run.complete:
        notes.append(
            "The run did not finish (no summary line): the summary below is computed from its records."
        )
    if rows and not thumbs:
        notes.append(
            f"No thumbnails: the source {html.escape(str(src))!s} is not a readable video file here."
        )
    if len(shown) > MAX_ROWS:
        notes.append(f"The time line shows the first {MAX_ROWS} of {len(shown)} responses.")
    meta = " · ".join(
        html.escape(f"{k}: {h[k]}")
        for k in ("source", "model", "fps", "frames_per_chunk", "speed", "drop_threshold", "respond")
        if k in h
    )
    budget = f"{1000 * run.budget_s:.0f} ms per chunk" if run.budget_s else "unknown"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>streamrt replay report: {html.escape(Path(str(h.get('source', run.path))).name)}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>streamrt replay report</h1>",
        f"<p class='meta'>{meta}</p>",
        *(f"<p class='note'>{n}</p>" for n in notes),
        "<h2>Summary</h2>",
        _summary_table(run),
        f"<p class='meta'>deadline budget: {budget}; run file: {html.escape(run.path.name)}</p>",
        "<h2>Latency</h2>",
        f'<img class="plot" id="latency-plot" alt="per-chunk latency against the deadline" src="{_data_uri("image/png", latency_plot(run))}">',
        "<h2>Token drop</h2>",
        f'<img class="plot" id="drop-plot" alt="share of visual tokens dropped over time" src="{_data_uri("image/png", drop_plot(run))}">',
        f"<h2>Commentary and answers ({len(shown)}; {silent} silent responses not shown)</h2>",
        '<ol class="timeline" id="timeline">',
        *(_row(r, thumbs.get(r.t)) for r in rows),
        "</ol></body></html>",
    ]
    return "\n".join(parts)
