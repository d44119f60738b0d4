"""load_adapter: adapter chosen by model_type (save_pretrained round trip, offline); unknown paths,
model types and dtypes fail with typed errors; the built-in model loads from the package assets."""

from __future__ import annotations

import pytest
import torch
from streamrt.models.vlm import AdapterError, builtin_path, load_adapter, parse_dtype
from streamrt.models.vlm.idefics3 import Idefics3Adapter
from streamrt.models.vlm.qwen2_vl import Qwen2VLAdapter


@pytest.mark.parametrize(
    "model_type,cls",
    [
        ("qwen2_vl", Qwen2VLAdapter),
        ("qwen2_5_vl", Qwen2VLAdapter),
        ("idefics3", Idefics3Adapter),
        ("smolvlm", Idefics3Adapter),
    ],
)
def test_picks_adapter_by_model_type(tiny_checkpoints, model_type, cls):
    a = load_adapter(tiny_checkpoints[model_type], dtype="bf16")
    assert type(a) is cls and a.dtype == torch.bfloat16 and a.model.config.model_type == model_type


@pytest.mark.parametrize("name", ["/nonexistent/model", "./not-here", "no such model"])
def test_unknown_path(name):
    with pytest.raises(AdapterError) as e:
        load_adapter(name)
    assert e.value.code == "E_MODEL_UNKNOWN" and name in str(e.value)


def test_unknown_model_type(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2).save_pretrained(
        tmp_path
    )
    with pytest.raises(AdapterError) as e:
        load_adapter(str(tmp_path))
    assert e.value.code == "E_MODEL_UNKNOWN" and "llama" in str(e.value)


def test_dtypes():
    assert parse_dtype("fp16") is torch.float16 and parse_dtype(torch.bfloat16) is torch.bfloat16
    for bad in ("int8", torch.int32):
        with pytest.raises(AdapterError) as e:
            parse_dtype(bad)
        assert e.value.code == "E_MODEL_DEVICE"


def test_builtin_loads_from_assets():
    assert (builtin_path() / "config.json").is_file()
    a = load_adapter()
    assert a.name == "builtin" and a.fps == 2.0 and a.frames_per_chunk == 2
    assert a.settings.frame_size == (80, 128)
    sp = a.special
    assert sp.silence_id is not None and a.decode([sp.silence_id], skip_special=False) == "<silence>"
    assert sp.eos_id in sp.stop_ids
