"""`streamrt synth`: write a shapes-world clip and its ground-truth event timeline."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

NAME = "synth"
ORDER = 10
HELP = "generate a shapes-world video clip with its ground-truth event timeline"
DESCRIPTION = """\
Generate a clip of the shapes world: coloured circles, squares, triangles, stars and diamonds that
enter, leave, move, bounce, change colour, grow, shrink and overlap, with camera cuts and still
periods. The same seed gives the same frames and events. Beside the video goes its timeline, one
JSON event per line after a header line with the full configuration (default: NAME.events.jsonl).
The container follows the extension (.mp4 .mkv .webm .mov .ts). Keyframes are placed exactly every
--gop frames (scene-cut detection off) and --bframes consecutive B-frames are used (h264, hevc,
mpeg4), so decoders can be tested on hard cases.

examples:
  streamrt synth --seconds 600 --fps 30 --size 640x360 --out demo.mp4
  streamrt synth --seconds 20 --out clip.mp4 --print-events
  streamrt synth --preset simple --seconds 60 --out tiny.mp4          # 64x64, 1-2 shapes, no cuts
  streamrt synth --seconds 30 --codec hevc --gop 12 --bframes 3 --out hard.mkv
  streamrt synth --seconds 30 --codec vp9 --out clip.webm --timeline events.jsonl
  streamrt synth --seconds 10 --seed 7 --crf 18 --out seed7.mp4
"""

log = logging.getLogger(__name__)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x360, not {text!r}") from None
    if w < 8 or h < 8 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"size {text}: both sides even and at least 8")
    return w, h


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="video file to write (.mp4 .mkv .webm .mov .ts)")
    p.add_argument("--seconds", type=float, default=30.0, help="clip length in seconds (default 30)")
    p.add_argument("--preset", default="demo", help="world preset: demo (default), simple, busy")
    p.add_argument("--fps", type=float, default=None, help="frames per second (default: the preset's)")
    p.add_argument(
        "--size", type=_size, default=None, metavar="WxH", help="frame size (default: the preset's)"
    )
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument("--codec", default="h264", help="h264 (default), hevc, vp9, vp8, mpeg4")
    p.add_argument("--gop", type=int, default=60, help="frames between keyframes (default 60)")
    p.add_argument("--bframes", type=int, default=0, help="consecutive B-frames (default 0)")
    p.add_argument("--crf", type=int, default=None, help="constant quality (h264/hevc/vp9; lower is better)")
    p.add_argument("--bitrate", type=int, default=None, help="target bits per second instead of --crf")
    p.add_argument("--pix-fmt", default="yuv420p", help="pixel format of the encoded video (default yuv420p)")
    p.add_argument("--timeline", type=Path, default=None, help="timeline path (default: OUT.events.jsonl)")
    p.add_argument("--print-events", action="store_true", help="print each event as a timed sentence")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from streamrt.synth import SynthError, World, WorldConfig, describe, write_video
    from streamrt.synth.types import SynthFrame

    overrides: dict[str, object] = {"seed": args.seed}
    if args.fps is not None:
        overrides["fps"] = args.fps
    if args.size is not None:
        overrides["width"], overrides["height"] = args.size
    try:
        cfg = WorldConfig.preset(args.preset, **overrides)
    except SynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from tqdm import tqdm

    def show(frame: SynthFrame) -> None:
        for e in frame.events:
            try:  # tqdm.write keeps the progress bar (on stderr) intact
                tqdm.write(f"[{e.t:8.2f}s] {describe(e)}", file=sys.stdout)
                sys.stdout.flush()
            except BrokenPipeError:  # e.g. `| head`: stop printing, finish the clip
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until exit

    try:
        info = write_video(
            args.out,
            World(cfg),
            args.seconds,
            codec=args.codec,
            gop=args.gop,
            bframes=args.bframes,
            crf=args.crf,
            bitrate=args.bitrate,
            pix_fmt=args.pix_fmt,
            timeline=args.timeline,
            progress=not args.no_progress,
            on_frame=show if args.print_events else None,
        )
    except SynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {info.path} ({info.frames} frames, {info.seconds:.1f} s, {info.bytes / 1e6:.2f} MB, "
        f"{info.frames / info.wall_s:.0f} frames/s) and {info.timeline} ({info.events} events)",
        file=sys.stderr,
    )
    return 0
