"""The adapter interface between the understanding engine and a vision-language model.

The engine never touches a model's inputs directly: it hands an adapter a chunk of RGB frames with
their stream times and gets back a `VisionChunk` (LLM-ready visual embeddings, their (t, h, w) grid in
merged-token units, per-token features for differential token drop); it asks the adapter to prefill
that chunk (or text ids) into a `StreamCache` and gets the next-token logits; it decodes one token at a
time with `decode_step`. The adapter owns the model (Hugging Face code, unchanged), its tokenizer, the
prompt template and the input preparation (our own resize/patchify/normalise, no torchvision).

Owns: `VisionChunk`, `SpecialTokens`, `PromptTemplate`, `StreamSettings`, `AdapterError` and the
abstract `VLMAdapter`. Does not know retention or response policy (the engine's), nor any concrete
model (see `streamrt.models.vlm.qwen2_vl`, `.idefics3`, `.builtin`); `load_adapter` lives in
`streamrt.models.vlm.loader` and is re-exported by the package.

Cache protocol (what every prefill does, in order):

    cache = adapter.new_cache(StreamCacheConfig(capacity=4096))   # HFStreamCache; cache.store is the StreamCache
    logits = adapter.prefill_text(cache, adapter.system_ids(), kind="system")
    chunk = adapter.encode_chunk(frames, times)                    # frames: [T, H, W, 3] uint8
    kept = token_drop(chunk.features, prev, threshold=0.9)         # optional, indices into chunk tokens
    logits = adapter.prefill_vision(cache, chunk, kept)            # [V] next-token logits after the chunk
    if adapter.special.silence_id is not None and logits.argmax() == adapter.special.silence_id:
        adapter.prefill_text(cache, [adapter.special.silence_id], kind="assistant")   # silence enters history
    else:
        tok = int(logits.argmax())
        while tok not in adapter.special.stop_ids:
            logits = adapter.decode_step(cache, tok)               # appends tok, returns [V]
            tok = int(logits.argmax())
        adapter.prefill_text(cache, [tok] + adapter.turn_end_ids(), kind="assistant")  # close the turn
    logits = adapter.prefill_text(cache, adapter.user_ids("what colour is the square?"), kind="user")

Every token the model has produced is fed back through `decode_step`/`prefill_text`, so the cache
always holds exactly the sequence layout the model was trained on (for the built-in model: system
prompt, then per chunk the vision tokens followed by either the silence token or the commentary and
eos; questions as user turns followed by the answer and eos).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from streamrt.cache import HFStreamCache, StreamCacheConfig

TextKind = Literal["system", "text", "user", "assistant"]
"""Segment kinds a text prefill may register in the StreamCache (see `streamrt.cache.SegmentKind`)."""


class AdapterError(RuntimeError):
    """A model that cannot be loaded or an input an adapter cannot take; `code` is stable.

    Codes: E_MODEL_UNKNOWN (no such path/hub id, or a model_type without an adapter), E_MODEL_LOAD
    (the checkpoint exists but failed to load), E_MODEL_INPUT (bad frames/ids), E_MODEL_DEVICE
    (device/dtype not available), E_MODEL_POSITIONS (a fixed position limit would be exceeded).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True, slots=True)
class VisionChunk:
    """One chunk of frames after the vision encoder, ready to prefill.

    Tokens are in (t, h, w) raster order; `kept` indices from differential token drop index this
    order and select rows of `embeds` and columns of the chunk's positions alike.
    """

    embeds: torch.Tensor  # [N, D_text], N = t*h*w, model dtype, on the model device
    features: torch.Tensor  # [t, h*w, C] per-token features for token drop (C = D_text here)
    grid_thw: tuple[int, int, int]  # (t, h, w) in merged (LLM) tokens
    times: tuple[float, ...]  # stream time in seconds of each input frame (len = frames in the chunk)
    time_interval: float = 1.0
    """M-RoPE temporal position step per grid t (ignored by 1-D RoPE models)."""

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid_thw
        return t * h * w

    @property
    def timestamp(self) -> float:
        """Stream time of the chunk (its first frame)."""
        return self.times[0]


@dataclass(frozen=True, slots=True)
class SpecialTokens:
    """Token ids the engine needs to drive a model."""

    eos_id: int
    """End of a generated turn (the token `decode_step` loops stop on)."""
    stop_ids: frozenset[int]
    """Every id that ends generation (eos and, e.g., Qwen's <|im_end|>)."""
    pad_id: int
    silence_id: int | None
    """The 'nothing to say' token after a vision chunk (built-in model); None if the model has none."""
    user_id: int | None
    """First token of a user turn marker, if the template has a dedicated one."""
    assistant_id: int | None
    """First token of an assistant turn marker, if the template has a dedicated one."""


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """The text around system prompt, questions and answers, as strings the tokenizer encodes
    (special tokens written literally, e.g. "<|im_start|>")."""

    system_prompt: str
    """Default system prompt text."""
    system: str
    """Format with {prompt}: the whole system segment."""
    user: str
    """Format with {question}: a user turn, ending with the assistant turn opener."""
    assistant_end: str
    """Appended after a finished assistant turn's stop token (may be empty)."""
    vision_prefix: str = ""
    """Text tokens placed before every vision chunk inside its segment (e.g. <|vision_start|>)."""
    vision_suffix: str = ""
    """Text tokens placed after every vision chunk inside its segment (e.g. <|vision_end|>)."""


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """How a model wants its stream sampled."""

    fps: float
    """Frames per second the model expects."""
    frames_per_chunk: int
    """Frames encoded together as one chunk (Qwen2-VL: temporal_patch_size)."""
    frame_size: tuple[int, int] | None
    """(height, width) every frame is resized to before patchify (decode at this size to save work);
    None: the adapter derives it from each input's size (e.g. Qwen2-VL's smart_resize)."""
    max_positions: int | None
    """Fixed position limit of a 1-D RoPE model (Idefics3/SmolVLM); None when unbounded (M-RoPE)."""


