"""Draft-model drafter: a small causal LM with the target's tokenizer, kept in step with the session
history in its own StreamCache (rollback of its rejected drafts is a pointer move there too).

Owns the draft model's cache, the token ids its valid rows hold (row i = ids[i]) and which history
token row 0 is (`base`, counted from the session's start). Each round it rolls back to the longest
common prefix of those ids and the history from `base`, feeds the missing history tokens in one
forward, then drafts k tokens one at a time. When the history outgrows the cache it restarts from the
most recent half-cache window (positions restart too: only drafting quality can change, never the
output, which the target verifies); a long stream refills once per half cache, not per round. The
draft sees text only (no vision tokens).
"""

from __future__ import annotations

import torch

from streamrt.cache import RetentionPolicy, StreamCacheConfig, stream_cache_for
from streamrt.spec.drafter import History, cost_clock, cost_ema
from streamrt.spec.sampling import draw, process
from streamrt.spec.types import Proposal, SamplingParams


class ModelDrafter:
    """A small draft LM (see module docstring)."""

    deterministic = False

    def __init__(
        self, model: torch.nn.Module, *, capacity: int = 2048, name: str = "draft", max_draft: int = 16
    ) -> None:
        self.name = name
        self.model = model.eval()
        self.capacity = capacity
        self.max_draft = max_draft
        param = next(model.parameters())
        no_evict = RetentionPolicy(sink_tokens=0, text_window=capacity, vision_chunks=0)
        self.cache, self.hf = stream_cache_for(
            model.config,
            StreamCacheConfig(capacity=capacity, retention=no_evict),
            dtype=param.dtype,
            device=param.device,
        )
        self.embed = model.get_input_embeddings()
        self.ids: list[int] = []
        self.base = 0
        self.seconds_per_token = 0.0
        self.clock = cost_clock(param.device)

    def reset(self) -> None:
        self.cache.rollback(0)
        self.ids = []
        self.base = 0

    @torch.no_grad()
    def _forward(self, ids: list[int]) -> torch.Tensor:
        pos = self.cache.append("text", len(ids))
        x = self.embed(torch.tensor([ids], device=self.cache.k.device))  # [1, n, hidden]
        out = self.model(inputs_embeds=x, position_ids=pos, past_key_values=self.hf, use_cache=True)
        self.ids.extend(ids)
        return out.logits[0, -1]  # [V]

    def _sync(self, history: History) -> tuple[torch.Tensor, int]:
        """Bring the cache to hold the history from `base` on; return the logits after its last token
        and how many tokens that forward fed."""
        h, first = history.tokens, history.start
        if self.base < first or first + len(h) - self.base + self.max_draft >= self.capacity:
            self.reset()
            self.base = max(first, first + len(h) - self.capacity // 2)
        view = h[self.base - first :]
        common = 0
        for a, b in zip(self.ids, view, strict=False):
            if a != b:
                break
            common += 1
        common = min(common, len(view) - 1)  # always re-feed at least the last token for its logits
        self.cache.rollback(common)
        del self.ids[common:]
        return self._forward(view[common:]), len(view) - common

    def propose(
        self, history: History, k: int, params: SamplingParams, generator: torch.Generator | None
    ) -> Proposal:
        t0 = self.clock()
        logits, fed = self._sync(history)
        t1 = self.clock()
        base = len(self.ids)
        tokens: list[int] = []
        qs: list[torch.Tensor] = []
        for i in range(k):
            if params.greedy:
                tok = int(logits.argmax())  # host sync: one scalar per draft token
            else:
                q = process(logits, params)  # [V]
                tok = draw(q, generator)
                qs.append(q)
            tokens.append(tok)
            if i + 1 < k:
                logits = self._forward([tok])
        self.cache.rollback(base)  # drafts are not history: a pointer move
        del self.ids[base:]
        t2 = self.clock()
        # A round costs k draft forwards: the sync (the last round's accepted tokens, a few) and k - 1
        # single-token steps. A sync that re-fed a long history (first round, restart) is not typical
        # of a round and would lock the drafter out of the planner: measure without it then.
        if fed <= self.max_draft:
            self.seconds_per_token = cost_ema(self.seconds_per_token, (t2 - t0) / max(k, 1))
        elif k > 1:
            self.seconds_per_token = cost_ema(self.seconds_per_token, (t2 - t1) / (k - 1))
        dt = t2 - t0
        return Proposal(tuple(tokens), torch.stack(qs) if qs else None, dt)
