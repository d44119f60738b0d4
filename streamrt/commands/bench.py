"""`streamrt bench NAME`: run a registered benchmark side by side with its baselines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "bench"
ORDER = 90
HELP = "run a benchmark (candidate vs baselines, same run) and report ratios"
DESCRIPTION = """\
Run a registered benchmark. Every benchmark runs its baseline(s) and candidate(s) interleaved in one
process, repeats them, and reports the median and spread of each, the speed-up of each case against
the baseline computed pair by pair, peak memory, and the machine (cores, torch threads, versions).
Absolute times on a shared machine are noisy: quote the ratios.

examples:
  streamrt bench --list
  streamrt bench synth --quick
  streamrt bench synth --json results/synth.json
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="benchmark to run (see --list)")
    p.add_argument("--list", action="store_true", help="list the registered benchmarks and exit")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the full result as JSON here")
    p.add_argument(
        "--quick", action="store_true", help="small workloads, for a smoke run (seconds, not minutes)"
    )
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per case (default 5, quick 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of every case first (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")


def run(args: argparse.Namespace) -> int:
    from streamrt.bench.harness import format_table, registry, run_benchmark, write_json

    reg = registry()
    if args.list or not args.name:
        for r in reg.values():
            print(f"{r.name:<16} {r.help}")
        return 0 if args.list else 2
    if args.name not in reg:
        print(f"error: unknown benchmark {args.name!r}; known: {', '.join(reg)}", file=sys.stderr)
        return 2
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 5)
    res = run_benchmark(args.name, quick=args.quick, repeats=repeats, warmup=args.warmup)
    print(format_table(res))
    if args.json:
        write_json(res, args.json)
        print(f"wrote {args.json}")
    return 0
