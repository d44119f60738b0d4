"""Write a shapes-world stream to a video file with PyAV, and its timeline beside it as JSONL.

Owns: the codec and container tables, the encoder settings that make the keyframe interval and
the B-frame count exact (scene-cut detection off, fixed B-frame pattern), and the timeline file
format. Does not know how frames are made (it pulls them from a `World`).

Timeline format (JSONL): line 1 is a header
  {"type": "header", "version": 1, "config": {...WorldConfig...}, "video": {...settings...}}
then one line per event, in order:
  {"type": "event", "t": 1.5, "frame": 45, "kind": "enter", "object": 7, "attrs": {...}, "text": "..."}
"frame" is the world's frame index; the video's frame k is world frame `video.first_frame + k`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from streamrt.synth.config import SynthError
from streamrt.synth.language import describe
from streamrt.synth.types import Event, SynthFrame
from streamrt.synth.world import World

CODECS: dict[str, str] = {
    "h264": "libx264",
    "hevc": "libx265",
    "vp9": "libvpx-vp9",
    "vp8": "libvpx",
    "mpeg4": "mpeg4",
}
CONTAINERS: dict[str, str] = {
    ".mp4": "mp4",
    ".mkv": "matroska",
    ".webm": "webm",
    ".mov": "mov",
    ".ts": "mpegts",
}
_WEBM_CODECS = ("vp9", "vp8")
_NO_BFRAMES = ("vp9", "vp8")
TIMELINE_VERSION = 1


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What `write_video` produced."""

    path: Path
    timeline: Path
    frames: int
    events: int
    seconds: float
    """Duration of the clip (frames / fps)."""
    bytes: int
    wall_s: float
    """Wall-clock seconds spent rendering, encoding and writing."""


def timeline_path(video: Path) -> Path:
    """The default timeline beside a video: demo.mp4 -> demo.events.jsonl."""
    return video.with_name(video.stem + ".events.jsonl")


def _encoder_options(
    codec: str, gop: int, bframes: int, crf: int | None, bitrate: int | None
) -> dict[str, str]:
    if codec == "h264":
        params = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}:b-adapt=0"
        opts = {"preset": "veryfast", "x264-params": params}
    elif codec == "hevc":
        params = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}:b-adapt=0:log-level=error"
        opts = {"preset": "veryfast", "x265-params": params}
    elif codec in ("vp9", "vp8"):
        opts = {"deadline": "realtime", "cpu-used": "8", "keyint_min": str(gop)}
        if bitrate is None:
            opts["b"] = "0"
    else:  # mpeg4
        opts = {"sc_threshold": "1000000000"}
    if crf is not None:
        if codec == "mpeg4":
            raise SynthError("E_SYNTH_CODEC", "mpeg4 has no crf: give a bitrate instead")
        opts["crf"] = str(crf)
    return opts


