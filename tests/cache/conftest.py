"""Tiny random Hugging Face models (fp32, built from config objects, offline) for the cache tests,
and the pieces of Qwen2-VL input the tests build themselves (no processor, no torchvision)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import torch
from transformers import (
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)

logging.getLogger("transformers").setLevel(logging.ERROR)

VIDEO_TOKEN = 121
TEXT = dict(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)
ROPE = {"rope_type": "default", "rope_theta": 10000.0}


def _vl_kwargs(layers: int) -> dict[str, object]:
    return dict(
        text_config=dict(TEXT, num_hidden_layers=layers, rope_parameters=dict(ROPE, mrope_section=[2, 3, 3])),
        vision_config=dict(
            depth=1, embed_dim=32, hidden_size=64, num_heads=2, patch_size=2, spatial_merge_size=2,
            temporal_patch_size=2, in_channels=3, out_hidden_size=64,
        ),
        image_token_id=120, video_token_id=VIDEO_TOKEN, vision_start_token_id=122, vision_end_token_id=123,
    )  # fmt: skip


def build(kind: str, layers: int = 2, seed: int = 0) -> PreTrainedModel:
    """A tiny random model of `kind` in eval mode, fp32, sdpa attention."""
    torch.manual_seed(seed)
    if kind == "qwen2_vl":
        m: PreTrainedModel = Qwen2VLForConditionalGeneration(Qwen2VLConfig(**_vl_kwargs(layers)))
    elif kind == "qwen2_5_vl":
        m = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**_vl_kwargs(layers)))
    elif kind == "llama":
        m = LlamaForCausalLM(LlamaConfig(**TEXT, num_hidden_layers=layers, rope_parameters=ROPE))
    elif kind == "qwen2":
        m = Qwen2ForCausalLM(Qwen2Config(**TEXT, num_hidden_layers=layers, rope_parameters=ROPE))
    elif kind == "idefics3":
        cfg = Idefics3Config(
            text_config=dict(TEXT, model_type="llama", num_hidden_layers=layers, rope_parameters=ROPE),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                               image_size=16, patch_size=4),
            scale_factor=2, image_token_id=120,
        )  # fmt: skip
        m = Idefics3ForConditionalGeneration(cfg)
    else:
        raise ValueError(kind)
    return m.eval()


@pytest.fixture(scope="session")
def tiny() -> Callable[..., PreTrainedModel]:
    """`tiny(kind, layers=2)`: a cached tiny model."""
    made: dict[tuple[str, int], PreTrainedModel] = {}

    def get(kind: str, layers: int = 2) -> PreTrainedModel:
        if (kind, layers) not in made:
            made[(kind, layers)] = build(kind, layers)
        return made[(kind, layers)]

    return get


def _video_pixels(grid_thw: tuple[int, int, int], seed: int) -> torch.Tensor:
    """Patchified video pixels for a Qwen2-VL grid (patches): [t*h*w, 3 * 2 * 2 * 2]."""
    g = torch.Generator().manual_seed(seed)
    t, h, w = grid_thw
    return torch.randn(t * h * w, 3 * 2 * 2 * 2, generator=g)


@pytest.fixture(scope="session")
def video_pixels() -> Callable[[tuple[int, int, int], int], torch.Tensor]:
    """`video_pixels(grid_thw, seed)`: deterministic patchified pixels for a tiny Qwen2-VL."""
    return _video_pixels
