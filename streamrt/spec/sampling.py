"""Turning logits into the processed distribution a token is drawn from (temperature, top-k, top-p),
shared by the target and every drafter so that p and q are processed identically.

Owns nothing; pure functions on tensors.
"""

from __future__ import annotations

import torch

from streamrt.spec.types import SamplingParams


def process(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Processed probabilities: logits [..., V] -> probs [..., V] fp32 summing to 1.

    Greedy params give the one-hot of the argmax (the distribution greedy decoding draws from).
    Top-k then top-p are applied to the temperature-scaled distribution; ties at the top-k boundary
    keep every tied token, so the result does not depend on sort stability.
    """
    logits = logits.float()
    if params.greedy:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    scaled = logits / params.temperature
    if params.top_k and params.top_k < scaled.shape[-1]:
        kth = scaled.topk(params.top_k, dim=-1).values[..., -1:]  # [..., 1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = scaled.softmax(-1)
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        before = sorted_p.cumsum(-1) - sorted_p  # mass strictly above each token
        drop_sorted = before >= params.top_p  # the first token is always kept
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def draw(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    """One token from probs [V] (host sync: one scalar)."""
    return int(torch.multinomial(probs, 1, generator=generator))


def choose(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """The next token from logits [V] under params (plain decoding's rule)."""
    if params.greedy:
        return int(logits.argmax())  # host sync: one scalar
    return draw(process(logits, params), generator)
