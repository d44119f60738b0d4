"""`streamrt bench vlm-quality`: commentary and QA quality of a VLM on held-out shapes-world streams.

One case: the model (the built-in one unless the environment variable STREAMRT_BENCH_MODEL names
another path or hub id) runs greedy over held-out seeds (below the training seed range, so never
seen in training), chunk by chunk through a StreamCache, and is scored against the world's ground
truth (`streamrt.models.vlm.evaluate`): event F1 (time-aligned and whole-stream), QA accuracy per
question type, silence precision/recall. The scores are deterministic; the harness's repeats only
time the run, so use `--repeats 1 --warmup 0`. Full: 10 streams x 60 chunks (10 minutes of stream);
quick: 2 x 20.
"""

from __future__ import annotations

import os

from streamrt.bench.harness import Bench, register

MODEL_ENV = "STREAMRT_BENCH_MODEL"


@register("vlm-quality", "VLM commentary event F1, QA accuracy, silence precision on held-out streams")
def bench_vlm_quality(bench: Bench) -> None:
    import torch

    from streamrt.models.vlm import load_adapter
    from streamrt.models.vlm.evaluate import evaluate

    name = os.environ.get(MODEL_ENV, "builtin")
    adapter = load_adapter(name, device="cpu", dtype=torch.float32)
    seeds, chunks = ([0, 1], 20) if bench.quick else (list(range(10)), 60)
    bench.config = {
        "model": name,
        "seeds": seeds,
        "chunks_per_stream": chunks,
        "fps": adapter.fps,
        "frames_per_chunk": adapter.frames_per_chunk,
        "world": "synth preset demo (640x360), held-out seeds",
        "decoding": "greedy",
    }
    bench.case(
        "quality",
        lambda: evaluate(adapter, seeds, chunks).figures(),
        work=len(seeds) * chunks,
        unit="chunks",
        baseline=True,
        note="scores are in the extra figures",
    )
