"""`streamrt serve`: run the real-time websocket server (protocol v1) with the chosen engines."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

NAME = "serve"
ORDER = 60
HELP = "serve generation / understanding sessions over websockets (protocol v1), /healthz, /metrics, web demo"
DESCRIPTION = """\
Run the streamrt server: one websocket per session (ws://HOST:PORT/ws, subprotocol streamrt.v1, see
docs/protocol.md), binary JPEG/WebP/PNG/raw frames with a fixed header, JSON control messages, one
earliest-deadline-first scheduler across sessions with admission control (a full server answers 503
with Retry-After), per-frame deadlines, drop-oldest input buffers and degrade ladders. The same port
serves GET /healthz, Prometheus GET /metrics and the web demo's static files (apps/web, if present).

Security: binds 127.0.0.1 by default. Binding any other address requires a token (--token or the
STREAMRT_TOKEN environment variable); clients send it in hello. Browser pages must come from this
server or an --origin you list. Ctrl-C (or SIGTERM) stops gracefully: every session gets
end{reason:"shutdown"} after its pending output.

Modes: generate (the built-in streaming video generator, or --gen-model PATH: text to video, or
video to video with hello params {"input": "video"}); understand (the streaming VLM engine over the
built-in model or --vlm-model PATH: commentary and answers to `ask` as text segments).

Memory: --max-memory SIZE sizes admission from a budget. At start the server measures one session of
each mode (KV cache bytes from the model config, plus the resident-memory growth of probe sessions),
and, for understand, shrinks each session's KV cache (--kv-tokens, default 4096 rows) so that
--max-sessions sessions fit when the default would not. A hello beyond the budget is refused with
error{code:"E_FULL", retry_after_s} (never an out-of-memory kill); /healthz shows the plan. Compatible
work of several sessions (generate blocks of the same shape and schedule) runs as one batched forward
(--max-batch, 1 turns it off).

examples:
  streamrt serve                                   # 127.0.0.1:8765, built-in generator
  streamrt serve --port 9000 --max-sessions 8 --budget-ms 200
  streamrt serve --modes generate,understand --max-memory 2G --max-sessions 32
  STREAMRT_TOKEN=$(openssl rand -hex 16) streamrt serve --host 0.0.0.0
  streamrt serve --modes generate,understand
  streamrt serve --gen-model runs/gen-64 --static my_site/
  streamrt client none --server ws://127.0.0.1:8765/ws --prompt "a red circle" --frames 40 --save out/
"""

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from streamrt.scale.cli import add_serve_ray_arguments

    add_serve_ray_arguments(p)
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need a token)"
    )
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 picks a free one)")
    p.add_argument(
        "--token", default=os.environ.get("STREAMRT_TOKEN"), help="shared secret (default: $STREAMRT_TOKEN)"
    )
    p.add_argument("--origin", action="append", default=[], help="extra browser origin to allow (repeatable)")
    p.add_argument(
        "--modes", default="generate", help="comma-separated: generate, understand (default: generate)"
    )
    p.add_argument(
        "--vlm-model", default="builtin", help="understand: VLM folder or hub id (default: built-in)"
    )
    p.add_argument(
        "--gen-model", type=Path, default=None, help="generator checkpoint folder (default: built-in)"
    )
    p.add_argument(
        "--max-sessions", type=int, default=4, help="concurrent sessions before refusing (default 4)"
    )
    p.add_argument(
        "--budget-ms", type=float, default=250.0, help="default per-frame latency budget (default 250)"
    )
    p.add_argument(
        "--idle-timeout", type=float, default=120.0, help="end sessions silent this long (s, default 120)"
    )
    p.add_argument(
        "--max-frame-mb", type=float, default=2.0, help="largest input frame accepted (MiB, default 2)"
    )
    p.add_argument(
        "--max-frame-pixels",
        type=int,
        default=3840 * 2160,
        help="largest decoded input frame, width x height (default 3840x2160)",
    )
    p.add_argument(
        "--max-memory",
        default=None,
        help="memory budget (e.g. 2G, 512M): sessions and KV caches are sized to fit it (default: none)",
    )
    p.add_argument(
        "--kv-tokens",
        type=int,
        default=None,
        help="understand: KV cache rows per session (default 4096, or what --max-memory allows)",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=8,
        help="most sessions whose compatible work runs in one batched forward (default 8; 1: off)",
    )
    p.add_argument(
        "--static", type=Path, default=None, help="folder of static files (default: apps/web if present)"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads for model work (default: all cores)"
    )


PROBE_PARAMS: dict[str, dict[str, object]] = {"generate": {"preset": "rolling"}}
"""Hello params of the probe sessions: the preset with the largest FrameCache (rolling: 1 + 3 + 4
frames; the sequential presets hold 1 + 4 + 2), so the measured cost bounds every generate session."""
DEFAULT_KV_TOKENS = 4096
MIN_KV_TOKENS = 1024
"""Smallest understand cache the budget may size (pinned system prompt, text window, a few chunks)."""


def build_factories(
    modes: list[str], gen_model: Path | None, vlm_model: str = "builtin", kv_tokens: int | None = None
) -> dict:
    """Load each mode's model once; returns {mode: EngineFactory}. Raises SystemExit on unknown modes."""
    factories = {}
    for mode in modes:
        if mode == "generate":
            from streamrt.models.gen.model import GenModel, load_builtin
            from streamrt.server.generate import generate_factory

            model = GenModel.load(gen_model) if gen_model else load_builtin()
            factories[mode] = generate_factory(model)
        elif mode == "understand":
            from streamrt.models.vlm import load_adapter
            from streamrt.server.understand import understand_factory

            factories[mode] = understand_factory(load_adapter(vlm_model), kv_tokens)
        else:
            raise SystemExit(f"error: unknown mode {mode!r}; available: generate, understand")
    return factories


