"""`streamrt bench synth`: shapes-world frames per second, rendered only vs rendered + encoded + written.

Baseline: simulate and render frames at 640x360 (no file). Candidates: the same stream encoded with
H.264 (libx264 veryfast, GOP 60) into an MP4 with its timeline, with 0 and with 2 B-frames; and the
render at 64x64 (the size a tiny generator trains on). Each case produces the same number of frames
from a fresh world with the same seed, so the ratio is the cost of encoding and writing.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
from pathlib import Path

from streamrt.bench.harness import Bench, register
from streamrt.synth import World, WorldConfig, write_video


@register("synth", "shapes world: frames/s rendered only vs rendered + H.264-encoded + written")
def bench_synth(bench: Bench) -> None:
    seconds = 4.0 if bench.quick else 20.0
    cfg = WorldConfig.preset("demo", seed=1)
    n = round(seconds * cfg.fps)
    tmp = Path(tempfile.mkdtemp(prefix="streamrt-bench-synth-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    bench.config = {"preset": "demo", "size": f"{cfg.width}x{cfg.height}", "fps": cfg.fps, "frames": n}

    def render_only(width: int | None = None, height: int | None = None) -> None:
        for _ in itertools.islice(World(cfg).frames(width, height), n):
            pass

    def encoded(bframes: int) -> dict[str, float]:
        info = write_video(
            tmp / f"b{bframes}.mp4", World(cfg), seconds, codec="h264", gop=60, bframes=bframes
        )
        return {"MB_per_min": info.bytes / 1e6 / (seconds / 60)}

    bench.case("render 640x360", render_only, work=n, unit="frames", baseline=True, note="simulate + draw")
    bench.case(
        "render 64x64", lambda: render_only(64, 64), work=n, unit="frames", note="same world, drawn small"
    )
    bench.case(
        "render+h264+write",
        lambda: encoded(0),
        work=n,
        unit="frames",
        note="libx264 veryfast, GOP 60, mp4 + jsonl",
    )
    bench.case(
        "render+h264 bf2+write", lambda: encoded(2), work=n, unit="frames", note="as above, 2 B-frames"
    )
