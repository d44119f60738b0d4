"""`streamrt bench decode`: our parallel decoder side by side with PyAV, OpenCV and the ffmpeg CLI.

Groups of cases, each on one generated clip (cached under $STREAMRT_BENCH_CACHE or
~/.cache/streamrt/bench/decode; made with the ffmpeg CLI from `testsrc2` and, for one clip, with
the shapes world of `streamrt.synth`):

Groups (`STREAMRT_BENCH_DECODE_GROUPS`, a comma list; default all; `full` = full-360p,full-1080p):

- full-360p, full-1080p -> cases full/<clip>/...: every frame, no pixel conversion (what `ffmpeg -f null` does): PyAV 1 thread
  (the group's reference), PyAV threaded (AUTO), OpenCV grab(), `ffmpeg -threads <cores> -f null -`,
  ours (warm pool of <cores> single-threaded workers, native frames lent as read-only views of
  the shared-memory ring, `borrow=True`), and once ours-copy (each frame copied out, the default)
  and ours-cold (private pool: spawn cost and head-thread time to first frame included).
- uniform64, fps1-448 -> uniform64/<clip>/..., fps1-448/<clip>/...: sampling; references are the best sequential strategies we
  know: PyAV seeking to each target (continuing forward instead when the target is close) and
  OpenCV seeking by time. Output rgb24 (448 px short side for fps1-448). uniform64 runs on a
  long-GOP clip (GOP 250: nearly every GOP holds a target) and a short-GOP one (GOP 30).
- overlap -> overlap/<clip>/...: a consumer spending a fixed torch workload per frame (one thread), decoding with
  one worker process: decode only, compute only, both overlapped, and both in one loop (the sum).

Per case: frames/s (harness), ttff_s (time to first frame), cpu_s (this process, reaped children
and pool workers), x_ref (reference seconds / case seconds, measured in the same round) and, for
full decode, x_ffmpeg; overlap reports overlap_vs_max = both / max(decode, compute) of the round;
sampled cases report frames_decoded (frames the decoders returned: the decoding work done).

The last case, `targets`, reports the issue's four targets, each computed within one round (same
round = same machine state) and summarised over the repeats like any other figure:
  full1080_x_ffmpeg:<clip>      ffmpeg CLI seconds / ours seconds, full 1080p decode   (>= 0.9)
  uniform64_x_best_seq:<clip>   best of pyav-seek/opencv-seek seconds / ours seconds  (>= 3)
  ttff_s:<case>                 time to first frame of our decoder on files            (<= 0.1 s)
  overlap_vs_max:<clip>         both / max(decode-only, compute-only)                  (<= 1.15)
`config.targets` in the JSON says the same. Example, one group at a time:
  STREAMRT_BENCH_DECODE_GROUPS=full-1080p streamrt bench decode --json full1080.json
  STREAMRT_BENCH_DECODE_GROUPS=uniform64 streamrt bench decode --repeats 3 --json u64.json
Results of the last run and the machine's load: docs/ingest.md.
What this module does not know: how the decoder works; it only drives the public API.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from streamrt.bench.harness import Bench, register

GROUPS = ("full-360p", "full-1080p", "uniform64", "fps1-448", "overlap")
ALIASES = {"full": ("full-360p", "full-1080p")}
TARGETS = {
    "full1080_x_ffmpeg": ">= 0.9: full decode of 1920x1080 H.264, ffmpeg CLI seconds / ours seconds",
    "uniform64_x_best_seq": ">= 3: 64 uniform frames of a 10 min clip (1 min in --quick: 10 s), "
    "best sequential baseline seconds (pyav-seek, opencv-seek) / ours seconds",
    "ttff_s": "<= 0.1: seconds from opening the file to its first frame (ours: warm pool; ours-cold: "
    "spawns its workers; sampled decoding first builds the whole packet index)",
    "overlap_vs_max": "<= 1.15: decoding while the consumer computes, seconds / max(decode only, compute only)",
}
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cache_dir() -> Path:
    d = Path(os.environ.get("STREAMRT_BENCH_CACHE", "~/.cache/streamrt/bench")).expanduser() / "decode"
    d.mkdir(parents=True, exist_ok=True)
    return d


def make_clip(w: int, h: int, seconds: int, gop: int, source: str = "testsrc2") -> Path:
    """640x360 / 1920x1080 H.264 with B-frames (x264 default: 3), fixed GOP; cached by name."""
    path = cache_dir() / f"{source}-{w}x{h}-{seconds}s-g{gop}.mp4"
    if path.exists():
        return path
    tmp = path.with_suffix(".part.mp4")
    if source == "shapes":
        from streamrt.synth import World, WorldConfig, write_video

        world = World(WorldConfig(seed=7, width=w, height=h, fps=30.0))
        write_video(
            tmp, world, seconds, gop=gop, bframes=3, progress=True, timeline=path.with_suffix(".events.jsonl")
        )
    else:
        subprocess.run(
            [
                "ffmpeg",
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"testsrc2=size={w}x{h}:rate=30",
                "-t",
                str(seconds),
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-bf",
                "3",
                "-g",
                str(gop),
                "-keyint_min",
                str(gop),
                "-sc_threshold",
                "0",
                "-pix_fmt",
                "yuv420p",
                str(tmp),
            ],
            check=True,
        )
    tmp.rename(path)
    return path


# ------------------------------------------------------------------ measuring helpers


def _proc_cpu(pid: int | str) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().split(")")[-1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0


def _cpu_now(pids: list[int]) -> float:
    import resource

    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return _proc_cpu("self") + ch.ru_utime + ch.ru_stime + sum(_proc_cpu(p) for p in pids)


class _Round:
    """Seconds (and ttff) of the latest run of each case, so a case can compare itself with its
    reference of the same round (cases of a group run one after another, reference first)."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.ttff: dict[str, float] = {}


