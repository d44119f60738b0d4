"""The vision side of a session: chunk of frames -> visual tokens -> differential token drop.

`ChunkEncoder` owns the reference for the token drop (the previous chunk's last frame features,
`[h*w, C]`) and nothing else; it runs on the encoder thread, so encoding the next chunk never waits
for the language model. The drop itself is `streamrt.kernels.token_drop` (one dispatch point):
the first frame of the stream is kept whole, and kept tokens keep their positions (the adapter
selects position columns with the same indices). It does not know the cache or the response policy.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from streamrt.engine.types import Chunk, EncodedChunk
from streamrt.kernels.token_drop import token_drop
from streamrt.models.vlm import VLMAdapter


def frame_change(features: torch.Tensor, prev: torch.Tensor | None) -> float:
    """1 - the lowest cosine similarity between consecutive frames' mean features.

    features: [T, N, C] (T frames of N tokens); prev: [N, C] the previous frame or None.
    """
    means = features.float().mean(1)  # [T, C]
    if prev is not None:
        means = torch.cat([prev.float().mean(0, keepdim=True), means])  # [T+1, C]
    if means.shape[0] < 2:
        return 0.0
    sim = torch.nn.functional.cosine_similarity(means[1:], means[:-1], dim=-1)  # [T or T-1]
    return float(1.0 - sim.min())  # host sync: one scalar per chunk


class ChunkEncoder:
    """Encode chunks in stream order and apply the differential token drop."""

    def __init__(self, adapter: VLMAdapter, threshold: float | None, budget: int | None) -> None:
        self.adapter = adapter
        self.threshold = threshold
        self.budget = budget
        self._prev: torch.Tensor | None = None  # [h*w, C] last frame of the previous chunk

    def reset(self) -> None:
        """Forget the reference frame (the next chunk's first frame is kept whole)."""
        self._prev = None

    @torch.inference_mode()
    def encode(self, chunk: Chunk) -> EncodedChunk:
        t0 = time.perf_counter()
        frames = np.stack([f.pixels for f in chunk.frames])  # [T, H, W, 3] uint8
        vision = self.adapter.encode_chunk(frames, [f.t for f in chunk.frames])
        feats = vision.features  # [t, h*w, C]
        prev = self._prev if self._prev is not None and self._prev.shape == feats.shape[1:] else None
        kept = None
        if self.threshold is not None or self.budget is not None:
            threshold = self.threshold if self.threshold is not None else float("inf")
            kept = token_drop(feats, prev, threshold=threshold, budget=self.budget)  # [K]
        change = frame_change(feats, prev)
        self._prev = feats[-1].detach()
        return EncodedChunk(chunk, vision, kept, change, time.perf_counter() - t0)
