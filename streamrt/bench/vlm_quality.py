"""`streamrt bench vlm-quality` and `streamrt bench vlm-calibrate`: commentary and QA quality of a VLM
on shapes-world streams, and the calibration of when it speaks.

vlm-quality: the model (the built-in one unless the environment variable STREAMRT_BENCH_VLM_MODEL names
another path or hub id) runs over held-out seeds (below the training seed range, so never seen in
training), chunk by chunk through a StreamCache, and is scored against the world's ground truth
(`streamrt.models.vlm.evaluate`): event F1 (time-aligned and whole-stream), QA accuracy per question
type, silence precision/recall. Four cases: "greedy" (speak unless silence is the argmax: the model
card's historical figures), "engine policy" (the response policy the engine's default preset uses
for this model, `EngineConfig.for_model`; the config names it), "engine policy + token drop" (that
policy with the default preset's differential token drop, i.e. what `streamrt replay` runs), and
"token drop, open loop": the drop run kept on the "engine policy" run's text history (`evaluate`'s
`follow=`), so its agreement figures (events unchanged, same decision, identical chunk output,
identical answers) measure what the drop changes in each chunk, not how two closed loops drift apart
after their first different word. The scores are deterministic; the
harness's repeats only time the run, so use `--repeats 1 --warmup 0`. Full: 10 streams x 60 chunks
(10 minutes of stream); quick: 2 x 20.

vlm-calibrate: the same scoring on TRAINING seeds (>= TRAIN_SEED_BASE; never the held-out ones), with
the engine's default differential token drop (what the engine runs), one case per candidate response
policy, each run closed-loop (later chunks see what the policy made the
model say). The "greedy" case adds how well P(silence) and the scene change separate chunks with
events from quiet ones (ROC AUC, open loop). Candidates: $STREAMRT_BENCH_VLM_POLICIES, comma-separated
specs: "greedy", "silence:T" (speak when P(silence) < T), "change:C" (speak when the scene change
> C), joined with "&" for "all of" (e.g. "change:5e-5&silence:0.5"). Full: 6 streams x 60 chunks;
quick: 2 x 20. Streams: TRAIN_SEED_BASE + $STREAMRT_BENCH_VLM_CALIB_FIRST (default 100) and the next
ones (a second block of training seeds confirms a choice made on the first).
"""

from __future__ import annotations

import os

from streamrt.bench.harness import Bench, register

MODEL_ENV = "STREAMRT_BENCH_VLM_MODEL"
POLICIES_ENV = "STREAMRT_BENCH_VLM_POLICIES"
CANDIDATES = "greedy,silence:0.5,silence:0.1,change:2e-5,change:5e-5,change:1e-4,change:5e-5&silence:0.5"
"""Default calibration candidates: plain greedy, the generic threshold and a stricter one, three scene
change gates around the quiet chunks' median change, and a gate combined with the generic threshold."""
CALIB_FIRST_ENV = "STREAMRT_BENCH_VLM_CALIB_FIRST"
CALIBRATION_OFFSET = 100
"""Calibration streams are TRAIN_SEED_BASE + 100, 101, ... (worlds inside the trainer's seed range)."""


def parse_policy(spec: str):  # -> ResponsePolicy | None (engine imported lazily)
    """A candidate spec (module docstring) -> the engine policy; None for "greedy"."""
    from streamrt.engine.policy import AllOf, SceneChange, SilenceThreshold

    if spec == "greedy":
        return None
    parts = []
    for item in spec.split("&"):
        name, _, arg = item.partition(":")
        cls = {"silence": SilenceThreshold, "change": SceneChange}.get(name)
        try:
            if cls is None:
                raise ValueError
            parts.append(cls(float(arg)))
        except ValueError:
            raise ValueError(
                f"bad policy spec {spec!r}: use greedy, silence:T, change:C joined by &"
            ) from None
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _adapter():
    import torch

    from streamrt.models.vlm import load_adapter

    name = os.environ.get(MODEL_ENV, "builtin")
    return name, load_adapter(name, device="cpu", dtype=torch.float32)


