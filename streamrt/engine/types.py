"""What passes between the stages of the understanding engine (frozen, slotted records).

Times: `t` fields are stream time in seconds (since the source's first frame); `capture`, `ready`,
`deadline` and `output` fields are `time.monotonic()` seconds on this machine. Latency of an output is
`output - capture`; its deadline was met when `output <= deadline`.

Flow: `SampledFrame` (ingest, at the model's fps) -> `Chunk` (frames_per_chunk frames) ->
`EncodedChunk` (visual tokens after the differential token drop) -> the language model, which emits
`Output`s: `TextDelta` (a piece of a response as it is decoded), `ResponseEnd` (the response is
complete, with its full text) and `ChunkDone` (one record per chunk: tokens kept, silence
probability, latency). `Question` enters at any time. Nothing here computes anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from streamrt.models.vlm import VisionChunk

ResponseKind = Literal["commentary", "answer"]
EndReason = Literal["eos", "max_tokens", "deadline", "end_of_stream"]


@dataclass(frozen=True, slots=True)
class SampledFrame:
    """One frame on the model's time grid."""

    pixels: np.ndarray  # [H, W, 3] uint8 RGB
    t: float
    """Stream time of the frame in seconds."""
    capture: float
    """Monotonic time the frame became available (live: grabbed; file: decoded or paced release)."""
    index: int
    """Rank on the model's grid (0, 1, 2, ... at the model's fps)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """`frames_per_chunk` consecutive sampled frames: the unit of vision encoding and cache eviction."""

    index: int
    frames: tuple[SampledFrame, ...]
    t_start: float
    """Stream time of the first frame."""
    t_end: float
    """Stream time just after the last frame (last t + 1 / fps)."""
    ready: float
    """Monotonic time the chunk became complete (capture time of its last frame)."""
    deadline: float
    """Monotonic time by which its outputs are due (ready + the per-chunk budget)."""


@dataclass(frozen=True, slots=True)
class EncodedChunk:
    """A chunk after the vision encoder and the differential token drop.

    `kept` indexes the kept tokens in the chunk's t*h*w token grid (ascending); the adapter selects
    both embeddings and position columns with it, so kept tokens keep their positions. None: the
    drop is off and every token goes in.
    """

    chunk: Chunk
    vision: VisionChunk
    kept: torch.Tensor | None  # [K] int64 indices into vision.embeds rows, ascending; None = all
    change: float
    """Scene change (see `streamrt.engine.policy.Signal.change`)."""
    encode_s: float
    """Seconds spent in the vision encoder and the token drop."""

    @property
    def total_tokens(self) -> int:
        return self.vision.num_tokens

    @property
    def kept_tokens(self) -> int:
        return self.total_tokens if self.kept is None else int(self.kept.numel())


@dataclass(frozen=True, slots=True)
class Question:
    """A question asked at stream time `t`; answered at the first chunk boundary at or after `t`."""

    t: float
    text: str
    id: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of a response, streamed as it is decoded."""

    segment: int
    """Response id (increasing); every delta and the end of one response share it."""
    kind: ResponseKind
    text: str
    t: float
    """Stream time the response refers to (end of the chunk it was decided on)."""
    capture: float
    output: float
    deadline_met: bool
    question: str | None = None
    """Question id for answers."""


@dataclass(frozen=True, slots=True)
class ResponseEnd:
    """A complete response (it has entered the text memory)."""

    segment: int
    kind: ResponseKind
    text: str
    t: float
    tokens: int
    reason: EndReason
    trigger: str
    """Why it was produced: the response policy's reason, or "question"."""
    capture: float
    output: float
    deadline_met: bool
    question: str | None = None
    question_text: str | None = None


@dataclass(frozen=True, slots=True)
class ChunkDone:
    """One record per chunk that reached the language model."""

    index: int
    t_start: float
    t_end: float
    tokens_total: int
    tokens_kept: int
    p_silence: float
    """Probability of the silence token at the end of the chunk's prefill."""
    spoke: bool
    capture: float
    """Monotonic time the chunk was ready."""
    output: float
    """Monotonic time its prefill and response decision were done."""
    deadline_met: bool
    encode_s: float
    prefill_s: float


Output = TextDelta | ResponseEnd | ChunkDone
