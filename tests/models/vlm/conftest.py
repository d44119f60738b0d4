"""Tiny random checkpoints (Qwen2-VL, Qwen2.5-VL, Idefics3, SmolVLM) saved with save_pretrained into a
temporary directory, with offline-trained word-level tokenizers carrying each family's special tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

WORDS = "you are watching a live video . describe what happens and answer questions system user assistant colour is the square ? red blue : \n"
QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|video_pad|>",
    "<|image_pad|>",
]
SMOL_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<end_of_utterance>",
    "<fake_token_around_image>",
    "<global-img>",
    "<image>",
]


def make_tokenizer(specials: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tok.decoder = decoders.WordPiece(cleanup=True)
    tok.train_from_iterator(
        [WORDS, WORDS.title(), "System User Assistant You Describe"],
        trainers.WordLevelTrainer(special_tokens=["<unk>", "<pad>", *specials]),
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token=specials[0],
        additional_special_tokens=specials[1:],
    )  # fmt: skip


def _save(model, tok, path: Path) -> str:
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def qwen_config(model_type: str, tok):
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text = {
        "vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
    }  # fmt: skip
    vision = {
        "depth": 2,
        "embed_dim": 32,
        "num_heads": 2,
        "patch_size": 8,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    common = dict(
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    if model_type == "qwen2_5_vl":
        vision |= {
            "hidden_size": 64,
            "out_hidden_size": 64,
            "intermediate_size": 64,
            "fullatt_block_indexes": [1],
            "window_size": 32,
        }
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **common)
    vision |= {"hidden_size": 64, "mlp_ratio": 2}
    return Qwen2VLConfig(text_config=text, vision_config=vision, **common)


def smol_config(model_type: str, tok):
    from transformers import Idefics3Config, SmolVLMConfig

    cls = SmolVLMConfig if model_type == "smolvlm" else Idefics3Config
    return cls(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        text_config={"model_type": "llama", "vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256},
        scale_factor=2,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
    )  # fmt: skip


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """model_type -> directory of a tiny random checkpoint (weights seeded)."""
    from transformers import (
        Idefics3ForConditionalGeneration,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLForConditionalGeneration,
        SmolVLMForConditionalGeneration,
    )

    root = tmp_path_factory.mktemp("tiny_vlms")
    out = {}
    qtok, stok = make_tokenizer(QWEN_SPECIALS), make_tokenizer(SMOL_SPECIALS)
    for mt, cls in (
        ("qwen2_vl", Qwen2VLForConditionalGeneration),
        ("qwen2_5_vl", Qwen2_5_VLForConditionalGeneration),
    ):
        torch.manual_seed(0)
        out[mt] = _save(cls(qwen_config(mt, qtok)).eval(), qtok, root / mt)
    for mt, cls in (
        ("idefics3", Idefics3ForConditionalGeneration),
        ("smolvlm", SmolVLMForConditionalGeneration),
    ):
        torch.manual_seed(0)
        out[mt] = _save(cls(smol_config(mt, stok)).eval(), stok, root / mt)
    return out


def random_frames(n: int, h: int, w: int, seed: int) -> np.ndarray:
    """Random uint8 RGB frames [n, h, w, 3]."""
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.fixture
def frames():
    """The `random_frames(n, h, w, seed)` helper (test modules cannot import conftest)."""
    return random_frames