def write_video(
    path: str | Path,
    world: World,
    seconds: float,
    *,
    codec: str = "h264",
    gop: int = 60,
    bframes: int = 0,
    crf: int | None = None,
    bitrate: int | None = None,
    pix_fmt: str = "yuv420p",
    timeline: str | Path | None = None,
    progress: bool = False,
    on_frame: Callable[[SynthFrame], None] | None = None,
) -> VideoInfo:
    """Write the next `seconds` of `world` to `path` (container from the extension) and its timeline.

    gop: frames between keyframes (exact: scene-cut detection is off); bframes: consecutive
    B-frames (exact pattern for h264/hevc; vp8/vp9 have none and must get 0); crf or bitrate
    (bits/s) set the quality (h264 default crf 23; mpeg4 default 2 Mb/s); timeline: JSONL path
    (default beside the video, `timeline_path`); progress: tqdm bar; on_frame: called with every
    frame after it is encoded (e.g. to print its events).
    """
    import av
    from tqdm import tqdm

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in CONTAINERS:
        raise SynthError(
            "E_SYNTH_CONTAINER", f"{path}: unknown extension {ext!r}; use one of {', '.join(CONTAINERS)}"
        )
    if codec not in CODECS:
        raise SynthError("E_SYNTH_CODEC", f"unknown codec {codec!r}; known: {', '.join(CODECS)}")
    if ext == ".webm" and codec not in _WEBM_CODECS:
        raise SynthError("E_SYNTH_CODEC", f"{path}: webm holds only {', '.join(_WEBM_CODECS)}, not {codec}")
    if bframes and codec in _NO_BFRAMES:
        raise SynthError("E_SYNTH_CODEC", f"{codec} has no B-frames: use bframes=0")
    if gop < 1 or bframes < 0 or seconds <= 0:
        raise SynthError(
            "E_SYNTH_ARGS", f"need gop >= 1, bframes >= 0, seconds > 0 (got {gop}, {bframes}, {seconds})"
        )
    cfg = world.config
    if "420" in pix_fmt and (cfg.width % 2 or cfg.height % 2):
        raise SynthError("E_SYNTH_ARGS", f"{pix_fmt} needs even sides, not {cfg.width}x{cfg.height}")
    n = max(1, round(seconds * cfg.fps))
    tl = Path(timeline) if timeline is not None else timeline_path(path)
    rate = Fraction(cfg.fps).limit_denominator(1001)
    opts = _encoder_options(codec, gop, bframes, crf, bitrate)
    t0 = time.perf_counter()
    n_events = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tl.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), "w", format=CONTAINERS[ext]) as out, tl.open("w") as tf:
            stream = out.add_stream(CODECS[codec], rate=rate, options=opts)
            stream.width, stream.height = cfg.width, cfg.height
            stream.pix_fmt = pix_fmt
            stream.codec_context.gop_size = gop
            stream.codec_context.time_base = 1 / rate
            if codec not in _NO_BFRAMES:
                stream.codec_context.max_b_frames = bframes
            if bitrate is not None:
                stream.codec_context.bit_rate = bitrate
            elif codec == "mpeg4":
                stream.codec_context.bit_rate = 2_000_000
            video = {
                "path": path.name,
                "codec": codec,
                "encoder": CODECS[codec],
                "gop": gop,
                "bframes": bframes,
                "crf": crf,
                "bitrate": bitrate,
                "pix_fmt": pix_fmt,
                "frames": n,
                "fps": cfg.fps,
                "first_frame": world.frame_index + 1,
            }
            header = {"type": "header", "version": TIMELINE_VERSION, "config": cfg.to_dict(), "video": video}
            tf.write(json.dumps(header) + "\n")
            frames = world.frames()
            for k in tqdm(range(n), total=n, unit="frame", desc=path.name, disable=not progress):
                f = next(frames)
                vf = av.VideoFrame.from_ndarray(f.pixels, format="rgb24")  # pixels: [H, W, 3] uint8
                vf.pts = k
                vf.time_base = 1 / rate
                for pkt in stream.encode(vf):
                    out.mux(pkt)
                for e in f.events:
                    tf.write(json.dumps({"type": "event", **e.to_json(), "text": describe(e)}) + "\n")
                n_events += len(f.events)
                if on_frame is not None:
                    on_frame(f)
            for pkt in stream.encode(None):
                out.mux(pkt)
    except (OSError, ValueError, av.FFmpegError) as exc:  # ValueError: PyAV's bad pix_fmt
        raise SynthError("E_SYNTH_WRITE", f"{path}: cannot encode or write ({exc})") from exc
    wall = time.perf_counter() - t0
    return VideoInfo(path, tl, n, n_events, n / cfg.fps, path.stat().st_size, wall)


def read_timeline(path: str | Path) -> tuple[dict[str, object], list[Event]]:
    """Read a timeline written by `write_video`: (header, events). Raises E_SYNTH_TIMELINE."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
        header = json.loads(lines[0])
        if header.get("type") != "header" or header.get("version") != TIMELINE_VERSION:
            raise ValueError("first line is not a version-1 header")
        events = [Event.from_json(json.loads(ln)) for ln in lines[1:] if ln.strip()]
    except (OSError, IndexError, ValueError, KeyError, TypeError) as exc:
        raise SynthError("E_SYNTH_TIMELINE", f"{path}: not a shapes-world timeline ({exc})") from exc
    return header, events
