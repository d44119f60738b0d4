"""The drafter interface and the session history every drafter reads.

`History` owns the token ids the session has seen and said, in order (prompt, questions, previous
responses, the response being decoded; vision tokens are not text and are left out), plus an
incremental n-gram vote index over them. It is bounded: past `2 * window` tokens the oldest are dropped
(a long stream keeps flat memory), and `start` counts the tokens dropped so far. A `Drafter` proposes draft tokens after the history's last token;
it never touches the target's cache state (a drafter that writes scratch rows beyond the cache's
length, like self-speculation, leaves `length` and every valid row as they were).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import torch

from streamrt.spec.types import Proposal, SamplingParams


def cost_clock(device: torch.device | str) -> Callable[[], float]:
    """The clock drafting and verification costs are measured with (seconds). On CPU the work runs on
    the calling thread: its CPU time, so that waits for a core or the GIL caused by other work on a
    shared machine (other sessions, other processes) are not taken for the cost of a forward and do
    not swing the planner. On an accelerator the kernels run elsewhere: wall time."""
    return time.thread_time if torch.device(device).type == "cpu" else time.perf_counter


def cost_ema(old: float, new: float, decay: float = 0.9) -> float:
    """Exponential moving average of a drafter's cost; the first measurement is taken as is."""
    return new if old == 0.0 else decay * old + (1 - decay) * new


class History:
    """Token history of one session with an n-gram vote index, bounded to the most recent `window` ..
    `2 * window` tokens.

    For every n-gram (n = min_n..max_n) the index counts which token followed it and remembers the
    favourite: the most frequent follower, the most recent one among equally frequent ones. Drafting
    (`continuation`) repeatedly takes the longest suffix n-gram that occurred before and appends its
    favourite follower. Commentary says the same sentence shapes with different words in a few
    slots: the vote copies the shape and picks each slot's most common filler, where copying the
    most recent occurrence copies the last filler."""

    def __init__(self, min_n: int = 1, max_n: int = 4, window: int = 8192) -> None:
        self.tokens: list[int] = []
        self.min_n = min_n
        self.max_n = max_n
        self.window = window
        self.start = 0
        """Tokens dropped from the front so far (`tokens[0]` is token number `start` of the session)."""
        self._votes: dict[tuple[int, ...], dict[int, list[int]]] = {}
        """n-gram -> {follower: ends of the n-gram's occurrences it followed, oldest first}."""
        self._best: dict[tuple[int, ...], int] = {}
        """n-gram -> its favourite follower (most votes; ties: most recent)."""
        self._indexed = 0
        """Followers at positions < this are counted."""

    def __len__(self) -> int:
        return len(self.tokens)

    def extend(self, ids: list[int] | tuple[int, ...]) -> None:
        self.tokens.extend(int(t) for t in ids)
        if len(self.tokens) > 2 * self.window:  # amortised: one re-index per `window` tokens
            drop = len(self.tokens) - self.window
            del self.tokens[:drop]
            self.start += drop
            self._votes.clear()
            self._best.clear()
            self._indexed = 0

    def drop_last(self) -> None:
        """Forget the last token (a decoder's pending token that never entered the model); its votes
        are withdrawn (O(max_n))."""
        e = len(self.tokens) - 1
        if self._indexed > e:
            self._vote(e, -1)
            self._indexed = e
        self.tokens.pop()

    def continuation(self, k: int) -> tuple[int, ...]:
        """Up to k tokens drafted by the vote (see class docstring): each is the favourite follower of
        the longest suffix n-gram (max_n down to min_n) of the history plus the tokens drafted so
        far; ends early when no suffix occurred before."""
        self._update()
        seq = self.tokens[-self.max_n :]
        out: list[int] = []
        best = self._best
        while len(out) < k:
            tok = None
            for n in range(min(self.max_n, len(seq)), self.min_n - 1, -1):
                tok = best.get(tuple(seq[len(seq) - n :]))
                if tok is not None:
                    break
            if tok is None:
                break
            out.append(tok)
            seq = seq[1:] + [tok] if len(seq) >= self.max_n else seq + [tok]
        return tuple(out)

    def _vote(self, e: int, delta: int) -> None:
        """Add (delta = 1) or withdraw (-1, only ever the newest) the votes of the follower at e."""
        h = self.tokens
        tok = h[e]
        for n in range(self.min_n, min(self.max_n, e) + 1):
            g = tuple(h[e - n : e])
            votes = self._votes.setdefault(g, {})
            ends = votes.setdefault(tok, [])
            if delta > 0:
                ends.append(e)
                fav = self._best.get(g)
                if fav is None or fav == tok or len(ends) >= len(votes[fav]):
                    self._best[g] = tok
                continue
            ends.pop()
            if not ends:
                del votes[tok]
            if votes:
                self._best[g] = max(votes, key=lambda t: (len(votes[t]), votes[t][-1]))
            else:
                del self._votes[g]
                del self._best[g]

    def _update(self) -> None:
        for e in range(max(self._indexed, 1), len(self.tokens)):
            self._vote(e, 1)
        self._indexed = max(self._indexed, len(self.tokens))


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
