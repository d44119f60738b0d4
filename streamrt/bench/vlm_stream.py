"""`streamrt bench vlm-stream`: the understanding engine on a long generated stream, with and without
differential token drop.

Stream: the shapes world the built-in model is trained on (`demo` preset, a held-out seed), sampled at
the model's fps and rendered at 320x180 on the fly by the engine's feeder thread (no video file: this
measures the engine, not the decoder); one hour (quick: two minutes). Model: $STREAMRT_BENCH_VLM_MODEL
when set, else the built-in model when it is installed, else the same architecture with random
weights (the note says which). Both cases
run at full speed with the "exact" engine preset (deadlines recorded, never cutting a response), so
the two runs differ only by the token drop.

Per case: frames/s (work = frames), real-time factor, per-chunk latency p50/p99 in the first and last
window (ten minutes, or a quarter of a shorter stream) and their p99 ratio, RSS at the end of the
first and the last window, share of visual tokens dropped overall and on still scenes (chunks whose
frames are all inside a still period), and agreement with the no-drop run: the share of its
commentary events (parsed with the shapes-world grammar, per chunk) that the drop run says in the
same chunk (and how many events that is), the share of chunks where the response policy made the
same speak/silent decision, and the share of chunks whose whole output is identical. These compare
two closed loops: after one different word the two runs read different histories. The case "token
drop T, open loop" isolates the drop: the same world and policy through `evaluate`'s loop (the
engine's encoder and policy, checked against `StreamRun` in tests), the drop run kept on the no-drop
run's text history (`follow=`), so each chunk's output differs only by the tokens dropped in it.
When to speak: the model's calibrated response policy (the engine's default, `EngineConfig.for_model`)
unless $STREAMRT_BENCH_VLM_POLICY gives another as a spec ("greedy", "silence:T", "change:C", joined
with "&": see `streamrt bench vlm-calibrate`); the config names the policy used.
Targets (issue 5): >= 10x real time at 2 fps on 2 cores with the built-in model; last-window p99
within 15% of the first; >= 80% of visual tokens dropped on still scenes with >= 95% of commentary
events unchanged. Full run: `streamrt bench vlm-stream --repeats 1 --warmup 0 --threads 1`;
$STREAMRT_BENCH_VLM_SECONDS sets another stream length, $STREAMRT_BENCH_VLM_THRESHOLDS (comma-separated,
default 0.9) the token-drop thresholds compared with no drop.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from streamrt.bench.harness import Bench, register
from streamrt.bench.vlm_quality import MODEL_ENV, parse_policy
from streamrt.engine import ChunkDone, EngineConfig, ResponseEnd, SilenceArgmax, StreamRun
from streamrt.engine.stats import percentile
from streamrt.synth import SynthFrame, World, WorldConfig, parse

SEED = 4242  # held out: training worlds use seeds >= 1_000_000
RENDER = (320, 180)


def load_model():
    """(adapter, description): $STREAMRT_BENCH_VLM_MODEL if set (a model directory or hub id), else the
    built-in model, else its architecture with random weights."""
    from streamrt.models.vlm import AdapterError, load_adapter

    chosen = os.environ.get(MODEL_ENV)
    if chosen:
        return load_adapter(chosen), chosen
    try:
        return load_adapter("builtin"), "built-in model"
    except AdapterError:
        from streamrt.models.vlm.train import init_run

        tmp = Path(tempfile.mkdtemp(prefix="streamrt-bench-vlm-"))
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        init_run(tmp, seed=0)
        return load_adapter(
            str(tmp)
        ), "built-in architecture with RANDOM weights (assets/vlm/builtin missing)"


def stream(fps: float, seconds: float, still: set[int]) -> Iterator[SynthFrame]:
    """The held-out world sampled at `fps` for `seconds`; records the grid index of still frames."""
    cfg = WorldConfig.preset("demo", seed=SEED)
    stride = round(cfg.fps / fps)
    for i, f in enumerate(itertools.islice(World(cfg).frames(*RENDER, stride=stride), round(seconds * fps))):
        if f.scene.still:
            still.add(i)
        yield f


@register(
    "vlm-stream", "understanding engine on a long stream: speed, flat latency/RSS, token drop vs no drop"
)
def bench_vlm_stream(bench: Bench) -> None:
    adapter, which = load_model()
    seconds = float(os.environ.get("STREAMRT_BENCH_VLM_SECONDS", 120.0 if bench.quick else 3600.0))
    window = min(600.0, seconds / 4)
    fps, fpc = adapter.fps, adapter.frames_per_chunk
    frames = round(seconds * fps)
    spec = os.environ.get("STREAMRT_BENCH_VLM_POLICY")
    chosen = parse_policy(spec) if spec else EngineConfig.preset("exact", model=adapter).response
    policy = SilenceArgmax() if chosen is None else chosen  # "greedy": speak unless silence is the argmax
    bench.config = {
        "model": which,
        "stream_s": seconds,
        "fps": fps,
        "frames_per_chunk": fpc,
        "render": f"{RENDER[0]}x{RENDER[1]}",
        "window_s": window,
        "world": f"demo preset, seed {SEED}",
        "engine": "exact preset (full speed, deadlines recorded not enforced)",
        "response_policy": repr(policy) + ("" if spec else " (the model's calibrated default)"),
    }
    reference: dict[int, tuple[bool, str]] = {}

    def run(threshold: float | None) -> dict[str, float]:
        still: set[int] = set()
        cfg = EngineConfig.preset("exact", drop_threshold=threshold, response=policy)
        r = StreamRun(adapter, stream(fps, seconds, still), cfg)
        chunks: list[ChunkDone] = []
        said: dict[int, tuple[bool, str]] = {}
        t_to_chunk: dict[float, int] = {}
        for o in r:
            if isinstance(o, ChunkDone):
                chunks.append(o)
                t_to_chunk[o.t_end] = o.index
                said[o.index] = (o.spoke, "")
            elif isinstance(o, ResponseEnd) and o.kind == "commentary":
                k = t_to_chunk[o.t]
                said[k] = (True, o.text)
        s = r.summary()
        lat = np.array([c.output - c.capture for c in chunks])
        t_end = np.array([c.t_end for c in chunks])
        first, last = lat[t_end <= window], lat[t_end > seconds - window]
        rss = [(t, b) for t, b in r.stats.rss]
        rss_first = max(b for t, b in rss if t <= window)
        rss_last = max(b for t, b in rss if t > seconds - window)
        still_chunks = [
            c for c in chunks if all(i in still for i in range(c.index * fpc, (c.index + 1) * fpc))
        ]
        st_total = sum(c.tokens_total for c in still_chunks)
        out = {
            "realtime_factor": s.realtime_factor,
            "chunk_p50_first_ms": 1000 * percentile(list(first), 50),
            "chunk_p99_first_ms": 1000 * percentile(list(first), 99),
            "chunk_p50_last_ms": 1000 * percentile(list(last), 50),
            "chunk_p99_last_ms": 1000 * percentile(list(last), 99),
            "p99_last_over_first": percentile(list(last), 99) / percentile(list(first), 99),
            "rss_first_window_mib": rss_first / 2**20,
            "rss_last_window_mib": rss_last / 2**20,
            "tokens_dropped_share": s.drop_share,
            "still_tokens_dropped_share": (
                1 - sum(c.tokens_kept for c in still_chunks) / st_total if st_total else float("nan")
            ),
            "commentaries": float(s.commentaries),
        }
        if threshold is None:
            reference.clear()
            reference.update(said)
        elif reference:
            ref_events = Counter((k, m) for k, (_, text) in reference.items() for m in parse(text))
            got_events = Counter((k, m) for k, (_, text) in said.items() for m in parse(text))
            n = sum(ref_events.values())
            out["events_unchanged_share"] = sum((ref_events & got_events).values()) / n if n else float("nan")
            out["reference_events"] = float(n)
            out["decisions_agree_share"] = sum(
                said.get(k, (None,))[0] == spoke for k, (spoke, _) in reference.items()
            ) / len(reference)
            out["chunks_identical_share"] = sum(said.get(k) == v for k, v in reference.items()) / len(
                reference
            )
        return out

    bench.case("no drop", lambda: run(None), work=frames, unit="frames", baseline=True, note=which)
    for thr in (float(x) for x in os.environ.get("STREAMRT_BENCH_VLM_THRESHOLDS", "0.9").split(",")):
        bench.case(
            f"token drop {thr:g}",
            lambda thr=thr: run(thr),
            work=frames,
            unit="frames",
            note="agreement figures compare with the no-drop run of the same repeat",
        )
        bench.case(
            f"token drop {thr:g}, open loop",
            lambda thr=thr: open_loop(adapter, policy, round(seconds * fps / fpc), thr),
            work=frames,
            unit="frames",
            note="per chunk against the no-drop output on its text history; the time is two evaluation passes, not a speed",
        )


def open_loop(adapter, policy, chunks: int, threshold: float) -> dict[str, float]:
    """Agreement of the drop run with the no-drop run on the bench's world when both read the no-drop
    run's history (`evaluate(..., follow=)`); no questions, as in the engine cases."""
    from streamrt.models.vlm.evaluate import evaluate

    ref = evaluate(adapter, [SEED], chunks, question_rate=0.0, policy=policy)
    run = evaluate(
        adapter, [SEED], chunks, question_rate=0.0, policy=policy, drop_threshold=threshold, follow=ref
    )
    f = run.figures()
    keys = ("events_unchanged_share", "reference_events", "decisions_agree_share", "chunks_identical_share")
    return {k: f[k] for k in keys}
