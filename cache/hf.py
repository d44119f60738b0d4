"""The one Hugging Face shim: a transformers `Cache` whose layers are backed by a `StreamCache`, and
the `CacheSpec` read from a transformers config. Every transformers API this project relies on for
caching is touched here and nowhere else (pinned: transformers 5.23; DESIGN.md §3).

Supported (tested): Qwen2-VL and Qwen2.5-VL (M-RoPE), Qwen2 and Llama (1-D RoPE), SmolVLM / Idefics3
(Llama text model). Usage, one chunk:

    pos = cache.append("vision", positions=p, span=s)          # reserve rows, get position ids
    out = model(inputs_embeds=x, position_ids=pos, past_key_values=cache.hf, use_cache=True)

The adapter's `get_seq_length` is the length before the chunk and its mask sizes cover the valid rows,
so the stock causal mask is right (storage order is append order). Position ids must be passed
explicitly: stock HF would derive them from the cache length, which eviction makes wrong.
Optionally (`register_attention()`, then `attn_implementation="streamrt"` on a decoder-only text
model), attention runs through `streamrt.kernels.sink_attention` (Triton on CUDA) reading the cache's
valid rows in place; its causal mask is built inside the kernel (the query chunk is the newest rows).
`use_gqa_attention(model)` switches a grouped-query decoder from stock SDPA to the same SDPA call with
the query heads that share a K/V head packed together (no `repeat_kv` copy of the cache for a
multi-token forward; the speculative verify path), and `attention_implementation` switches for a block.
Does not know retention or positions policy; it only forwards writes to the StreamCache.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import transformers
from streamrt.cache.stream import StreamCache, StreamCacheConfig
from streamrt.cache.types import CacheError, CacheSpec
from streamrt.kernels.sink_attention import sink_ring_attention
from torch.nn import functional as F
from transformers import AttentionInterface, PretrainedConfig
from transformers.cache_utils import Cache, CacheLayerMixin
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

TESTED_TRANSFORMERS = "5."  # the Cache / CacheLayerMixin API this shim was written and tested against (5.23)
MROPE_MODELS = {"qwen2_vl", "qwen2_5_vl", "qwen2_vl_text", "qwen2_5_vl_text"}
DEFAULT_MROPE_SECTION = (16, 24, 24)  # what Qwen2-VL's rotary uses when the config names none


def spec_from_config(config: PretrainedConfig) -> CacheSpec:
    """Read layers, KV heads, head dim, rotary frequencies and M-RoPE sections from a model config
    (the text config of a VLM). Raises E_CACHE_SPEC for a model this cache cannot serve."""
    text = config.get_text_config()
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    rope = dict(getattr(text, "rope_parameters", None) or {})
    rope_type = rope.get("rope_type", "default")
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        raise CacheError("E_CACHE_SPEC", f"{text.model_type}: partial rotary is not supported")
    if rope_type == "default":
        theta = rope.get("rope_theta", getattr(text, "rope_theta", 10000.0))
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
    elif rope_type in ROPE_INIT_FUNCTIONS:
        inv_freq, _ = ROPE_INIT_FUNCTIONS[rope_type](text, "cpu")
    else:
        raise CacheError("E_CACHE_SPEC", f"{text.model_type}: rope type {rope_type!r} is not supported")
    section = None
    if text.model_type in MROPE_MODELS or config.model_type in MROPE_MODELS:
        section = tuple(rope.get("mrope_section", DEFAULT_MROPE_SECTION))
    return CacheSpec(
        num_layers=text.num_hidden_layers,
        num_kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=head_dim,
        inv_freq=inv_freq.float(),
        mrope_section=section,
    )


class StreamLayer(CacheLayerMixin):
    """One model layer's view of a StreamCache (transformers `CacheLayerMixin`)."""

    is_sliding = False
    is_croppable = False
    supports_early_init = False

    def __init__(self, store: StreamCache, layer: int) -> None:
        super().__init__()
        self.store = store
        self.layer = layer
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Buffers are pre-allocated by the StreamCache; nothing to do."""

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # key_states, value_states: [B, H_kv, n, D] -> returns [B, H_kv, past + n, D] views
        return self.store.write(self.layer, key_states, value_states)

    def get_seq_length(self) -> int:
        return self.store.past_length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.store.past_length + query_length, 0

    def get_max_length(self) -> int:
        return self.store.config.capacity

    def reset(self) -> None:
        self.store.rollback(0)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        raise CacheError("E_CACHE_UNSUPPORTED", "beam search is not supported by StreamCache")


class HFStreamCache(Cache):
    """A transformers `Cache` over a StreamCache; pass it as `past_key_values`."""

    def __init__(self, store: StreamCache) -> None:
        if not transformers.__version__.startswith(TESTED_TRANSFORMERS):
            raise CacheError(
                "E_CACHE_TRANSFORMERS",
                f"transformers {transformers.__version__} is not supported (tested: 5.23); pin transformers 5.x",
            )
        super().__init__(layers=[StreamLayer(store, i) for i in range(store.spec.num_layers)])
        self.store = store


def stream_cache_for(
    config: PretrainedConfig,
    cache_config: StreamCacheConfig | None = None,
    *,
    batch_size: int = 1,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> tuple[StreamCache, HFStreamCache]:
    """Build a StreamCache for a Hugging Face model config and its `past_key_values` adapter."""
    store = StreamCache(
        spec_from_config(config), cache_config, batch_size=batch_size, dtype=dtype, device=device
    )
    return store, HFStreamCache(store)


ATTENTION_NAME = "streamrt"


def _streamrt_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: query [B, Hq, Q, D] over key/value [B, Hkv, L, D] (the
    cache's rows, a view) with the newest Q rows as the query chunk; returns [B, Q, Hq, D]."""
    if attention_mask is not None:
        raise CacheError(
            "E_CACHE_UNSUPPORTED", "the streamrt attention builds its own causal mask; pass no mask"
        )
    L = key.shape[2]
    out = sink_ring_attention(
        query, key, value, sink_len=L, ring_start=0, ring_len=0, causal=True, scale=scaling
    )
    return out.transpose(1, 2).contiguous(), None