def _case(
    rnd: _Round,
    name: str,
    fn: Callable[[], float | dict[str, float] | None],
    pids: Callable[[], list[int]],
    refs: dict[str, str],
) -> Callable[[], dict[str, float]]:
    """Wrap `fn` (returns ttff, a dict of figures with ttff_s, or None): adds seconds bookkeeping,
    cpu_s, ttff_s and x_<ref> ratios."""

    def run() -> dict[str, float]:
        p = pids()
        c0, t0 = _cpu_now(p), time.perf_counter()
        got = fn()
        dt = time.perf_counter() - t0
        out = {"cpu_s": _cpu_now(p) - c0}
        out.update(got if isinstance(got, dict) else {} if got is None else {"ttff_s": got})
        if "ttff_s" in out:
            rnd.ttff[name] = out["ttff_s"]
        rnd.last[name] = dt
        for label, ref in refs.items():
            if ref in rnd.last and ref != name:
                out[f"x_{label}"] = rnd.last[ref] / dt
        return out

    return run


# ------------------------------------------------------------------ the contenders


def pyav_full(path: Path, auto: bool) -> float:
    import av

    t0 = time.perf_counter()
    ttff = None
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        if auto:
            s.thread_type = "AUTO"
        else:
            s.codec_context.thread_count = 1
        for _ in c.decode(s):
            ttff = ttff or time.perf_counter() - t0
    return ttff or 0.0


def opencv_full(path: Path) -> float:
    import cv2

    t0 = time.perf_counter()
    cap = cv2.VideoCapture(str(path))
    ttff = None
    while cap.grab():  # decodes, skips the BGR conversion (retrieve)
        ttff = ttff or time.perf_counter() - t0
    cap.release()
    return ttff or 0.0


def ffmpeg_null(path: Path) -> None:
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-threads",
            str(CORES),
            "-i",
            str(path),
            "-map",
            "0:v",
            "-f",
            "null",
            "-",
        ],
        check=True,
    )


