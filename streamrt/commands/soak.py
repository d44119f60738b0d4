"""`streamrt soak`: mixed load against a real server for M minutes; fails when memory, open files or
latency trend upward, the server dies, leaks sessions, or an engine fails."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NAME = "soak"
ORDER = 95
HELP = (
    "soak test: mixed load on a real `streamrt serve`; RSS, fds, latency per minute; fails on upward trends"
)
DESCRIPTION = """\
Start `streamrt serve` on a free loopback port (both modes) and run N simulated users against it
for M minutes: each opens sessions one after another (understand or generate, text- or
video-input), streams small JPEG frames, asks questions, switches prompts, pings, sends malformed
messages at --malformed-rate per tick, reads slowly (a share of sessions), and leaves gracefully
(end_input, waits for end) or by dropping the TCP connection (--abort-rate).

Measured: the server process's RSS and open file descriptors every --sample-s seconds, end-to-end
latency percentiles per --window-s (a minute), the deadline-miss rate, drops by reason and errors by
code (server /metrics and what clients received), and the counts of everything the users did.
Printed as it runs and written as JSON (--json).

Verdict (exit 1 when any check fails): the server stayed up; no E_INTERNAL reached a client; every
session was closed once the users left; open fds returned to the baseline (+ --fd-slack); and no
upward trend: a Theil-Sen line fitted after the warm-up (the first window or fifth of the run)
must not rise over the measured span by more than max(--rss-tol-mib, --rss-tol-frac x median) for
RSS, --fd-slack for fds, and max(--latency-tol-ms, --latency-tol-frac x median) for the per-window
median latency.

examples:
  streamrt soak --minutes 3 --sessions 4 --json soak.json
  nice -n 19 streamrt soak --minutes 60 --sessions 6 --json soak60.json
  streamrt soak --minutes 1 --sessions 2 --window-s 10 --modes understand
exit codes: 0 every check held, 1 a check failed (see "checks" in the JSON), 2 bad arguments.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=float, default=3.0, help="length of the load (default 3)")
    p.add_argument("--sessions", type=int, default=4, help="concurrent simulated users (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the users' choices (default 0)")
    p.add_argument("--modes", default="understand,generate", help="comma-separated modes (default both)")
    p.add_argument("--fps", type=float, default=4.0, help="input frames per second per session (default 4)")
    p.add_argument(
        "--malformed-rate", type=float, default=0.05, help="malformed messages per tick (default 0.05)"
    )
    p.add_argument("--abort-rate", type=float, default=0.3, help="share of sessions dropped abruptly (0.3)")
    p.add_argument("--slow-rate", type=float, default=0.25, help="share of slow-reading sessions (0.25)")
    p.add_argument("--window-s", type=float, default=60.0, help="latency window in seconds (default 60)")
    p.add_argument("--sample-s", type=float, default=2.0, help="server sampling period (default 2 s)")
    p.add_argument("--rss-tol-mib", type=float, default=32.0, help="RSS rise tolerated (MiB, default 32)")
    p.add_argument("--rss-tol-frac", type=float, default=0.05, help="... or this share of the median (0.05)")
    p.add_argument("--latency-tol-ms", type=float, default=100.0, help="latency rise tolerated (ms, 100)")
    p.add_argument(
        "--latency-tol-frac", type=float, default=0.5, help="... or this share of the median (0.5)"
    )
    p.add_argument("--fd-slack", type=int, default=8, help="open fds tolerated above baseline (default 8)")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the report here")
    p.add_argument(
        "--server-arg", action="append", default=[], metavar="ARG", help="extra `streamrt serve` argument"
    )


def run(args: argparse.Namespace) -> int:
    from streamrt.soak import LoadConfig, SoakConfig, soak, write_report

    modes = tuple(m for m in args.modes.split(",") if m)
    if args.minutes <= 0 or args.sessions < 1 or not modes or not 0 <= args.malformed_rate < 1:
        print(
            "error: --minutes > 0, --sessions >= 1, --modes non-empty, 0 <= --malformed-rate < 1",
            file=sys.stderr,
        )
        return 2
    load = LoadConfig(
        modes=modes,
        fps=args.fps,
        malformed_rate=args.malformed_rate,
        abort_rate=args.abort_rate,
        slow_rate=args.slow_rate,
    )
    cfg = SoakConfig(
        minutes=args.minutes, sessions=args.sessions, seed=args.seed, load=load, window_s=args.window_s,
        sample_s=args.sample_s, rss_tol_mib=args.rss_tol_mib, rss_tol_frac=args.rss_tol_frac,
        latency_tol_ms=args.latency_tol_ms, latency_tol_frac=args.latency_tol_frac, fd_slack=args.fd_slack,
        server_args=tuple(args.server_arg),
    )  # fmt: skip
    report = soak(cfg)
    if args.json:
        write_report(report, args.json)
    brief = {k: report[k] for k in ("ok", "checks", "minutes_soaked", "latency_ms", "deadline_miss_rate",
                                     "drops_by_reason", "errors_by_code", "load", "trends")}  # fmt: skip
    print(json.dumps(brief, indent=2))
    return 0 if report["ok"] else 1