def register_attention() -> str:
    """Register the kernel-backed attention with transformers; returns its name ("streamrt")."""
    AttentionInterface.register(ATTENTION_NAME, _streamrt_attention)
    return ATTENTION_NAME


GQA_ATTENTION_NAME = "streamrt_gqa"


def _gqa_attention(module, query, key, value, attention_mask, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers attention function: SDPA with the G query heads of each K/V head packed into one
    query of G x Q rows, so the cache's K/V heads are read as they are. Stock SDPA attention does this
    for one query token only and copies every K/V head G times (`repeat_kv`) for more: at a long
    context that copy is most of a small model's multi-token forward.

    query [B, Hq, Q, D]; key, value [B, Hkv, L, D] (the query chunk is the newest Q rows);
    attention_mask: transformers' SDPA mask [B|1, 1|Hq, Q, L] or None (then causal, bottom-right
    aligned, or none for a non-causal module); kwargs: `scaling`, `dropout` (transformers passes them
    by name). Returns [B, Q, Hq, D]."""
    b, hq, q_len, d = query.shape
    hkv, length = key.shape[1], key.shape[2]
    g = hq // hkv
    packed = query.reshape(b, hkv, g * q_len, d)  # row r: head r // Q of the group, token r % Q
    mask = attention_mask
    if mask is not None:
        if mask.shape[1] == 1:  # one mask for every head: the same rows for each packed head
            mask = mask.repeat(1, 1, g, 1)  # [B|1, 1, G*Q, L]
        else:  # per-head masks: heads of a group are adjacent, like the packed rows
            mask = mask.reshape(mask.shape[0], hkv, g * q_len, length)
    elif q_len > 1 and getattr(module, "is_causal", True):
        token = torch.arange(q_len, device=query.device).repeat(g)  # [G*Q]
        mask = torch.arange(length, device=query.device)[None] <= (length - q_len + token)[:, None]
    out = F.scaled_dot_product_attention(
        packed, key, value, attn_mask=mask, dropout_p=kwargs.get("dropout", 0.0), scale=kwargs.get("scaling")
    )  # [B, Hkv, G*Q, D]
    return out.reshape(b, hq, q_len, d).transpose(1, 2).contiguous(), None


@contextmanager
def attention_implementation(
    model: torch.nn.Module, name: str, *, only: str | None = None
) -> Iterator[torch.nn.Module]:
    """Within the block the modules of `model` (those now on implementation `only`, when given) run
    attention `name`, a registered transformers attention; the previous ones are restored on exit."""
    configs = {
        id(m.config): m.config
        for m in model.modules()
        if isinstance(getattr(m, "config", None), PretrainedConfig)
        and (only is None or m.config._attn_implementation == only)
    }
    saved = {k: c._attn_implementation for k, c in configs.items()}
    for c in configs.values():
        c._attn_implementation = name
    try:
        yield model
    finally:
        for k, c in configs.items():
            c._attn_implementation = saved[k]


def use_gqa_attention(model: torch.nn.Module) -> bool:
    """Switch the grouped-query attention layers of `model` that run stock SDPA to `_gqa_attention`
    (same math without the K/V copies); True when a layer switched. Layers on another
    implementation (eager, flash, the streamrt kernel) and ungrouped ones are left as they are."""
    AttentionInterface.register(GQA_ATTENTION_NAME, _gqa_attention)
    AttentionMaskInterface.register(GQA_ATTENTION_NAME, sdpa_mask)
    configs = {
        id(m.config): m.config
        for m in model.modules()
        if getattr(m, "num_key_value_groups", 1) > 1
        and getattr(m.config, "_attn_implementation", None) == "sdpa"
    }
    for c in configs.values():
        c._attn_implementation = GQA_ATTENTION_NAME
    return bool(configs)
