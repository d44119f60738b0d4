"""`streamrt bench gen-quality`: prompt adherence of a generator, judged by colour segmentation.

For every prompt of a fixed set (each colour with each of circle / square / triangle, every other one
with a motion phrase), a fresh stream (the "quality" preset: sequential, 4 steps, first block 8, the
model's sampler) generates frames;
`streamrt.gen.quality` finds the prompted colour's largest blob and reads its shape. Figures: share of
frames with the prompted colour, with colour and shape, and colour-and-shape per prompted shape
(circle is flattered: any round blob reads as a circle). Prompt switches: for each pair of `SWITCHES`
the old prompt runs 16 frames, then the new one `frames` more, once under KV-recache and once after a
hard cut; the frames after the switch are judged against the new prompt (switch_<mode>_colour_rate,
switch_<mode>_shape_rate). Cases: the built-in model (baseline) and,
when the environment variable STREAMRT_BENCH_GEN_MODEL names a checkpoint folder, that model too.
The scores are deterministic (seeded); the harness's repeats only time the run, so use
`--repeats 1 --warmup 0`. Full: 30 prompts x 3 noise seeds x 32 frames (a rollout's frames share its
first block's decisions, so one seed per prompt leaves a standard error of about 6 points on 30
prompts); quick: 10 prompts x 1 seed x 24 frames.
"""

from __future__ import annotations

import os

from streamrt.bench.harness import Bench, register

MODEL_ENV = "STREAMRT_BENCH_GEN_MODEL"
SHAPES = ("circle", "square", "triangle")
MOTIONS = ("left", "right", "up", "down", "up left", "down right")
SWITCHES = (
    ("a red circle", "a blue square"),
    ("a green triangle", "a yellow circle"),
    ("a white square", "a pink triangle"),
    ("a blue circle moving left", "an orange square"),
)
"""(old prompt, new prompt): every shape changes, and every colour; quick runs the first two."""


def prompt_set(quick: bool) -> list[tuple[str, str, str]]:
    """(prompt, colour, shape) for each colour x shape (quick: one shape per colour)."""
    from streamrt.synth.config import COLOURS

    out = []
    for i, colour in enumerate(COLOURS):
        for j, shape in enumerate(SHAPES[i % 3 : i % 3 + 1] if quick else SHAPES):
            k = i * 3 + j
            article = "an" if colour[0] in "aeiou" else "a"
            motion = f" moving {MOTIONS[k % len(MOTIONS)]}" if k % 2 else ""
            out.append((f"{article} {colour} {shape}{motion}", colour, shape))
    return out


def adherence(
    model_dir: str | None,
    prompts: list[tuple[str, str, str]],
    frames: int,
    switches: tuple[tuple[str, str], ...] = SWITCHES,
    seeds: tuple[int, ...] = (0,),
) -> dict[str, float]:
    """Colour / colour-and-shape rates of `frames` generated frames per prompt and noise seed, and after
    each prompt switch under both switch modes (model_dir None: the built-in model). A rollout's frames
    share its first block's decisions, so the seeds, not the frames, make the sample."""
    from streamrt.gen.config import GenEngineConfig
    from streamrt.gen.engine import GenEngine
    from streamrt.gen.quality import score
    from streamrt.gen.stream import generate
    from streamrt.models.gen.model import GenModel, load_builtin

    model = load_builtin() if model_dir is None else GenModel.load(model_dir)
    colour = shape = 0.0
    per_shape: dict[str, list[float]] = {s: [] for s in SHAPES}
    for seed in seeds:
        for prompt, c, s in prompts:
            eng = GenEngine(model, GenEngineConfig.preset("quality", seed=seed))
            rep = score([t.frame.pixels for t in generate(eng, frames, {0: prompt})], c, s)
            colour += rep.colour_rate
            shape += rep.shape_rate
            per_shape[s].append(rep.shape_rate)
    n = len(prompts) * len(seeds)
    figures = {"colour_rate": colour / n, "colour_shape_rate": shape / n}
    figures |= {f"{s}_rate": sum(v) / len(v) for s, v in per_shape.items() if v}
    runs = [(k + len(switches) * seed, old, new) for seed in seeds for k, (old, new) in enumerate(switches)]
    for mode in ("recache", "hard_cut"):
        colour = shape = 0.0
        for seed, old, new in runs:
            eng = GenEngine(model, GenEngineConfig.preset("quality", seed=seed, prompt_switch=mode))
            after = [t.frame.pixels for t in generate(eng, 16 + frames, {0: old, 16: new})][16:]
            _, c, s, *_ = new.split()
            rep = score(after, c, s)
            colour += rep.colour_rate / len(runs)
            shape += rep.shape_rate / len(runs)
        figures |= {f"switch_{mode}_colour_rate": colour, f"switch_{mode}_shape_rate": shape}
    return figures


@register("gen-quality", "generator prompt adherence: prompted colour and shape found by colour segmentation")
def bench_gen_quality(bench: Bench) -> None:
    prompts = prompt_set(bench.quick)
    frames = 24 if bench.quick else 32
    switches = SWITCHES[:2] if bench.quick else SWITCHES
    seeds = (0,) if bench.quick else (0, 1, 2)
    other = os.environ.get(MODEL_ENV)
    bench.config = {
        "prompts": [p for p, _, _ in prompts],
        "frames_per_prompt": frames,
        "switches": [f"{a} -> {b}" for a, b in switches],
        "seeds": list(seeds),
        "engine": "preset quality (sequential, 4 steps, first block 8, seed 0, the model's guidance and sampler)",
        "candidate": other or "(none: set STREAMRT_BENCH_GEN_MODEL)",
    }
    work = len(seeds) * (len(prompts) * frames + 2 * len(switches) * (16 + frames))  # frames generated
    bench.case(
        "built-in model",
        lambda: adherence(None, prompts, frames, switches, seeds),
        work=work,
        unit="frames",
        baseline=True,
        note="scores are in the extra figures",
    )
    if other:
        bench.case(
            other, lambda: adherence(other, prompts, frames, switches, seeds), work=work, unit="frames"
        )