def ours(path: Path, pool, **kw) -> dict[str, float]:
    from streamrt.ingest import FileDecoder

    t0 = time.perf_counter()
    ttff = None
    with FileDecoder(str(path), pool=pool, **kw) as d:  # ttff includes opening the file
        for _ in d:
            ttff = ttff or time.perf_counter() - t0
    out = {"ttff_s": ttff or 0.0}
    if "sampling" in kw:
        out["frames_decoded"] = d.report.frames_decoded
    return out


def _rgb(fr, short_side: int | None):
    if short_side:
        s = short_side / min(fr.width, fr.height)
        w, h = max(2, round(fr.width * s / 2) * 2), max(2, round(fr.height * s / 2) * 2)
        return fr.reformat(w, h, "rgb24", interpolation="BILINEAR").to_ndarray()
    return fr.to_ndarray(format="rgb24")


def pyav_seek(path: Path, times, short_side: int | None, near_s: float = 0.5) -> dict[str, float]:
    """Best sequential strategy without an index: seek to each target unless it is within near_s."""
    import av

    t0 = time.perf_counter()
    ttff = None
    decoded = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.codec_context.thread_count = 1
        tb, start = float(s.time_base), (s.start_time or 0)
        it = None
        pos = -1.0
        prev = None
        for t in times:
            target = start + int(t / tb + 1e-6)
            if it is None or t - pos > near_s or t < pos:
                c.seek(target, stream=s, backward=True)
                it, prev = c.decode(s), None
            for fr in it:
                decoded += 1
                if fr.pts > target:
                    pending = fr
                    break
                prev = fr
            else:
                pending = None
            if prev is not None:
                _rgb(prev, short_side)
                ttff = ttff or time.perf_counter() - t0
            if pending is not None:
                prev = pending
                pos = float((pending.pts - start) * tb)
    return {"ttff_s": ttff or 0.0, "frames_decoded": decoded}


def opencv_seek(path: Path, times) -> float:
    import cv2

    t0 = time.perf_counter()
    ttff = None
    cap = cv2.VideoCapture(str(path))
    for t in times:
        cap.set(cv2.CAP_PROP_POS_MSEC, t * 1000.0)
        ok, _ = cap.read()
        if ok:
            ttff = ttff or time.perf_counter() - t0
    cap.release()
    return ttff or 0.0


# ------------------------------------------------------------------ overlap


def _work(reps: int) -> Callable[[object], None]:
    import torch

    m = torch.randn(128, 128)

    def compute(px) -> None:
        x = torch.from_numpy(px[: 128 * 128]).float().view(128, 128)  # a slice of the frame: [128, 128]
        for _ in range(reps):
            x = torch.tanh(x @ m)

    return compute


def _calibrate(per_frame_s: float) -> int:
    """Repetitions of the torch work that take about `per_frame_s` per frame (median of 5 probes)."""
    import statistics

    import numpy as np

    px = np.zeros(128 * 128 * 2, np.uint8)
    f = _work(32)
    probes = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(20):
            f(px)
        probes.append((time.perf_counter() - t) / (20 * 32))
    return max(1, round(per_frame_s / statistics.median(probes)))


# ------------------------------------------------------------------ the benchmark