@register("vlm-quality", "VLM commentary event F1, QA accuracy, silence precision on held-out streams")
def bench_vlm_quality(bench: Bench) -> None:
    from streamrt.engine import EngineConfig
    from streamrt.models.vlm.evaluate import evaluate

    name, adapter = _adapter()
    engine = EngineConfig.preset("default", model=adapter)
    policy, drop = engine.response, engine.drop_threshold
    seeds, chunks = ([0, 1], 20) if bench.quick else (list(range(10)), 60)
    bench.config = {
        "model": name,
        "seeds": seeds,
        "chunks_per_stream": chunks,
        "fps": adapter.fps,
        "frames_per_chunk": adapter.frames_per_chunk,
        "world": "synth preset demo (640x360), held-out seeds",
        "decoding": "greedy",
        "greedy case": "speak unless silence is the argmax (plain greedy decoding)",
        "engine policy case": repr(policy),
        "token drop case": f"the engine policy and differential token drop at {drop}",
    }
    bench.case(
        "greedy",
        lambda: evaluate(adapter, seeds, chunks).figures(),
        work=len(seeds) * chunks,
        unit="chunks",
        baseline=True,
        note="scores are in the extra figures",
    )
    reference = {}

    def engine_policy() -> dict[str, float]:
        reference["run"] = evaluate(adapter, seeds, chunks, policy=policy)
        return reference["run"].figures()

    bench.case(
        "engine policy",
        engine_policy,
        work=len(seeds) * chunks,
        unit="chunks",
        note=f"when to speak: {policy!r} (the engine's default preset for this model)",
    )
    bench.case(
        "engine policy + token drop",
        lambda: evaluate(adapter, seeds, chunks, policy=policy, drop_threshold=drop).figures(),
        work=len(seeds) * chunks,
        unit="chunks",
        note=f"as the engine's default: that policy and differential token drop at {drop}",
    )
    bench.case(
        "token drop, open loop",
        lambda: evaluate(
            adapter, seeds, chunks, policy=policy, drop_threshold=drop, follow=reference["run"]
        ).figures(),
        work=len(seeds) * chunks,
        unit="chunks",
        note="the drop run on the engine-policy run's text history: per-chunk agreement with it",
    )


@register("vlm-calibrate", "VLM response policies (when to speak) scored on TRAINING seeds, closed loop")
def bench_vlm_calibrate(bench: Bench) -> None:
    from streamrt.engine import EngineConfig
    from streamrt.models.vlm.evaluate import evaluate, separation_auc
    from streamrt.models.vlm.shapes_data import TRAIN_SEED_BASE

    name, adapter = _adapter()
    drop = EngineConfig.preset("default", model=adapter).drop_threshold
    n, chunks = (2, 20) if bench.quick else (6, 60)
    first = TRAIN_SEED_BASE + int(os.environ.get(CALIB_FIRST_ENV, CALIBRATION_OFFSET))
    seeds = [first + k for k in range(n)]
    specs = os.environ.get(POLICIES_ENV, CANDIDATES).split(",")
    policies = {spec: parse_policy(spec) for spec in specs}
    bench.config = {
        "model": name,
        "seeds": seeds,
        "chunks_per_stream": chunks,
        "world": "synth preset demo (640x360), TRAINING seeds (calibration only)",
        "policies": {spec: repr(p) for spec, p in policies.items()},
        "token_drop": f"{drop} (the engine's default preset: calibrate what the engine runs)",
    }

    def run(spec: str) -> dict[str, float]:
        rep = evaluate(adapter, seeds, chunks, policy=policies[spec], split="train", drop_threshold=drop)
        out = rep.figures()
        if policies[spec] is None:
            out.update({f"auc_{k}": v for k, v in separation_auc(rep.trace).items()})
        return out

    for i, spec in enumerate(specs):
        bench.case(
            spec,
            lambda spec=spec: run(spec),
            work=len(seeds) * chunks,
            unit="chunks",
            baseline=i == 0,
            note=repr(policies[spec]),
        )
