"""`streamrt client`: stream a file, URL or webcam to a streamrt server and print what comes back."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

NAME = "client"
ORDER = 61
HELP = "stream a video file, URL or webcam to a streamrt server and print / save its outputs"
DESCRIPTION = """\
Connect to a streamrt server (protocol v1), send the frames of SOURCE at --fps as JPEG with their
capture times, and print the server's text segments, errors and a line per stats message; with
--save DIR, output frames are written there as image files. SOURCE is a video file, a stream URL
(rtsp://, http://...), a webcam ("0", "webcam:0"), or "none" to send no input (text-to-video
generation). Reconnects with backoff if the connection drops. Stops after --seconds, after --frames
output frames, at the end of a file (after the server has answered everything), or on Ctrl-C.

examples:
  streamrt client none --prompt "a red circle" --frames 40 --save out/
  streamrt client clip.mp4 --prompt "a white circle" --fps 8 --save v2v/       # video to video
  streamrt client 0 --prompt "a blue square" --seconds 30                      # webcam
  streamrt client clip.mp4 --mode understand --ask "3:what colour is the circle?"
  streamrt client none --server ws://gpu-box:8765/ws --token $TOKEN --param steps=2 --param seed=7
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help='video file, stream URL, webcam index, or "none"')
    p.add_argument(
        "--server",
        default="ws://127.0.0.1:8765/ws",
        help="server URL (default ws://127.0.0.1:8765/ws), or the http://HOST:PORT of a `streamrt serve --ray` "
        "cluster (the client asks its gateway for a session, then connects to the granted server)",
    )
    p.add_argument("--mode", default="generate", help="session mode (default generate)")
    p.add_argument("--prompt", help="generate: what to show")
    p.add_argument(
        "--ask", action="append", default=[], metavar="SEC:TEXT", help="understand: ask TEXT at SEC seconds"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="hello parameter (JSON value or string)",
    )
    p.add_argument(
        "--token", default=os.environ.get("STREAMRT_TOKEN"), help="server token (default $STREAMRT_TOKEN)"
    )
    p.add_argument("--fps", type=float, default=8.0, help="input frames per second to send (default 8)")
    p.add_argument(
        "--size",
        type=int,
        default=256,
        help="scale input so its shorter side has this many pixels (default 256)",
    )
    p.add_argument("--quality", type=int, default=85, help="JPEG quality of input frames (default 85)")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--frames", type=int, default=None, help="stop after this many output frames")
    p.add_argument("--save", type=Path, default=None, help="write output frames into this folder")


def parse_params(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for it in items:
        if "=" not in it:
            raise SystemExit(f"error: --param {it!r} is not KEY=VALUE")
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def run(args: argparse.Namespace) -> int:
    import asyncio

    from streamrt.client import AsyncClient, ClientError

    params = parse_params(args.param)
    if args.prompt:
        params["prompt"] = args.prompt
    live = args.source.lower() != "none"
    if live and args.mode == "generate":
        params.setdefault("input", "video")
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
    client = AsyncClient(args.server, args.mode, params, token=args.token)  # type: ignore[arg-type]
    try:
        return asyncio.run(_session(client, args, live))
    except ClientError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _session(client, args: argparse.Namespace, live: bool) -> int:
    import asyncio
    import time

    from streamrt.client import End, OutputFrameEvent, ServerError, Stats, Text

    ready = await client.connect()
    print(
        f"session {ready.session_id[:6]}… mode={ready.mode} budget={ready.limits.get('budget_ms')} ms",
        flush=True,
    )
    sender = asyncio.create_task(_send(client, args)) if live else None
    asker = asyncio.create_task(_asks(client, args.ask)) if args.ask else None
    t0, frames, code = time.monotonic(), 0, 0
    try:
        while True:
            if args.seconds is not None and time.monotonic() - t0 > args.seconds:
                break
            try:
                ev = await client.recv(1.0)
            except TimeoutError:
                continue
            if isinstance(ev, OutputFrameEvent):
                if args.save:
                    ext = {"jpeg": "jpg", "raw": "rgb"}.get(ev.header.codec, ev.header.codec)
                    (args.save / f"{ev.header.seq:06d}.{ext}").write_bytes(ev.payload)
                frames += 1
                if args.frames is not None and frames >= args.frames:
                    break
            elif isinstance(ev, Text):
                print(f"[{ev.segment_id}{'' if ev.final else '…'}] {ev.text}", flush=True)
            elif isinstance(ev, Stats):
                d = ev.data
                lat = d["latency_ms"]
                print(
                    f"stats: in {d['fps_in']} fps, out {d['fps_out']} fps, latency p50 {lat['p50']} p99 {lat['p99']} ms, "  # type: ignore[index]
                    f"miss {d['deadline_miss_rate']}, drops {d['drops']}, level {d['level']}",
                    flush=True,
                )
            elif isinstance(ev, ServerError):
                print(f"server error {ev.code}: {ev.message}", file=sys.stderr, flush=True)
            elif isinstance(ev, End):
                print(f"end: {ev.reason}", flush=True)
                code = 0 if ev.reason in ("input_ended", "shutdown") else 1
                break
    finally:
        for task in (sender, asker):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await client.close()
    print(f"{frames} output frames", flush=True)
    return code


async def _asks(client, items: list[str]) -> None:
    import asyncio

    timed = []
    for it in items:
        sec, _, text = it.partition(":")
        try:
            timed.append((float(sec), text.strip()))
        except ValueError:
            timed.append((0.0, it))
    t = 0.0
    for sec, text in sorted(timed):
        await asyncio.sleep(max(0.0, sec - t))
        t = sec
        await client.ask(text)


async def _send(client, args: argparse.Namespace) -> None:
    """Read SOURCE on a thread (decoding never blocks the socket), send at --fps, then end_input."""
    import asyncio
    import time

    from streamrt.ingest import EveryFps, PixelSpec, open_source, source_kind

    px = PixelSpec(format="rgb24", short_side=args.size)
    kind = source_kind(args.source)
    src = (
        open_source(args.source, pixels=px, sampling=EveryFps(args.fps))
        if kind == "file"
        else open_source(args.source, pixels=px)
    )
    it = iter(src)
    period, nxt = 1.0 / args.fps, time.monotonic()
    try:
        while True:
            frame = await asyncio.to_thread(next, it, None)
            if frame is None:
                break
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))
            nxt = max(nxt + period, time.monotonic() - period)
            await client.send_frame(frame.pixels, quality=args.quality)
        await client.end_input()
    finally:
        await asyncio.to_thread(src.close)
