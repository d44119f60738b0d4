"""`streamrt serve`: run the real-time websocket server (protocol v1) with the chosen engines."""

from __future__ import annotations

import argparse
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

examples:
  streamrt serve                                   # 127.0.0.1:8765, built-in generator
  streamrt serve --port 9000 --max-sessions 8 --budget-ms 200
  STREAMRT_TOKEN=$(openssl rand -hex 16) streamrt serve --host 0.0.0.0
  streamrt serve --modes generate,understand
  streamrt serve --gen-model runs/gen-64 --static my_site/
  streamrt client none --server ws://127.0.0.1:8765/ws --prompt "a red circle" --frames 40 --save out/
"""

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
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
        "--static", type=Path, default=None, help="folder of static files (default: apps/web if present)"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads for model work (default: all cores)"
    )


def build_factories(modes: list[str], gen_model: Path | None, vlm_model: str = "builtin") -> dict:
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

            factories[mode] = understand_factory(load_adapter(vlm_model))
        else:
            raise SystemExit(f"error: unknown mode {mode!r}; available: generate, understand")
    return factories


def run(args: argparse.Namespace) -> int:
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
            max_message_bytes=max(4 * 2**20, int(args.max_frame_mb * 2**20) + 4096),
            static_dir=args.static,
        )
    except ServerConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        factories = build_factories(modes, args.gen_model, args.vlm_model)
    except (ValueError, RuntimeError) as e:  # checkpoint / adapter errors carry a code and name the model
        print(f"error: {e}", file=sys.stderr)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Server(cfg, factories) as srv:
            print(
                f"streamrt serving {', '.join(factories)} on {srv.url} (health: http://{args.host}:{srv.port}/healthz)",
                flush=True,
            )
            await stop.wait()
            print("shutting down (ending sessions)...", file=sys.stderr, flush=True)

    asyncio.run(main())
    return 0
