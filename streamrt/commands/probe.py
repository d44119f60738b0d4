"""`streamrt probe SOURCE`: streams, duration, frame rate and keyframe times of a media file."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

NAME = "probe"
ORDER = 21
HELP = "show a media file's streams, duration, frame rate and keyframe times"
DESCRIPTION = """\
Open a media file, describe every stream (codec, size, pixel format, frame rate, rotation, audio
rate) and list the video keyframe times (seconds since the first frame) from a demux-only pass.

examples:
  streamrt probe clip.mp4
  streamrt probe clip.mkv --json          # machine-readable
  streamrt probe clip.mp4 --no-keyframes  # header only, instant on huge files
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="media file")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--no-keyframes", action="store_true", help="skip the demux pass (no keyframe list)")


def run(args: argparse.Namespace) -> int:
    from streamrt.ingest import IngestError, probe

    try:
        r = probe(args.source, keyframes=not args.no_keyframes)
    except IngestError as e:
        print(f"error [{e.code}]: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(r), indent=2))
        return 0
    dur = f"{r.duration_s:.3f} s" if r.duration_s is not None else "unknown"
    print(f"{r.path}: format {r.format}, duration {dur}")
    for s in r.streams:
        if s.kind == "video":
            fps = f"{s.avg_fps:.3f} fps" if s.avg_fps else "fps unknown"
            rot = f", rotation {s.rotation} deg" if s.rotation else ""
            print(
                f"  #{s.index} video {s.codec} {s.width}x{s.height} {s.pix_fmt}, {fps}{rot}, start {s.start_s}"
            )
        elif s.kind == "audio":
            print(f"  #{s.index} audio {s.codec} {s.sample_rate} Hz, {s.channels} ch")
        else:
            print(f"  #{s.index} {s.kind} {s.codec}")
    if not args.no_keyframes:
        kt = r.keyframe_times_s
        shown = ", ".join(f"{t:.3f}" for t in kt[:20]) + (f", ... ({len(kt)} in all)" if len(kt) > 20 else "")
        print(f"  video packets: {r.video_packets}; keyframes at (s): {shown}")
        if r.problem:
            print(f"  warning: {r.problem}")
    return 0
