"""Tiny random Hugging Face decoders (built from configs, offline) for the speculative decoding tests,
and helpers: a target over a StreamCache with a prefilled prompt, an independent plain decoding loop
(one token per forward, its own StreamCache), and a chi-square survival function."""

from __future__ import annotations

import logging

import torch
from streamrt.cache import RetentionPolicy, StreamCacheConfig, stream_cache_for
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, Qwen2Config, Qwen2ForCausalLM

from streamrt.spec import Target

logging.getLogger("transformers").setLevel(logging.ERROR)

ROPE = {"rope_type": "default", "rope_theta": 10000.0}


def build(kind: str, *, vocab: int = 96, layers: int = 3, hidden: int = 64, seed: int = 0) -> PreTrainedModel:
    """A tiny random decoder; initializer_range 0.1 so greedy text is not one repeated token."""
    torch.manual_seed(seed)
    kw = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        initializer_range=0.1,
        rope_parameters=ROPE,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    if kind == "llama":
        model: PreTrainedModel = LlamaForCausalLM(LlamaConfig(**kw))
    elif kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**kw))
    else:
        raise ValueError(kind)
    return model.eval()


def cache_config(capacity: int = 512, text_window: int = 4096, sinks: int = 4) -> StreamCacheConfig:
    return StreamCacheConfig(
        capacity=capacity,
        retention=RetentionPolicy(sink_tokens=sinks, text_window=text_window, vision_chunks=4),
    )


def prefilled(
    model: PreTrainedModel, turns: list[list[int]], config: StreamCacheConfig | None = None
) -> tuple[Target, torch.Tensor]:
    """A Target whose cache holds `turns` (first = system, the rest user turns); returns it and the
    next-token logits [V]."""
    dtype = next(model.parameters()).dtype
    cache, hf = stream_cache_for(model.config, config or cache_config(), dtype=dtype)
    target = Target(model, cache, hf)
    logits = None
    for i, ids in enumerate(turns):
        target.kind = "system" if i == 0 else "user"
        logits = target.forward(ids)[-1]
    target.kind = "assistant"
    assert logits is not None
    return target, logits


@torch.no_grad()
def plain_decode(
    model: PreTrainedModel, turns: list[list[int]], n: int, config: StreamCacheConfig | None = None
) -> tuple[list[int], list[dict[str, torch.Tensor]]]:
    """Independent oracle: greedy, one token per forward through a fresh StreamCache. Returns the
    tokens and, after each token t_i is chosen, the cache state (which then holds t_0..t_{i-1})."""
    target, logits = prefilled(model, turns, config)
    out: list[int] = []
    states = []
    for _ in range(n):
        out.append(int(logits.argmax()))
        states.append(state(target))
        logits = target.forward([out[-1]])[-1]
    return out, states


def state(target: Target) -> dict[str, torch.Tensor]:
    """The valid cache state, copied: K/V rows, positions, arrival index, counters."""
    c = target.cache
    n = c.length
    return {
        "k": c.k[..., :n, :].clone(),
        "v": c.v[..., :n, :].clone(),
        "pos": c.pos[:, :n].clone(),
        "orig_pos": c.orig_pos[:, :n].clone(),
        "index": c.token_index[:n].clone(),
        "next_position": torch.tensor(c.next_position),
        "evicted": torch.tensor(c.evicted_tokens),
    }


def chi2_sf(stat: float, df: int) -> float:
    """P(X >= stat) for X ~ chi-square(df) (regularised upper incomplete gamma)."""
    return float(
        torch.special.gammaincc(torch.tensor(df / 2.0, dtype=torch.float64), torch.tensor(stat / 2.0))
    )


def chi2_pvalue(counts: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0) -> float:
    """Pearson chi-square goodness of fit of counts [C] to probs [C]; cells with a small expectation
    are pooled into one."""
    total = counts.sum()
    expected = probs.double() * total
    small = expected < min_expected
    obs = torch.cat([counts[~small].double(), counts[small].double().sum()[None]])
    exp = torch.cat([expected[~small], expected[small].sum()[None]])
    if ((obs > 0) & (exp == 0)).any():
        return 0.0  # an impossible outcome was observed
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    stat = float(((obs - exp) ** 2 / exp).sum())
    return chi2_sf(stat, int(keep.sum()) - 1)
