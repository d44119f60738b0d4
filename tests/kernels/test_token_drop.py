"""Differential token drop against a plain loop oracle (`F.cosine_similarity` per token, threshold,
then the budget keeps the least similar). Exact index equality."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from streamrt.kernels.token_drop import token_drop


def oracle(tokens, prev, threshold, budget):
    T, N, _ = tokens.shape
    scored = []
    for t in range(T):
        for n in range(N):
            ref = prev if t == 0 else tokens[t - 1]
            if ref is None:
                scored.append((float("-inf"), t * N + n))
                continue
            s = F.cosine_similarity(tokens[t, n], ref[n], dim=0).item()
            if s <= threshold:
                scored.append((s, t * N + n))
    if budget is not None and len(scored) > budget:
        scored = sorted(scored, key=lambda x: (x[0], x[1]))[:budget]
    return sorted(i for _, i in scored)


def video(T, N, C, seed, change=0.3):
    g = torch.Generator().manual_seed(seed)
    frames = [torch.randn(N, C, generator=g)]
    for _ in range(T):
        moved = torch.rand(N, 1, generator=g) < change
        frames.append(
            torch.where(
                moved, torch.randn(N, C, generator=g), frames[-1] + 0.05 * torch.randn(N, C, generator=g)
            )
        )
    return frames[0], torch.stack(frames[1:])


@pytest.mark.parametrize("T,N,C", [(1, 16, 8), (2, 12, 32), (4, 9, 64)])
@pytest.mark.parametrize("budget", [None, 5])
@pytest.mark.parametrize("first", [False, True])
def test_kept_indices_match_loop_oracle(T, N, C, budget, first):
    prev, tokens = video(T, N, C, seed=T * 100 + N)
    prev = None if first else prev
    got = token_drop(tokens, prev, threshold=0.9, budget=budget)
    assert got.tolist() == oracle(tokens, prev, 0.9, budget)


def test_first_frame_kept_whole_and_static_frames_dropped():
    _, tokens = video(3, 10, 16, seed=7, change=0.0)
    kept = token_drop(tokens, None, threshold=0.9)
    assert kept.tolist()[:10] == list(range(10)) and kept.numel() == 10