def plan_memory(args: argparse.Namespace, factories: dict, modes: list[str]):
    """Measure each mode's session cost, size the understand KV cache, return the MemoryBudget (and
    the factories, rebuilt when the cache was resized). Raises BudgetError when nothing fits."""
    from streamrt.server.budget import (
        MemoryBudget,
        SessionCost,
        measure_session,
        parse_size,
        process_baseline,
    )

    limit = parse_size(args.max_memory)
    costs = {m: measure_session(f, PROBE_PARAMS.get(m, {})) for m, f in factories.items()}
    baseline = process_baseline()
    headroom = 0.1
    if "understand" in costs and args.kv_tokens is None:
        c = costs["understand"]
        row = c.cache_bytes / DEFAULT_KV_TOKENS  # bytes per cache row (K, V and position tables)
        share = (limit * (1 - headroom) - baseline) / args.max_sessions - c.overhead_bytes
        kv = max(MIN_KV_TOKENS, min(DEFAULT_KV_TOKENS, int(share / row) // 256 * 256))
        if kv != DEFAULT_KV_TOKENS:
            factories["understand"] = dataclasses.replace(factories["understand"], kv_tokens=kv)
            costs["understand"] = SessionCost(int(row * kv), c.overhead_bytes)
        log.info("understand KV cache: %d rows per session (%.2f MiB)", kv, row * kv / 2**20)
    return MemoryBudget(limit, baseline, costs, headroom=headroom), factories


def run(args: argparse.Namespace) -> int:
    if getattr(args, "ray", False):
        from streamrt.scale.cli import serve_ray_from_args

        return serve_ray_from_args(args)
    import asyncio
    import signal

    import torch

    from streamrt.server import Server, ServerConfig, ServerConfigError

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        cfg = ServerConfig(
            host=args.host,
            port=args.port,
            token=args.token,
            origins=tuple(args.origin),
            max_sessions=args.max_sessions,
            budget_ms=args.budget_ms,
            idle_timeout_s=args.idle_timeout,
            max_frame_bytes=int(args.max_frame_mb * 2**20),
            max_frame_pixels=args.max_frame_pixels,
            max_batch=args.max_batch,
            max_message_bytes=max(4 * 2**20, int(args.max_frame_mb * 2**20) + 4096),
            static_dir=args.static,
        )
    except ServerConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        factories = build_factories(modes, args.gen_model, args.vlm_model, args.kv_tokens)
        budget = None
        if args.max_memory:
            budget, factories = plan_memory(args, factories, modes)
            plan = budget.describe()
            print(f"memory plan: {json.dumps(plan)}", file=sys.stderr, flush=True)
    except (ValueError, RuntimeError) as e:  # checkpoint / adapter / budget errors carry a code
        print(f"error: {e}", file=sys.stderr)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Server(cfg, factories, budget) as srv:
            print(
                f"streamrt serving {', '.join(factories)} on {srv.url} (health: http://{args.host}:{srv.port}/healthz)",
                flush=True,
            )
            await stop.wait()
            print("shutting down (ending sessions)...", file=sys.stderr, flush=True)

    asyncio.run(main())
    return 0
