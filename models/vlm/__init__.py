"""streamrt.models.vlm: vision-language model adapters for the understanding engine and the tiny
built-in shapes-world model.

    from streamrt.models.vlm import load_adapter
    adapter = load_adapter("builtin")                       # or a local path / hub id of Qwen2-VL,
    cache = adapter.new_cache()                             # Qwen2.5-VL, SmolVLM / Idefics3
    adapter.prefill_text(cache, adapter.system_ids(), kind="system")
    chunk = adapter.encode_chunk(frames, times)             # frames: [T, H, W, 3] uint8 RGB
    logits = adapter.prefill_vision(cache, chunk)           # [V]

Modules: `base` (the interface and its dataclasses), `loader` (load_adapter), `preprocess` (resize,
normalise, patchify without torchvision), `qwen2_vl`, `idefics3` (adapters), `builtin` (the built-in
model's tokenizer, config and data), `train_cli` (`streamrt train vlm`).
"""

from streamrt.models.vlm.base import (
    AdapterError,
    PromptTemplate,
    SpecialTokens,
    StreamSettings,
    TextKind,
    VisionChunk,
    VLMAdapter,
)
from streamrt.models.vlm.loader import ADAPTERS, BUILTIN, builtin_path, load_adapter, parse_dtype

__all__ = [
    "ADAPTERS",
    "BUILTIN",
    "AdapterError",
    "PromptTemplate",
    "SpecialTokens",
    "StreamSettings",
    "TextKind",
    "VLMAdapter",
    "VisionChunk",
    "builtin_path",
    "load_adapter",
    "parse_dtype",
]
