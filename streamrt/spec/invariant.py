"""Batch-invariant numerics for a decoder: make a forward over n tokens compute every token exactly
as a forward over that token alone would (bit for bit), so speculative verification (k + 1 tokens at
once) and plain decoding (one token at a time) write identical K/V rows and logits.

CPU/GPU matrix kernels pick different blocking for different row counts, so `linear(x[i:i+1])` and
`linear(x)[i]` differ in the last bits. This mode runs every decoder `nn.Linear` (and the LM head) one
row at a time and attention one query row at a time over its causal prefix (eager math, fp32 softmax).
It is slow: for oracles in tests and for users who need bitwise reproducibility, not for speed.
Assumes batch 1 without padding and a cache in append order (a StreamCache). Owns nothing after exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.nn import functional as F
from transformers import AttentionInterface

from streamrt.cache.hf import attention_implementation
from streamrt.spec.selfspec import _decoder

ATTENTION = "streamrt_rowwise"


def _rowwise_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    # query: [B, H, n, D]; key, value: [B, H_kv, S, D]; query row i sees keys [:S - n + i + 1]
    n, s = query.shape[2], key.shape[2]
    groups = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(groups, dim=1)  # [B, H, S, D]
    value = value.repeat_interleave(groups, dim=1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    rows = []
    for i in range(n):
        end = s - n + i + 1
        w = (query[:, :, i : i + 1] @ key[:, :, :end].transpose(-1, -2)) * scale  # [B, H, 1, end]
        w = w.float().softmax(-1).to(value.dtype)
        rows.append(w @ value[:, :, :end])  # [B, H, 1, D]
    return torch.cat(rows, 2).transpose(1, 2).contiguous(), None  # [B, n, H, D]


AttentionInterface.register(ATTENTION, _rowwise_attention)


def _rowwise_linear(mod: torch.nn.Linear):
    def forward(x: torch.Tensor) -> torch.Tensor:
        # x: [..., in] -> [..., out], one row at a time
        rows = x.reshape(-1, x.shape[-1])  # [R, in]
        out = torch.cat([F.linear(rows[i : i + 1], mod.weight, mod.bias) for i in range(rows.shape[0])])
        return out.reshape(*x.shape[:-1], out.shape[-1])

    return forward


@contextmanager
def batch_invariant(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Within the block, `model`'s decoder is batch invariant (see module docstring)."""
    dec = _decoder(model)
    head = model.get_output_embeddings()
    linears = [m for m in dec.modules() if isinstance(m, torch.nn.Linear)]
    if isinstance(head, torch.nn.Linear):
        linears.append(head)
    for m in linears:
        m.forward = _rowwise_linear(m)
    try:
        with attention_implementation(dec, ATTENTION):
            yield model
    finally:
        for m in linears:
            del m.forward