class VLMAdapter(ABC):
    """What the engine calls. Implementations wrap a Hugging Face model without changing its code."""

    model: torch.nn.Module
    """The Hugging Face model (eval mode)."""
    device: torch.device
    dtype: torch.dtype
    name: str
    """What it was loaded from (path, hub id or 'builtin')."""

    @classmethod
    @abstractmethod
    def from_pretrained(
        cls,
        path: str,
        *,
        name: str,
        device: torch.device,
        dtype: torch.dtype,
        settings: dict[str, object],
    ) -> VLMAdapter:
        """Load from a local directory or hub id (`settings`: the directory's streamrt.json overrides,
        {} if none). Use `streamrt.models.vlm.load_adapter`, which picks the class."""

    # ---- stream shape ------------------------------------------------------------------------
    @property
    @abstractmethod
    def settings(self) -> StreamSettings: ...

    @property
    def fps(self) -> float:
        return self.settings.fps

    @property
    def frames_per_chunk(self) -> int:
        return self.settings.frames_per_chunk

    # ---- tokenizer and template ----------------------------------------------------------------
    @property
    @abstractmethod
    def special(self) -> SpecialTokens: ...

    @property
    @abstractmethod
    def template(self) -> PromptTemplate: ...

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Text (special tokens written literally are recognised) -> ids, no BOS/EOS added."""

    @abstractmethod
    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        """Ids -> text."""

    def system_ids(self, prompt: str | None = None) -> list[int]:
        """The system segment (default prompt if None)."""
        t = self.template
        return self.encode(t.system.format(prompt=t.system_prompt if prompt is None else prompt))

    def user_ids(self, question: str) -> list[int]:
        """A user turn asking `question`, ending with the assistant opener (prefill, then decode)."""
        return self.encode(self.template.user.format(question=question))

    def turn_end_ids(self) -> list[int]:
        """Ids that close an assistant turn after its stop token (may be empty)."""
        return self.encode(self.template.assistant_end) if self.template.assistant_end else []

    # ---- vision ----------------------------------------------------------------------------------
    @abstractmethod
    def encode_chunk(self, frames: np.ndarray, times: Sequence[float]) -> VisionChunk:
        """Encode T frames (uint8 RGB [T, H, W, 3], any size: resized to `settings.frame_size`) with
        their stream times into one VisionChunk. T must equal `frames_per_chunk` (E_MODEL_INPUT)."""

    @abstractmethod
    def chunk_positions(
        self, cache: HFStreamCache, chunk: VisionChunk, kept: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, int]:
        """Positions of the chunk's segment appended next (vision prefix/suffix text included) and
        the span it occupies. `kept` (int64 [K] ascending indices into the chunk's N tokens, or None
        for all) selects vision columns: kept tokens keep the positions they have without drop.
        Returns (positions [A, n_segment], span); A = 3 (M-RoPE) or 1."""

    @abstractmethod
    def prefill_vision(
        self, cache: HFStreamCache, chunk: VisionChunk, kept: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Append the chunk (prefix text, kept vision tokens, suffix text) as one 'vision' segment
        stamped with `chunk.timestamp` and the kept mask (bool [N] over the vision tokens), run the model over it, and return the fp32
        next-token logits at its last position: [V]."""

    # ---- text ------------------------------------------------------------------------------------
    @abstractmethod
    def forward_text(
        self,
        cache: HFStreamCache,
        ids: Sequence[int] | torch.Tensor,
        kind: TextKind = "assistant",
        timestamp: float | None = None,
    ) -> torch.Tensor:
        """Append `ids` ([n]) as one segment of `kind` and return fp32 logits at every position:
        [n, V] (speculative verification reads all of them)."""

    def prefill_text(
        self,
        cache: HFStreamCache,
        ids: Sequence[int] | torch.Tensor,
        kind: TextKind = "text",
        timestamp: float | None = None,
    ) -> torch.Tensor:
        """Append `ids` and return the fp32 next-token logits after the last one: [V]."""
        return self.forward_text(cache, ids, kind, timestamp)[-1]

    def decode_step(self, cache: HFStreamCache, token: int, timestamp: float | None = None) -> torch.Tensor:
        """Append one generated token (kind 'assistant') and return the next-token logits: [V]."""
        return self.forward_text(cache, [token], "assistant", timestamp)[-1]

    # ---- cache -----------------------------------------------------------------------------------
    @abstractmethod
    def new_cache(self, config: StreamCacheConfig | None = None, batch_size: int = 1) -> HFStreamCache:
        """A fresh StreamCache for this model (its geometry, dtype, device), wrapped for HF forward;
        `cache.store` is the StreamCache (segments, rollback, snapshot)."""
