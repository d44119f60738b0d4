"""Prompt encoder of the built-in generator: a closed word vocabulary and a tiny transformer.

The shapes world speaks a closed language ("a red circle moving left"), so prompts are split into
words (spaces, commas, hyphens), looked up in a fixed vocabulary saved with the checkpoint, padded to
`text_len`, embedded with learned word and position embeddings and mixed by `text_layers` small
transformer layers. Output: token states [B, L, dim] for the DiT's cross-attention.
Owns: the vocabulary and tokenisation. Does not know the DiT, caches or the world simulation.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

PAD, UNK = "<pad>", "<unk>"


class GenPromptError(ValueError):
    """A prompt the built-in generator cannot read (`code` E_GEN_PROMPT)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"E_GEN_PROMPT: {message}")
        self.code = "E_GEN_PROMPT"


def split_words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s,\-]+", text.lower()) if w]


def shapes_world_vocab() -> tuple[str, ...]:
    """Every word the shapes world's captions and motion phrases use (stable order)."""
    from streamrt.synth.config import COLOURS, SHAPES
    from streamrt.synth.language import NUMBERS

    words = [PAD, UNK, "a", "an", "and", "nothing", "moving", "still", "left", "right", "up", "down"]
    words += list(NUMBERS) + list(COLOURS) + list(SHAPES) + [s + "s" for s in SHAPES]
    return tuple(dict.fromkeys(words))


class Tokenizer:
    """Word-level tokeniser over a fixed vocabulary; unknown words are dropped with a warning."""

    def __init__(self, vocab: Sequence[str], length: int) -> None:
        self.vocab = tuple(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.length = length

    def encode(self, prompts: Sequence[str]) -> Tensor:
        """prompts -> ids [B, length] (int64)."""
        out = torch.zeros(len(prompts), self.length, dtype=torch.long)
        for b, p in enumerate(prompts):
            words = split_words(p)
            unknown = [w for w in words if w not in self.index]
            if unknown:
                log.warning("prompt %r: words outside the vocabulary ignored: %s", p, ", ".join(unknown))
            ids = [self.index[w] for w in words if w in self.index][: self.length]
            if not ids:
                raise GenPromptError(
                    f"prompt {p!r} has no known word; known words: {' '.join(self.vocab[2:])}"
                )
            out[b, : len(ids)] = torch.tensor(ids)
        return out


class PromptEncoder(nn.Module):
    """ids [B, L] -> token states [B, L, dim]."""

    def __init__(self, vocab_size: int, length: int, dim: int, heads: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.randn(length, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.mix = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: Tensor) -> Tensor:
        return self.norm(self.mix(self.embed(ids) + self.pos))
