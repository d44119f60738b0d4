"""`streamrt report RUN.jsonl`: turn the JSONL of a `streamrt replay` run into a self-contained HTML report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "report"
ORDER = 6
HELP = "write the HTML report of a replay run (commentary time line with thumbnails, latency and token-drop plots)"
DESCRIPTION = """\
Read RUN.jsonl (written by `streamrt replay --out RUN.jsonl`) and write DIR/index.html: one
self-contained page (plots and thumbnails inlined, no scripts) with the run summary, a plot of
per-chunk latency against the deadline, the share of visual tokens dropped over stream time, and the
commentary and answers on a time line, each beside a thumbnail of the source at that moment.
Thumbnails come from --source (default: the source named in the run file, when it is a readable
video file). A run that was interrupted (no summary line) is reported from its records.
`streamrt replay SOURCE --report DIR` does the same at the end of a replay.

examples:
  streamrt replay clip.mp4 --speed max --out run.jsonl
  streamrt report run.jsonl --out report/                  # thumbnails from clip.mp4 (named in run.jsonl)
  streamrt report run.jsonl --source /data/clip.mp4 --out report/
exit codes: 0 done, 2 unusable run file.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, help="the JSONL written by `streamrt replay --out RUN.jsonl`")
    p.add_argument("--source", help="video for the thumbnails (default: the run's own source)")
    p.add_argument(
        "--out", type=Path, default=Path("report"), help="folder for index.html (default ./report)"
    )


def run(args: argparse.Namespace) -> int:
    from streamrt.apps.report import ReportError, write_report

    try:
        index = write_report(args.run, args.out, args.source)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report: {index}")
    return 0
