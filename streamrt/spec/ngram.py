"""N-gram lookup drafter: proposes what followed the most recent earlier occurrence of the current
suffix in the session's own history (prompt, questions, previous responses). Streaming commentary
repeats itself from chunk to chunk, so this is nearly free and often long.

Owns nothing but its timing EMA; the index lives in `History`. Deterministic (one-hot q).
"""

from __future__ import annotations

import time

import torch

from streamrt.spec.drafter import History, cost_ema
from streamrt.spec.types import Proposal, SamplingParams


class NGramDrafter:
    """Prompt/history lookup drafting (see module docstring)."""

    name = "ngram"
    deterministic = True

    def __init__(self) -> None:
        self.seconds_per_token = 0.0

    def propose(
        self, history: History, k: int, params: SamplingParams, generator: torch.Generator | None
    ) -> Proposal:
        t0 = time.thread_time()  # pure Python on this thread: its CPU time (`cost_clock`)
        tokens = history.continuation(k)
        dt = time.thread_time() - t0
        if tokens:
            self.seconds_per_token = cost_ema(self.seconds_per_token, dt / len(tokens))
        return Proposal(tokens, None, dt)

    def reset(self) -> None:
        """No per-session state beyond the history the decoder owns."""
