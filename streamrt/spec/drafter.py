"""The drafter interface and the session history every drafter reads.

`History` owns the token ids the session has seen and said, in order (prompt, questions, previous
responses, the response being decoded; vision tokens are not text and are left out), plus an
incremental n-gram index over them. It is bounded: past `2 * window` tokens the oldest are dropped
(a long stream keeps flat memory), and `start` counts the tokens dropped so far. A `Drafter` proposes draft tokens after the history's last token;
it never touches the target's cache state (a drafter that writes scratch rows beyond the cache's
length, like self-speculation, leaves `length` and every valid row as they were).
"""

from __future__ import annotations

from typing import Protocol

import torch

from streamrt.spec.types import Proposal, SamplingParams


def cost_ema(old: float, new: float, decay: float = 0.9) -> float:
    """Exponential moving average of a drafter's cost; the first measurement is taken as is."""
    return new if old == 0.0 else decay * old + (1 - decay) * new


class History:
    """Token history of one session with an n-gram index (most recent occurrence), bounded to the
    most recent `window` .. `2 * window` tokens."""

    def __init__(self, min_n: int = 1, max_n: int = 4, window: int = 8192) -> None:
        self.tokens: list[int] = []
        self.min_n = min_n
        self.max_n = max_n
        self.window = window
        self.start = 0
        """Tokens dropped from the front so far (`tokens[0]` is token number `start` of the session)."""
        self._index: dict[tuple[int, ...], int] = {}
        """n-gram -> end (exclusive) of its most recent occurrence; valid while a token follows it."""
        self._indexed = 0
        """n-grams ending at positions < this are indexed."""

    def __len__(self) -> int:
        return len(self.tokens)

    def extend(self, ids: list[int] | tuple[int, ...]) -> None:
        self.tokens.extend(int(t) for t in ids)
        if len(self.tokens) > 2 * self.window:  # amortised: one re-index per `window` tokens
            drop = len(self.tokens) - self.window
            del self.tokens[:drop]
            self.start += drop
            self._index.clear()
            self._indexed = 0

    def drop_last(self) -> None:
        """Forget the last token (a decoder's pending token that never entered the model). O(1): index
        entries whose continuation it was become invalid until a token takes its place."""
        self.tokens.pop()
        self._indexed = min(self._indexed, len(self.tokens))

    def continuation(self, k: int) -> tuple[int, ...]:
        """Up to k tokens that followed the most recent earlier occurrence of the longest suffix
        n-gram (max_n down to min_n); empty when no suffix occurred before. When that occurrence is
        so recent that its continuation runs into the end of the history (a repeating pattern), the
        lookup is repeated on the history extended by what was found so far."""
        self._update()
        h = self.tokens
        out: list[int] = []
        while len(out) < k:
            found = self._lookup(h[-self.max_n :] + out if out else h, k - len(out))
            if not found:
                break
            out += found
        return tuple(out)

    def _lookup(self, seq: list[int], k: int) -> list[int]:
        h = self.tokens
        for n in range(min(self.max_n, len(seq)), self.min_n - 1, -1):
            end = self._index.get(tuple(seq[len(seq) - n :]))
            if end is not None and end < len(h):
                return h[end : end + k]
        return []

    def _update(self) -> None:
        h = self.tokens
        # index n-grams ending at e for e < len(h) (their continuation token h[e] exists)
        for e in range(max(self._indexed, 1), len(h)):
            for n in range(self.min_n, min(self.max_n, e) + 1):
                self._index[tuple(h[e - n : e])] = e
        self._indexed = max(self._indexed, len(h))


class Drafter(Protocol):
    """Proposes draft tokens following `history.tokens[-1]` (the token the target consumes next)."""

    name: str
    deterministic: bool
    """True: proposals carry no q (one-hot); False: tokens are sampled from the returned q."""
    seconds_per_token: float
    """Measured (EMA) drafting time per proposed token; the planner weighs it against the target."""

    def propose(
        self, history: History, k: int, params: SamplingParams, generator: torch.Generator | None
    ) -> Proposal: ...

    def reset(self) -> None:
        """Forget any per-session state (a new session starts)."""
