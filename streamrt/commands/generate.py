"""`streamrt generate`: stream video out of the built-in (or any trained) causal video generator."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from streamrt.gen.config import DEFAULT_PRESET

NAME = "generate"
ORDER = 40
HELP = "generate (or restyle) video frame by frame with the streaming video diffusion engine"
DESCRIPTION = """\
Roll a causal video diffusion transformer out block by block over a sink + rolling-window KV cache
(FrameCache), write the frames to a video file, and report speed, latency and how often the prompted
object is found in the frames (colour segmentation). The built-in model was trained on shapes-world
video at 64x64, 8 fps: prompts are "a|an <colour> <circle|square|triangle> [moving <direction>]"
with colours red orange yellow green cyan blue purple pink white brown.

examples:
  streamrt generate --prompt "a red circle" --seconds 10 --out red.mp4
  streamrt generate --prompt "a blue square moving left" --seconds 30 --schedule rolling --out sq.mp4
  streamrt generate --prompt "a red circle" --switch "5:a green triangle" --seconds 10 --out sw.mp4
  streamrt generate --prompt "a white circle" --input clip.mp4 --strength 0.6 --out v2v.mp4   # video-to-video
  streamrt generate --prompt "a red circle" --seconds 20 --degrade --out live.mp4    # keep real time
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", required=True, help='what to show, e.g. "a red circle moving left"')
    p.add_argument("--out", type=Path, required=True, help="output video (.mp4, H.264)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the output (default 10)")
    p.add_argument("--model", type=Path, default=None, help="checkpoint folder (default: the built-in model)")
    p.add_argument(
        "--preset", default=DEFAULT_PRESET, help="engine preset: quality, fast, rolling, stream_batch"
    )
    p.add_argument(
        "--schedule", choices=["sequential", "stream_batch", "rolling"], help="override the preset's schedule"
    )
    p.add_argument("--steps", type=int, help="denoise steps per block (override)")
    p.add_argument(
        "--guidance",
        type=float,
        help="classifier-free guidance scale (sequential schedule; 1 = off; default: the model's own)",
    )
    p.add_argument(
        "--sampler",
        choices=("euler", "renoise"),
        help="denoise step: follow the flow (euler) or re-noise the predicted frame with fresh noise "
        "(renoise); default: what the model's checkpoint names (the built-in model: renoise)",
    )
    p.add_argument(
        "--switch", action="append", default=[], metavar="SEC:PROMPT", help="change the prompt at SEC seconds"
    )
    p.add_argument(
        "--prompt-switch",
        choices=("recache", "hard-cut"),
        help="what a prompt switch does with the cache: re-encode the kept frames under the new prompt "
        "(recache) or forget them (hard-cut); default: what the model's checkpoint names "
        "(the built-in model: recache)",
    )
    p.add_argument("--input", type=Path, help="video-to-video: restyle this video's frames")
    p.add_argument(
        "--strength", type=float, default=None, help="video-to-video noise level in (0, 1] (default 0.6)"
    )
    p.add_argument(
        "--degrade",
        action="store_true",
        help="step quality down when blocks miss real time (first without guidance, then fewer steps, then smaller blocks)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")


def _switches(items: list[str], fps: float) -> dict[int, str]:
    out = {}
    for it in items:
        m = re.fullmatch(r"\s*([0-9.]+)\s*:(.+)", it)
        if not m:
            raise SystemExit(f"error: --switch {it!r} is not SEC:PROMPT")
        out[round(float(m.group(1)) * fps)] = m.group(2).strip()
    return out


def _read_input(path: Path, size: tuple[int, int]):  # -> Iterator[Tensor [1, 1, 3, H, W]]
    import av
    import cv2

    from streamrt.models.gen.data import to_tensor

    with av.open(str(path)) as c:
        for fr in c.decode(video=0):
            rgb = cv2.resize(fr.to_ndarray(format="rgb24"), size[::-1], interpolation=cv2.INTER_AREA)
            yield to_tensor(rgb)[None, None]


def run(args: argparse.Namespace) -> int:
    import av
    import numpy as np
    import torch
    from tqdm import tqdm

    from streamrt.gen.config import GenEngineConfig
    from streamrt.gen.degrade import DegradeLadder
    from streamrt.gen.engine import GenEngine
    from streamrt.gen.quality import score
    from streamrt.gen.stream import generate, transform
    from streamrt.models.gen.model import GenModel, load_builtin

    log = logging.getLogger("streamrt.generate")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = GenModel.load(args.model) if args.model else load_builtin()
    over: dict[str, object] = {"seed": args.seed}
    if args.schedule:
        over["schedule"] = args.schedule
    if args.steps:
        over["steps"] = args.steps
    if args.guidance is not None:
        over["guidance"] = args.guidance
    if args.sampler:
        over["sampler"] = args.sampler
    if args.prompt_switch:
        over["prompt_switch"] = args.prompt_switch.replace("-", "_")
    if args.strength is not None:
        over["v2v_strength"] = args.strength
    if args.input:
        over["schedule"], over["block_frames"] = "sequential", 1
    cfg = GenEngineConfig.preset(args.preset, **over)
    engine = GenEngine(model, cfg)
    ladder = DegradeLadder(cfg, v2v=bool(args.input), guided=engine.guidance != 1.0) if args.degrade else None
    n = max(1, round(args.seconds * cfg.fps))
    if args.input:
        engine.set_prompt(args.prompt)
        timed = transform(engine, _read_input(args.input, (engine.h, engine.w)), ladder=ladder)
    else:
        timed = generate(engine, n, {0: args.prompt, **_switches(args.switch, cfg.fps)}, ladder=ladder)
    frames, lat, wall = [], [], []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(args.out), "w") as out:
        st = out.add_stream("libx264", rate=round(cfg.fps))
        st.width, st.height, st.pix_fmt = engine.w, engine.h, "yuv420p"
        for t in tqdm(timed, total=None if args.input else n, desc="generate", unit="frame"):
            out.mux(st.encode(av.VideoFrame.from_ndarray(t.frame.pixels, format="rgb24")))
            frames.append(t.frame)
            lat.append(t.latency_s)
            wall.append(t.wall_s)
        out.mux(st.encode(None))
    if not frames:
        print("error: no frames produced", file=sys.stderr)
        return 1
    words = args.prompt.split()
    lat_ms = np.array(lat) * 1e3
    print(
        f"wrote {args.out}: {len(frames)} frames {engine.h}x{engine.w} at {cfg.fps:g} fps, schedule {cfg.schedule}, "
        f"{engine.level.steps} steps ({engine.sampler})"
    )
    print(
        f"speed {len(frames) / wall[-1]:.1f} frames/s, first frame {wall[0]:.3f} s, "
        f"latency p50 {np.percentile(lat_ms, 50):.1f} ms p99 {np.percentile(lat_ms, 99):.1f} ms"
    )
    if len(words) >= 3 and not args.switch:
        rep = score([f.pixels for f in frames], words[1], words[2])
        print(
            f"prompted {words[1]} found in {rep.colour_rate:.0%} of frames, as a {words[2]} in {rep.shape_rate:.0%}"
        )
    if ladder is not None:
        for s in ladder.history:
            log.warning("degrade at frame %d: %d -> %d (%s)", s.frame, s.level_from, s.level_to, s.reason)
    print("counters:", engine.counters)
    return 0
