"""`load_adapter`: pick and build the adapter for a model name, local path or hub id.

The adapter is chosen from the Hugging Face config's `model_type` (table `ADAPTERS`, imported lazily);
`"builtin"` names the tiny model shipped in `streamrt.assets` (`assets/vlm/builtin/`). A model
directory may carry a `streamrt.json` (stream settings and prompt template) that overrides the
adapter's defaults; the built-in model does. Unknown names, missing paths, unreachable hub ids and
model types without an adapter raise `AdapterError(code="E_MODEL_UNKNOWN")`.

Does not know any model's internals; it only maps config -> adapter class.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from importlib import resources
from pathlib import Path

import torch
from streamrt.models.vlm.base import AdapterError, VLMAdapter

BUILTIN = "builtin"
"""The default model name: the tiny shapes-world model in the package assets."""

SETTINGS_FILE = "streamrt.json"
"""Optional file in a model directory: stream settings and prompt template overrides."""

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
"""What a hub id looks like (owner/name); anything else must be an existing directory."""

ADAPTERS: dict[str, str] = {
    "qwen2_vl": "streamrt.models.vlm.qwen2_vl:Qwen2VLAdapter",
    "qwen2_5_vl": "streamrt.models.vlm.qwen2_vl:Qwen2VLAdapter",
    "idefics3": "streamrt.models.vlm.idefics3:Idefics3Adapter",
    "smolvlm": "streamrt.models.vlm.idefics3:Idefics3Adapter",
}
"""HF model_type -> "module:class" of its adapter."""


def builtin_path() -> Path:
    """Directory of the built-in model inside the installed package."""
    return Path(str(resources.files("streamrt.assets").joinpath("vlm", BUILTIN)))


def resolve(name_or_path: str) -> str:
    """'builtin' -> its asset directory; anything else unchanged (local path or hub id)."""
    if name_or_path == BUILTIN:
        path = builtin_path()
        if not (path / "config.json").is_file():
            raise AdapterError("E_MODEL_UNKNOWN", f"the built-in model is missing from {path}")
        return str(path)
    return name_or_path


def read_settings(path: str) -> dict[str, object]:
    """The model directory's `streamrt.json` as a dict ({} if absent or not a local directory)."""
    f = Path(path) / SETTINGS_FILE
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise AdapterError("E_MODEL_LOAD", f"{f}: not valid JSON ({e})") from e


def adapter_class(model_type: str) -> type[VLMAdapter]:
    """The adapter class for a HF model_type; E_MODEL_UNKNOWN if none."""
    target = ADAPTERS.get(model_type)
    if target is None:
        raise AdapterError(
            "E_MODEL_UNKNOWN",
            f"no adapter for model_type {model_type!r}; supported: {', '.join(sorted(ADAPTERS))}",
        )
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def load_adapter(
    name_or_path: str = BUILTIN,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str = torch.float32,
) -> VLMAdapter:
    """Load a model and wrap it in its adapter.

    name_or_path: "builtin" (default), a local directory saved with `save_pretrained`, or a hub id
    (needs network or the HF cache). device: "cpu", "cuda", "cuda:1"...; dtype: torch dtype or one of
    "float32"/"fp32", "bfloat16"/"bf16", "float16"/"fp16".
    """
    from transformers import AutoConfig

    path = resolve(name_or_path)
    if not os.path.isdir(path) and not HUB_ID.fullmatch(path):
        raise AdapterError("E_MODEL_UNKNOWN", f"{name_or_path}: no such model directory")
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError) as e:
        raise AdapterError(
            "E_MODEL_UNKNOWN", f"{name_or_path}: not a local model directory or a reachable hub id ({e})"
        ) from e
    cls = adapter_class(config.model_type)
    return cls.from_pretrained(
        path,
        name=name_or_path,
        device=torch.device(device),
        dtype=parse_dtype(dtype),
        settings=read_settings(path),
    )


DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """torch dtype or its name -> torch dtype (E_MODEL_DEVICE for anything else)."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise AdapterError("E_MODEL_DEVICE", f"unsupported dtype {dtype}; use fp32, bf16 or fp16")
        return dtype
    if dtype not in DTYPES:
        raise AdapterError("E_MODEL_DEVICE", f"unsupported dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]