@register("decode", "parallel file decoding vs PyAV, OpenCV and the ffmpeg CLI (full, sampled, overlap)")
def bench_decode(bench: Bench) -> None:
    import av
    import torch

    from streamrt.ingest import DecodePool, EveryFps, PixelSpec, Uniform
    from streamrt.ingest.sampling import request_times

    have_ffmpeg = shutil.which("ffmpeg") is not None
    if not have_ffmpeg:
        raise SystemExit("streamrt bench decode needs the ffmpeg CLI (apt-get install -y ffmpeg)")
    q = bench.quick
    asked = {g.strip() for g in os.environ.get("STREAMRT_BENCH_DECODE_GROUPS", ",".join(GROUPS)).split(",")}
    if asked - set(GROUPS) - set(ALIASES):
        raise SystemExit(
            f"STREAMRT_BENCH_DECODE_GROUPS: unknown {sorted(asked - set(GROUPS) - set(ALIASES))}; "
            f"known: {', '.join(GROUPS)} (full = full-360p,full-1080p)"
        )
    groups = {x for g in asked for x in ALIASES.get(g, (g,))}
    per_frame = None
    if q:
        full_clips = [make_clip(640, 360, 10, 30), make_clip(1920, 1080, 2, 30)]
        sparse_clip = make_clip(640, 360, 10, 250)
        fps_clip = make_clip(640, 360, 10, 30)
        overlap_clip = make_clip(640, 360, 10, 30)
    else:
        shapes = []
        try:
            shapes = [make_clip(640, 360, 60, 250, source="shapes")]
        except ImportError:
            pass
        full_clips = [
            make_clip(640, 360, 60, 250),
            *shapes,
            # 1080p clips are 20 s, not 1 min: 5 contenders x 3 rounds of a 1-min 1080p decode take
            # ~10 min alone on a 2-core machine; throughput does not depend on the length
            make_clip(1920, 1080, 20, 30),
            make_clip(1920, 1080, 20, 250),
        ]
        sparse_clip = make_clip(640, 360, 600, 250)
        fps_clip = make_clip(640, 360, 600, 30)
        overlap_clip = make_clip(640, 360, 60, 250)

    pool = DecodePool(CORES)
    pool1 = DecodePool(1)
    atexit.register(pool.close)
    atexit.register(pool1.close)
    while len(pool.ready) < pool.workers or len(pool1.ready) < 1:  # warm: spawn cost is not per decode
        pool.poll(0.1)
        pool1.poll(0.1)
    rnd = _Round()
    no_pids: Callable[[], list[int]] = list
    pids = pool.pids
    native = PixelSpec(format="native")
    nframes = {}

    def frames_of(p: Path) -> int:
        if p not in nframes:
            with av.open(str(p)) as c:
                nframes[p] = sum(1 for pk in c.demux(c.streams.video[0]) if pk.size)
        return nframes[p]

    def duration(p: Path) -> float:
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            return float(s.duration * s.time_base)

    clip_names = {}
    for p in {*full_clips, sparse_clip, fps_clip, overlap_clip}:
        clip_names[p] = p.stem.replace("testsrc2-", "").replace("shapes-", "shapes-")

    # full decode
    full_run = [p for p in full_clips if f"full-{'1080p' if '1080' in p.name else '360p'}" in groups]
    for i, p in enumerate(full_run):
        g = f"full/{clip_names[p]}"
        n = frames_of(p)
        refs = {"ref": f"{g}/pyav-1t", "ffmpeg": f"{g}/ffmpeg-cli"}
        cases: list[tuple[str, Callable[[], float | None], Callable[[], list[int]], str]] = [
            ("pyav-1t", lambda p=p: pyav_full(p, auto=False), no_pids, "PyAV, 1 decoder thread"),
            (
                "pyav-auto",
                lambda p=p: pyav_full(p, auto=True),
                no_pids,
                "PyAV thread_type AUTO (frame+slice threads)",
            ),
            (
                "opencv",
                lambda p=p: opencv_full(p),
                no_pids,
                "cv2.VideoCapture.grab(), OpenCV's own threading",
            ),
            (
                "ffmpeg-cli",
                lambda p=p: ffmpeg_null(p),
                no_pids,
                f"ffmpeg -threads {CORES} -f null - (reference limit)",
            ),
            (
                "ours",
                lambda p=p: ours(p, pool, pixels=native, borrow=True),
                pids,
                f"{CORES} worker processes (warm pool), native frames lent as views of the ring (no copy here)",
            ),
        ]
        if i == 0:
            cases.append(
                (
                    "ours-copy",
                    lambda p=p: ours(p, pool, pixels=native),
                    pids,
                    "as ours, each frame copied out of the ring (the default, borrow=False)",
                )
            )
            cases.append(
                (
                    "ours-cold",
                    lambda p=p: ours(p, None, pixels=native, workers=CORES),
                    no_pids,
                    "private pool: includes spawning the workers (cpu_s excludes them)",
                )
            )
        for name, fn, pid_fn, note in cases:
            full = f"{g}/{name}"
            bench.case(full, _case(rnd, full, fn, pid_fn, refs), work=n, unit="frames", note=note)

    # sparse sampling: 64 uniform frames, on a long-GOP clip (nearly every GOP holds a target: the
    # gain comes from skipping unwanted non-reference frames) and a short-GOP one (most GOPs skipped)
    rgb = PixelSpec(format="rgb24")
    for clip in (sparse_clip, fps_clip) if "uniform64" in groups else ():
        times64 = request_times(Uniform(64), duration(clip))
        g = f"uniform64/{clip_names[clip]}"
        refs = {"ref": f"{g}/pyav-seek"}
        sparse_cases = [
            (
                "pyav-seek",
                lambda clip=clip, times64=times64: pyav_seek(clip, times64, None),
                no_pids,
                "seek per target, 1 thread, rgb24",
            ),
            (
                "opencv-seek",
                lambda clip=clip, times64=times64: opencv_seek(clip, times64),
                no_pids,
                "CAP_PROP_POS_MSEC per target, BGR",
            ),
            (
                "ours",
                lambda clip=clip: ours(clip, pool, sampling=Uniform(64), pixels=rgb),
                pids,
                "GOPs without a target skipped, unwanted non-reference frames not decoded, rgb24",
            ),
        ]
        if q or clip is fps_clip:  # OpenCV re-decodes from the keyframe for every target: slow
            del sparse_cases[1]
        for name, fn, pid_fn, note in sparse_cases:
            bench.case(
                f"{g}/{name}", _case(rnd, f"{g}/{name}", fn, pid_fn, refs), work=64, unit="frames", note=note
            )

    # 1 fps sampling to 448 px
    if "fps1-448" in groups:
        times1 = request_times(EveryFps(1.0), duration(fps_clip))
        g = f"fps1-448/{clip_names[fps_clip]}"
        refs = {"ref": f"{g}/pyav-seek"}
        s448 = PixelSpec(format="rgb24", short_side=448)
        for name, fn, pid_fn, note in [
            (
                "pyav-seek",
                lambda: pyav_seek(fps_clip, times1, 448),
                no_pids,
                "seek or decode forward, 1 thread, resize in swscale",
            ),
            (
                "ours",
                lambda: ours(fps_clip, pool, sampling=EveryFps(1.0), pixels=s448),
                pids,
                "resize in the workers",
            ),
        ]:
            bench.case(
                f"{g}/{name}",
                _case(rnd, f"{g}/{name}", fn, pid_fn, refs),
                work=len(times1),
                unit="frames",
                note=note,
            )

    # overlap: decode (1 worker) while the consumer computes (1 torch thread)
    if "overlap" in groups:
        n = frames_of(overlap_clip)
        torch.set_num_threads(1)
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            ours(overlap_clip, pool1, pixels=native)
            runs.append(time.perf_counter() - t)
        per_frame = sorted(runs)[1] / n
        compute = _work(_calibrate(per_frame))  # compute per frame ~ decode per frame: the hardest case
        import numpy as np

        dummy = np.zeros(640 * 360 * 3 // 2, np.uint8)  # a native 640x360 yuv420p frame
        g = f"overlap/{clip_names[overlap_clip]}"

        def both() -> float:
            from streamrt.ingest import FileDecoder

            t0 = time.perf_counter()
            ttff = None
            with FileDecoder(str(overlap_clip), pool=pool1, pixels=native) as d:
                for f in d:
                    ttff = ttff or time.perf_counter() - t0
                    compute(f.pixels)
            return ttff or 0.0

        def seq_sum() -> float:
            with av.open(str(overlap_clip)) as c:
                s = c.streams.video[0]
                s.codec_context.thread_count = 1
                for fr in c.decode(s):
                    compute(fr.to_ndarray().reshape(-1))
            return 0.0

        def compute_only() -> None:
            for _ in range(n):
                compute(dummy)

        def both_wrapped() -> dict[str, float]:
            out = _case(rnd, f"{g}/both", both, pool1.pids, {})()
            dec, comp = rnd.last.get(f"{g}/decode-only"), rnd.last.get(f"{g}/compute-only")
            if dec and comp:
                out["overlap_vs_max"] = rnd.last[f"{g}/both"] / max(dec, comp)
                out["sum_vs_max"] = (dec + comp) / max(dec, comp)
            return out

        bench.case(
            f"{g}/decode-only",
            _case(rnd, f"{g}/decode-only", lambda: ours(overlap_clip, pool1, pixels=native), pool1.pids, {}),
            work=n,
            unit="frames",
            note="1 worker, nothing done with the frames",
        )
        bench.case(
            f"{g}/compute-only",
            _case(rnd, f"{g}/compute-only", compute_only, no_pids, {}),
            work=n,
            unit="frames",
            note="the per-frame torch work alone (1 thread)",
        )
        bench.case(
            f"{g}/both",
            both_wrapped,
            work=n,
            unit="frames",
            note="1 worker decodes while the consumer computes",
        )
        bench.case(
            f"{g}/one-loop",
            _case(rnd, f"{g}/one-loop", seq_sum, no_pids, {}),
            work=n,
            unit="frames",
            note="PyAV decode and compute in one loop (no overlap)",
        )

    def targets() -> dict[str, float]:
        """This round's values of the issue's four targets (see TARGETS), from the cases above."""
        out = {}
        last = rnd.last
        for p in full_run:
            g = f"full/{clip_names[p]}"
            if "1080" in p.name and f"{g}/ours" in last and f"{g}/ffmpeg-cli" in last:
                out[f"full1080_x_ffmpeg:{clip_names[p]}"] = last[f"{g}/ffmpeg-cli"] / last[f"{g}/ours"]
        for p in (sparse_clip, fps_clip) if "uniform64" in groups else ():
            g = f"uniform64/{clip_names[p]}"
            seq = [last[f"{g}/{c}"] for c in ("pyav-seek", "opencv-seek") if f"{g}/{c}" in last]
            if seq and f"{g}/ours" in last:
                out[f"uniform64_x_best_seq:{clip_names[p]}"] = min(seq) / last[f"{g}/ours"]
        for name, ttff in rnd.ttff.items():
            if name.endswith(("/ours", "/ours-cold")):
                out[f"ttff_s:{name}"] = ttff
        if "overlap" in groups:
            g = f"overlap/{clip_names[overlap_clip]}"
            dec, comp, both = (last.get(f"{g}/{c}") for c in ("decode-only", "compute-only", "both"))
            if dec and comp and both:
                out[f"overlap_vs_max:{clip_names[overlap_clip]}"] = both / max(dec, comp)
        return out

    if groups & {"full-1080p", "uniform64", "overlap"} or full_run:
        bench.case(
            "targets",
            targets,
            work=1,
            unit="rounds",
            note="the issue's targets, each computed within the round (see config.targets); takes no time",
        )
    bench.config = {
        "targets": TARGETS,
        "cores": CORES,
        "clips": {clip_names[p]: {"frames": frames_of(p), "path": str(p)} for p in clip_names},
        "groups": sorted(groups),
        "overlap_compute_per_frame_s": per_frame,
        "thread_budget": f"{CORES} (ours: {CORES} single-threaded workers; ffmpeg -threads {CORES}; PyAV AUTO)",
    }
