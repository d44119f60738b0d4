"""Fixtures of the generation tests: a tiny random generator (fp64, 8x8 frames, 4 tokens per frame)."""

from __future__ import annotations

import pytest
import torch
from streamrt.models.gen.dit import GenModelConfig
from streamrt.models.gen.model import GenModel, GenSpec
from streamrt.models.gen.text import shapes_world_vocab


def make_tiny(seed: int = 0, dtype: torch.dtype = torch.float64) -> GenModel:
    torch.manual_seed(seed)
    vocab = shapes_world_vocab()
    cfg = GenModelConfig(patch=4, dim=24, heads=2, layers=2, text_len=6, vocab_size=len(vocab))
    m = GenModel(GenSpec(cfg, vocab, 8, 8, 3.0)).to(dtype).eval()
    with torch.no_grad():  # adaLN-zero init makes blocks identity: randomise so every path matters
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return m


@pytest.fixture(scope="module")
def tiny() -> GenModel:
    return make_tiny()
