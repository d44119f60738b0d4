"""`streamrt decode SOURCE`: extract frames (all or sampled by time) to images, or print framemd5 lines."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

NAME = "decode"
ORDER = 20
HELP = "decode a video (file, webcam, stream) to images or framemd5 lines, in parallel"
DESCRIPTION = """\
Decode SOURCE with parallel worker processes (files) or a live grabber (webcams, network streams)
and write the frames as images into --out, or print one `ffmpeg -f framemd5` line per frame.
Sampling is by time (seconds since the first frame): --fps F takes the frame at or before every
1/F s, --frames N takes N evenly spaced frames, --at T1,T2 takes the frames at or before those
times; with none of them every frame is decoded. Files only for the sampling flags.

--framemd5 hashes each frame in its native pixel format (planes packed, no padding), exactly like
ffmpeg, so this checks our decode against ffmpeg's bit for bit:
  streamrt decode clip.mp4 --framemd5 > ours.txt
  ffmpeg -i clip.mp4 -map 0:v -fflags +bitexact -f framemd5 - > theirs.txt
  diff ours.txt theirs.txt     # identical for constant-frame-rate files
(without -fflags +bitexact ffmpeg adds a "#software:" line; for variable frame rate files add
`-fps_mode passthrough` to ffmpeg and compare the size and hash columns, `cut -d, -f5,6`: ffmpeg
rounds pts to its output time base.)

examples:
  streamrt decode clip.mp4 --out frames/                  # every frame as PNG
  streamrt decode clip.mp4 --fps 1 --short-side 448 --out frames/ --jpeg
  streamrt decode clip.mp4 --frames 64 --size 224x224 --out frames/
  streamrt decode clip.mp4 --at 0,1.5,10 --out frames/
  streamrt decode clip.mp4 --framemd5
  streamrt decode webcam:0 --max-frames 30 --out cam/
Images are named NNNNNN.png (N = frame index) and frames.tsv lists index, pts, t, keyframe.
"""


def _size(s: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WxH, e.g. 640x360, got {s!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {s!r}")
    return w, h


def _times(s: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in s.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--at takes comma-separated seconds, got {s!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="file path, webcam:N or /dev/videoN, or rtsp/http/udp/tcp/srt URL")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fps", type=float, help="sample: the frame at or before every 1/FPS seconds")
    g.add_argument("--frames", type=int, metavar="N", help="sample: N evenly spaced frames")
    g.add_argument(
        "--at", type=_times, metavar="T1,T2,...", help="sample: frames at or before these times (s)"
    )
    s = p.add_mutually_exclusive_group()
    s.add_argument("--size", type=_size, metavar="WxH", help="output size (converted in the workers)")
    s.add_argument(
        "--short-side", type=int, metavar="PX", help="scale so the shorter side is PX (aspect kept)"
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="write images and frames.tsv here")
    p.add_argument("--jpeg", action="store_true", help="write JPEG (quality 95) instead of PNG")
    p.add_argument("--framemd5", action="store_true", help="print ffmpeg framemd5 lines instead of images")
    p.add_argument("--workers", type=int, help="decode worker processes (default: number of cores)")
    p.add_argument(
        "--no-strict",
        action="store_true",
        help="decode what is valid in damaged files, report where it stopped",
    )
    p.add_argument(
        "--max-frames", type=int, help="stop after this many frames (live sources run until Ctrl-C otherwise)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from fractions import Fraction

    import cv2
    from tqdm import tqdm

    from streamrt.ingest import AtTimes, EveryFps, IngestError, PixelSpec, Uniform, open_source
    from streamrt.ingest.framemd5 import framemd5_lines

    log = logging.getLogger("streamrt.decode")
    if not args.framemd5 and not args.out:
        print("error: give --out DIR (images) or --framemd5", file=sys.stderr)
        return 2
    sampling = (
        EveryFps(args.fps)
        if args.fps
        else Uniform(args.frames)
        if args.frames
        else AtTimes(args.at)
        if args.at
        else None
    )
    if args.framemd5:
        pixels = PixelSpec(format="native")
        if args.size or args.short_side:
            print("error: --framemd5 hashes native frames; drop --size/--short-side", file=sys.stderr)
            return 2
    else:
        pixels = PixelSpec(format="bgr24", size=args.size, short_side=args.short_side)
    try:
        src = open_source(args.source, pixels=pixels, sampling=sampling, **_file_opts(args))
    except IngestError as e:
        print(f"error [{e.code}]: {e}", file=sys.stderr)
        return 1
    except TypeError as e:  # sampling/worker flags given to a live source
        print(f"error: {e} (sampling and --workers apply to files only)", file=sys.stderr)
        return 2
    n = 0
    try:
        with src:
            info = getattr(src, "info", None)
            total = args.max_frames or _expected_frames(src, sampling)
            frames = iter(src)
            if args.max_frames:
                frames = (f for f, _ in zip(frames, range(args.max_frames), strict=False))
            if args.framemd5:
                rate = (
                    Fraction(info.avg_fps).limit_denominator(1001000)
                    if info and info.avg_fps
                    else Fraction(25)
                )
                start = _container_start(args.source)
                out = sys.stdout
                for ln in framemd5_lines(frames, rate, start, _sar(args.source)):
                    out.write(ln + "\n")
                    n += 1
                out.flush()
                n = max(0, n - 9)
            else:
                args.out.mkdir(parents=True, exist_ok=True)
                ext = ".jpg" if args.jpeg else ".png"
                params = [cv2.IMWRITE_JPEG_QUALITY, 95] if args.jpeg else [cv2.IMWRITE_PNG_COMPRESSION, 1]
                with (
                    (args.out / "frames.tsv").open("w") as tsv,
                    tqdm(total=total, unit="frame", disable=args.no_progress, desc="decode") as bar,
                ):
                    tsv.write("index\tpts\tt\tkeyframe\tfile\n")
                    for f in frames:
                        name = f"{f.index:06d}{ext}"
                        cv2.imwrite(str(args.out / name), f.pixels, params)
                        tsv.write(f"{f.index}\t{f.pts:.6f}\t{f.t:.6f}\t{int(f.keyframe)}\t{name}\n")
                        n += 1
                        bar.update(1)
                log.info("wrote %d frames to %s", n, args.out)
            report = getattr(src, "report", None)
            if report is not None and report.problem:
                print(f"warning: {report.problem}; stopped at t={report.stopped_at_s}", file=sys.stderr)
    except IngestError as e:
        print(f"error [{e.code}]: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    return 0


def _file_opts(args: argparse.Namespace) -> dict[str, object]:
    from streamrt.ingest import source_kind

    if source_kind(args.source) != "file":
        return {}
    return {"workers": args.workers, "strict": not args.no_strict}


def _expected_frames(src: object, sampling: object) -> int | None:
    info = getattr(src, "info", None)
    if info is None:
        return None
    if sampling is None:
        if info.duration_s and info.avg_fps:
            return round(info.duration_s * info.avg_fps)
        return None
    n = getattr(sampling, "n", None) or len(getattr(sampling, "times", ())) or None
    if n is None and info.duration_s:
        return round(info.duration_s * sampling.fps)  # type: ignore[attr-defined]
    return n


def _container_start(path: str) -> float:
    import av

    with av.open(path) as c:
        return c.start_time / 1e6 if c.start_time else 0.0


def _sar(path: str):
    import av

    with av.open(path) as c:
        s = c.streams.video[0].sample_aspect_ratio
    from fractions import Fraction

    return Fraction(s.numerator, s.denominator) if s else None
