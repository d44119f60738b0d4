"""Self-speculation drafter: the target's own first N decoder layers, then its final norm and LM head,
draft the next tokens. Works with any Hugging Face decoder (Llama, Qwen2, the language model of
Qwen2-VL ...), needs no training and no extra weights.

Zero-copy context: layers 0..N-1 of the draft are layers 0..N-1 of the target, so the target's
StreamCache rows already hold exactly the K/V the draft needs for the whole context. Draft tokens
write their early-layer K/V into the scratch rows just past the cache's `length` (the next verify
forward overwrites those rows; `length`, the segment table and every valid row stay untouched).

Owns only the scratch-row adapter; knows the decoder layout of transformers 5.x models (embeddings,
`rotary_emb`, `layers`, `norm`, output embeddings), nothing about acceptance.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from streamrt.cache import StreamCache
from streamrt.spec.drafter import History, cost_clock, cost_ema
from streamrt.spec.sampling import draw, process
from streamrt.spec.types import Proposal, SamplingParams, SpecError


class _ScratchLayer(CacheLayerMixin):
    """One early layer's view of the target cache: valid rows + scratch rows past `length`."""

    is_sliding = False
    is_compileable = False

    def __init__(self, store: StreamCache, layer: int, cursor: list[int]) -> None:
        super().__init__()
        self.store, self.layer, self.cursor = store, layer, cursor
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Buffers belong to the target's StreamCache."""

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # key_states: [B, H, n, D] -> views [B, H, row + n, D]
        row, n = self.cursor[0], key_states.shape[-2]
        self.store.k[self.layer, :, :, row : row + n] = key_states
        self.store.v[self.layer, :, :, row : row + n] = value_states
        return self.store.k[self.layer, :, :, : row + n], self.store.v[self.layer, :, :, : row + n]

    def get_seq_length(self) -> int:
        return self.cursor[0]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.cursor[0] + query_length, 0

    def get_max_length(self) -> int:
        return self.store.config.capacity


class _ScratchCache(Cache):
    def __init__(self, store: StreamCache, layers: int, cursor: list[int]) -> None:
        super().__init__(layers=[_ScratchLayer(store, i, cursor) for i in range(layers)])


def _decoder(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack of a causal LM or of a VLM's language model."""
    inner = getattr(model, "model", model)
    dec = getattr(inner, "language_model", inner)
    for attr in ("embed_tokens", "layers", "norm", "rotary_emb"):
        if not hasattr(dec, attr):
            raise SpecError("E_SPEC_MODEL", f"{type(model).__name__}: decoder has no `{attr}`")
    return dec


class SelfSpecDrafter:
    """Early-exit self-speculation over the target's first `layers` layers (see module docstring)."""

    deterministic = False

    def __init__(self, model: torch.nn.Module, cache: StreamCache, layers: int) -> None:
        self.dec = _decoder(model)
        if not 0 < layers < len(self.dec.layers):
            raise SpecError("E_SPEC_ARGS", f"self-speculation needs 0 < layers < {len(self.dec.layers)}")
        self.name = f"self{layers}"
        self.layers = list(self.dec.layers[:layers])
        self.head = model.get_output_embeddings()
        self.store = cache
        self.cursor = [0]
        self.scratch = _ScratchCache(cache, layers, self.cursor)
        self.seconds_per_token = 0.0
        self.clock = cost_clock(cache.k.device)

    def reset(self) -> None:
        """State lives in the target cache."""

    @torch.no_grad()
    def _step(self, token: int, row: int) -> torch.Tensor:
        store = self.store
        self.cursor[0] = row
        pos = store.model_position_ids(store.positions_for(1) + (row - store.length))  # [B, 1] / [3, B, 1]
        h = self.dec.embed_tokens(torch.tensor([[token]], device=store.k.device))  # [1, 1, hidden]
        pe = self.dec.rotary_emb(h, pos)
        for layer in self.layers:
            out = layer(
                h, attention_mask=None, position_ids=pos, past_key_values=self.scratch, position_embeddings=pe
            )
            h = out[0] if isinstance(out, tuple) else out
        return self.head(self.dec.norm(h))[0, -1]  # [V]

    def propose(
        self, history: History, k: int, params: SamplingParams, generator: torch.Generator | None
    ) -> Proposal:
        t0 = self.clock()
        store = self.store
        if store.length + k > store.config.capacity:
            raise SpecError("E_SPEC_ROOM", "no scratch rows left for self-speculation")
        tokens: list[int] = []
        qs: list[torch.Tensor] = []
        tok = history.tokens[-1]
        for i in range(k):
            logits = self._step(tok, store.length + i)
            if params.greedy:
                tok = int(logits.argmax())  # host sync: one scalar per draft token
            else:
                q = process(logits, params)  # [V]
                tok = draw(q, generator)
                qs.append(q)
            tokens.append(tok)
        dt = self.clock() - t0
        self.seconds_per_token = cost_ema(self.seconds_per_token, dt / max(k, 1))
        return Proposal(tuple(tokens), torch.stack(qs) if qs else None, dt)
