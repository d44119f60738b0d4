"""Command-line wiring of the Ray paths, for `streamrt replay --ray` and `streamrt serve --ray`.

The commands own their parsers; they call `add_replay_ray_arguments` / `add_serve_ray_arguments` in
their `add_arguments`, and at the top of `run`: `if args.ray: return run_batch_from_args(args)` (replay)
or `return serve_ray_from_args(args)` (serve). Ray is imported only when `--ray` is given.
Owns the option names and their translation into `run_batch` / `LiveConfig`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from streamrt.scale.errors import ScaleError

REPLAY_EPILOG = """\
many videos on Ray (pip install 'streamrt[ray]'):
  streamrt replay --ray videos/ --out results/                   # one results/NAME.jsonl per video
  streamrt replay --ray 'footage/**/*.mkv' --out subs/ --format srt,jsonl --ray-address auto
With --ray, SOURCE is a folder or a glob and --out a folder; each video is a Ray task running this
same replay (every other option applies to each video), at full speed unless --speed is set to
something other than realtime. Finished videos are skipped on the next run (--redo replays them).
"""

SERVE_EPILOG = """\
on Ray Serve (pip install 'streamrt[ray]'):
  streamrt serve --ray --replicas 2 --slots 4                    # gateway http://127.0.0.1:8000
  streamrt serve --ray --ray-address auto --replicas 8 --gpus-per-replica 1 --host 0.0.0.0 --token $T
  streamrt serve --ray --replicas 1 --autoscale 1:4 --slots 4    # replicas follow slot use and misses
Clients POST /v1/sessions to the gateway and get a direct websocket URL with a one-time ticket
(see docs/scale.md); media goes straight to the replica. Clients given the gateway's address
(streamrt client --server http://127.0.0.1:8000) do both steps themselves.
"""


def add_replay_ray_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Ray batch (--ray)")
    g.add_argument("--ray", action="store_true", help="replay every video of SOURCE (folder or glob) on Ray")
    g.add_argument("--ray-address", default=None, help="Ray cluster to join (default: start a local one)")
    g.add_argument(
        "--format", default="jsonl", help="--ray: outputs per video, e.g. jsonl,srt (default jsonl)"
    )
    g.add_argument("--redo", action="store_true", help="--ray: replay videos already finished")
    g.add_argument("--cpus-per-task", type=float, default=1.0, help="--ray: Ray CPUs per video (default 1)")


def run_batch_from_args(args: argparse.Namespace) -> int:
    """`streamrt replay --ray SOURCE --out DIR [replay options]`: 0 all done, 1 some failed, 2 bad args."""
    from streamrt.scale.batch import run_batch

    if not args.source or len(args.out) != 1:
        print("error: E_SCALE_ARGS: --ray needs SOURCE (folder or glob) and one --out DIR", file=sys.stderr)
        return 2
    template = argparse.Namespace(**vars(args))
    if template.speed == 1.0:
        template.speed = None  # an offline batch is not paced (see REPLAY_EPILOG)
    try:
        report = run_batch(
            args.source,
            args.out[0],
            replay_args=template,
            formats=[f.strip() for f in args.format.split(",") if f.strip()],
            redo=args.redo,
            cpus_per_task=args.cpus_per_task,
            address=args.ray_address,
            progress=not args.no_progress,
        )
    except ScaleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.table(), file=sys.stderr)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return 1 if report.count("failed") else 0


def add_serve_ray_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Ray Serve (--ray)")
    g.add_argument("--ray", action="store_true", help="serve on Ray Serve: engine replicas + session gateway")
    g.add_argument("--ray-address", default=None, help="Ray cluster to join (default: start a local one)")
    g.add_argument("--replicas", type=int, default=2, help="--ray: engine replicas (default 2)")
    g.add_argument(
        "--slots", type=int, default=None, help="--ray: sessions per replica (default --max-sessions)"
    )
    g.add_argument("--cpus-per-replica", type=float, default=1.0, help="--ray: Ray CPUs per replica")
    g.add_argument("--gpus-per-replica", type=float, default=0.0, help="--ray: GPUs per replica")
    g.add_argument(
        "--replica-host", default="127.0.0.1", help='--ray: address replicas bind ("auto": node IP)'
    )
    g.add_argument(
        "--autoscale",
        metavar="MIN:MAX",
        default=None,
        help="--ray: autoscale between MIN and MAX replicas on slots in use and deadline misses "
        "(starts with --replicas; scale-down drains: sessions get end{reason: draining})",
    )


def serve_ray_from_args(args: argparse.Namespace) -> int:
    """`streamrt serve --ray ...`: start the cluster's gateway and replicas, run until Ctrl-C."""
    from streamrt.scale.autoscale import AutoscaleConfig
    from streamrt.scale.live import LiveConfig, serve_live, stop_live

    try:
        autoscale = None
        if args.autoscale:
            lo, _, hi = args.autoscale.partition(":")
            try:
                autoscale = AutoscaleConfig(min_replicas=int(lo), max_replicas=int(hi))
            except ValueError:
                raise ScaleError("E_SCALE_CONFIG", f"--autoscale {args.autoscale!r}: want MIN:MAX") from None
        cfg = LiveConfig(
            replicas=args.replicas,
            slots=args.slots or args.max_sessions,
            modes=tuple(m.strip() for m in args.modes.split(",") if m.strip()),
            gen_model=args.gen_model,
            vlm_model=args.vlm_model,
            cpus_per_replica=args.cpus_per_replica,
            gpus_per_replica=args.gpus_per_replica,
            threads=args.threads or 1,
            replica_host=args.replica_host,
            http_host=args.host,
            http_port=args.port,
            token=args.token,
            budget_ms=args.budget_ms,
            idle_timeout_s=args.idle_timeout,
            autoscale=autoscale,
        )
        cluster = serve_live(cfg, address=args.ray_address)
    except ScaleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"streamrt on Ray Serve: POST {cluster.url}/v1/sessions ({cfg.replicas} x {cfg.slots} slots)",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("shutting down (ending sessions)...", file=sys.stderr, flush=True)
    finally:
        stop_live()
    return 0
