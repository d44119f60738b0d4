"""Drift over a simulated long stream: repeated evictions rotate survivors again and again; the error
of the cached keys against the oracle must be bounded by the window, not by the stream length.

Stream: a tiny Llama (fp32 and bf16) watching one 8-token chunk every 2 s (plus a 3-token question
every 4th chunk) behind a 6-token pinned system prompt, keeping the last 4 chunks: each append evicts
and rotates the survivors. Oracle for each cached key: the key as the model wrote it on arrival (recorded
by the test, keyed by the cache's arrival index), rotated once in fp64 to its current position.
Checked: the error at the end of the stream is no larger than twice the largest error seen in its
first tenth (plus one storage rounding); `master` keys are bit-identical to one rotation of the arrival
keys (zero drift, whatever the length). The default run is 20 min of stream (600 evictions, ~5k
tokens); the slow variant runs 3 h (5400 evictions).
"""

from __future__ import annotations

import pytest
import torch
from streamrt.cache import (
    CompactPositions,
    MasterPositions,
    RetentionPolicy,
    StreamCacheConfig,
    stream_cache_for,
)
from streamrt.kernels.rope_shift import rope_shift_ref


def rotate64(k: torch.Tensor, delta: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Independent fp64 rotate-half rotation: k [..., n, D], delta [n] -> k turned by delta * inv_freq."""
    ang = delta.double()[:, None] * inv_freq.double()[None, :]  # [n, D/2]
    half = k.shape[-1] // 2
    x1, x2 = k[..., :half].double(), k[..., half:].double()
    return torch.cat((x1 * ang.cos() - x2 * ang.sin(), x2 * ang.cos() + x1 * ang.sin()), -1)


def run_stream(model, dtype, policy, chunks: int, seed: int = 0) -> tuple[list[float], object]:
    cfg = StreamCacheConfig(
        capacity=96,
        retention=RetentionPolicy(sink_tokens=6, text_window=12, vision_chunks=4),
        positions=policy,
    )
    cache, hf = stream_cache_for(model.config, cfg, dtype=dtype)
    g = torch.Generator().manual_seed(seed)
    arrival: dict[int, torch.Tensor] = {}  # arrival index -> K as written [L, B, H, D]
    errors: list[float] = []

    def feed(kind: str, n: int) -> None:
        pos = cache.append(kind, n)
        x = (torch.randn(1, n, model.config.hidden_size, generator=g) * 0.5).to(dtype)
        with torch.no_grad():
            model(inputs_embeds=x, position_ids=pos, past_key_values=hf)
        seg = cache.segments[-1]
        for r in range(seg.start, seg.end):
            arrival[int(cache.token_index[r])] = cache.k[:, :, :, r].clone()

    def error() -> float:
        n = cache.length
        keys = torch.stack([arrival[t] for t in cache.arrival_index().tolist()], dim=3)  # [L, B, H, n, D]
        want = rotate64(keys, cache.pos[0, :n] - cache.orig_pos[0, :n], cache.inv_freq)
        return (cache.k[..., :n, :].double() - want).abs().max().item()

    feed("system", 6)
    for i in range(chunks):
        feed("vision", 8)
        if i % 4 == 3:
            feed("user", 3)
        errors.append(error())
        live = set(cache.arrival_index().tolist())
        for p in [p for p in arrival if p not in live]:
            del arrival[p]
    return errors, cache


def check(errors: list[float], dtype: torch.dtype) -> None:
    early = max(errors[: max(1, len(errors) // 10)])
    rounding = 1e-6 if dtype == torch.float32 else 4e-3
    assert errors[-1] <= 2 * early + rounding, (early, errors[-1])
    assert max(errors) <= 2 * early + rounding


def master_is_one_rotation(cache) -> None:
    n = cache.length
    work = cache.master[..., :n, :].flatten(0, 1).clone()
    once = rope_shift_ref(work, cache.pos[:, :n] - cache.orig_pos[:, :n], cache.inv_freq)
    assert torch.equal(cache.k[..., :n, :].flatten(0, 1), once)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("policy", [CompactPositions(), MasterPositions()])
def test_drift_bounded_by_window(tiny, dtype, policy):
    model = tiny("llama", layers=2).to(dtype)
    try:
        errors, cache = run_stream(model, dtype, policy, chunks=600)
    finally:
        model.float()
    assert cache.evictions >= 600 and cache.next_position < 96  # positions stay in range
    check(errors, dtype)
    if isinstance(policy, MasterPositions):
        master_is_one_rotation(cache)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_drift_three_hours(tiny, dtype):
    model = tiny("llama", layers=2).to(dtype)
    try:
        errors, cache = run_stream(model, dtype, CompactPositions(), chunks=5400, seed=1)
    finally:
        model.float()
    check(errors, dtype)
