"""The draft model's shape and storage: a small Qwen2 causal LM with the target's vocabulary (so it
shares the target's tokenizer and ids), saved as a Hugging Face folder (config.json +
model.safetensors) plus `draft.json` naming the target it was distilled from.

Owns no weights itself; knows nothing about training data.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PretrainedConfig, Qwen2Config


def draft_config(target: PretrainedConfig, *, layers: int = 2, hidden: int | None = None) -> Qwen2Config:
    """A `layers`-layer Qwen2 config with the target's vocabulary and special ids; hidden size defaults
    to the target's text hidden size capped at 256 (heads of 32 dims, 2 KV heads)."""
    text = target.get_text_config()
    h = hidden or min(text.hidden_size, 256)
    heads = max(1, h // 32)
    return Qwen2Config(
        vocab_size=text.vocab_size,
        hidden_size=h,
        intermediate_size=3 * h,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=2 if heads % 2 == 0 else 1,
        max_position_embeddings=8192,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=True,
        bos_token_id=getattr(text, "bos_token_id", None),
        eos_token_id=getattr(text, "eos_token_id", None),
        pad_token_id=getattr(text, "pad_token_id", None),
    )


def save_draft(model: torch.nn.Module, out: Path, info: dict[str, object]) -> None:
    """Write the draft (HF folder) and `draft.json` (what it was distilled from, how, with what result)."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)  # type: ignore[attr-defined]
    (out / "draft.json").write_text(json.dumps(info, indent=2) + "\n")


def load_draft(path: Path | str, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """Load a saved draft in eval mode."""
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).eval()
