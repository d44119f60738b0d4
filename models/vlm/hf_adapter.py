"""The shared body of the Hugging Face adapters: tokenizer access, template and settings overrides
from `streamrt.json`, text and vision-chunk prefill into a StreamCache, positions, logits.

A concrete adapter (Qwen2-VL, Idefics3) supplies only what differs: how frames become visual
embeddings (`_encode_frames`), the language model and head (`_language_model`, `_lm_head`), the
number of position axes and the temporal interval. The model code itself stays Hugging Face's: the
language model is called with `inputs_embeds`, explicit `position_ids` and the StreamCache shim.

Owns the model, its tokenizer and the adapter's settings; does not know retention or response policy.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from streamrt.cache import HFStreamCache, StreamCacheConfig, stream_cache_for, use_gqa_attention
from streamrt.models.vlm.base import (
    AdapterError,
    PromptTemplate,
    SpecialTokens,
    StreamSettings,
    TextKind,
    VisionChunk,
    VLMAdapter,
)
from streamrt.models.vlm.layout import chunk_positions
from streamrt.models.vlm.preprocess import Normalise


def template_from(overrides: dict[str, object], default: PromptTemplate) -> PromptTemplate:
    """A template with the fields of streamrt.json's "template" dict replacing the defaults."""
    t = overrides.get("template")
    if not isinstance(t, dict):
        return default
    fields = {k: str(v) for k, v in t.items() if k in PromptTemplate.__dataclass_fields__}
    return PromptTemplate(
        **{**{f: getattr(default, f) for f in PromptTemplate.__dataclass_fields__}, **fields}
    )


def settings_from(overrides: dict[str, object], default: StreamSettings) -> StreamSettings:
    """Stream settings with streamrt.json's fps / frames_per_chunk / frame_size replacing the defaults."""
    size = overrides.get("frame_size", default.frame_size)
    return StreamSettings(
        fps=float(overrides.get("fps", default.fps)),  # type: ignore[arg-type]
        frames_per_chunk=int(overrides.get("frames_per_chunk", default.frames_per_chunk)),  # type: ignore[arg-type]
        frame_size=tuple(size) if size else None,  # type: ignore[arg-type]
        max_positions=default.max_positions,
    )


def normalise_from(overrides: dict[str, object], default: Normalise) -> Normalise:
    n = overrides.get("normalise")
    if not isinstance(n, dict):
        return default
    return Normalise(
        mean=tuple(n["mean"]), std=tuple(n["std"]), rescale=float(n.get("rescale", default.rescale))
    )


def read_preprocessor(path: str) -> dict[str, object]:
    """preprocessor_config.json of a local checkpoint or hub id ({} when absent: adapters fall back to
    their model family's defaults)."""
    local = Path(path) / "preprocessor_config.json"
    if local.is_file():
        return json.loads(local.read_text())
    if Path(path).is_dir():
        return {}
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(path, "preprocessor_config.json")).read_text())
    except Exception:  # a hub checkpoint without a processor config
        return {}


def load_model_and_tokenizer(model_cls, path: str, name: str, device: torch.device, dtype: torch.dtype):
    """`model_cls.from_pretrained(path)` on `device` in `dtype` and its tokenizer; E_MODEL_LOAD on failure."""
    from transformers import AutoTokenizer

    try:
        model = model_cls.from_pretrained(path, dtype=dtype).to(device)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, RuntimeError) as e:
        raise AdapterError("E_MODEL_LOAD", f"{name}: {e}") from e
    return model, tokenizer


def token_id(tokenizer, token: str) -> int | None:
    """The id of `token`, or None when the tokenizer does not know it (maps it to its unknown token)."""
    i = tokenizer.convert_tokens_to_ids(token)
    if i is None or (i == tokenizer.unk_token_id and token != tokenizer.unk_token):
        return None
    return int(i)


def end_of_turn_id(tokenizer, settings: dict[str, object], default: str, name: str) -> int:
    """The end-of-turn token: `settings["eos_token"]` (else `default`), else the tokenizer's eos."""
    eos = token_id(tokenizer, str(settings.get("eos_token", default)))
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        raise AdapterError("E_MODEL_LOAD", f"{name}: tokenizer has no end-of-turn token")
    return int(eos)


class HFAdapter(VLMAdapter):
    """Common implementation over a Hugging Face vision-language model (see module docstring)."""

    axes: int
    """Position axes: 3 (M-RoPE) or 1."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,  # PreTrainedTokenizerBase
        *,
        name: str,
        settings: StreamSettings,
        template: PromptTemplate,
        special: SpecialTokens,
        norm: Normalise,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self._settings = settings
        self._template = template
        self._special = special
        self.norm = norm
        use_gqa_attention(self._language_model())  # multi-token forwards without K/V head copies
        self._prefix = self.encode(template.vision_prefix) if template.vision_prefix else []
        self._suffix = self.encode(template.vision_suffix) if template.vision_suffix else []

    # ---- properties ----------------------------------------------------------------------------
    @property
    def settings(self) -> StreamSettings:
        return self._settings

    @property
    def special(self) -> SpecialTokens:
        return self._special

    @property
    def template(self) -> PromptTemplate:
        return self._template

    @property
    def vocab_size(self) -> int:
        return self._lm_head().weight.shape[0]

    # ---- tokenizer -----------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special)

    def token_id(self, token: str) -> int:
        """Id of one token string (E_MODEL_LOAD when the tokenizer lacks it)."""
        i = self.tokenizer.convert_tokens_to_ids(token)
        if i is None or i == self.tokenizer.unk_token_id and token != self.tokenizer.unk_token:
            raise AdapterError("E_MODEL_LOAD", f"{self.name}: tokenizer has no token {token!r}")
        return int(i)

    # ---- model pieces (per architecture) -------------------------------------------------------
    @abstractmethod
    def _encode_frames(self, frames: np.ndarray) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """uint8 [T, H, W, 3] -> (embeds [t*h*w, D_text], (t, h, w) merged grid)."""

    @abstractmethod
    def _language_model(self) -> torch.nn.Module:
        """The decoder stack taking inputs_embeds/position_ids/past_key_values."""

    @abstractmethod
    def _lm_head(self) -> torch.nn.Linear: ...

    def _time_interval(self) -> float:
        return 1.0

    # ---- vision --------------------------------------------------------------------------------
    def check_frames(self, frames: np.ndarray, times: Sequence[float]) -> None:
        """E_MODEL_INPUT unless frames is uint8 [frames_per_chunk, H, W, 3] with one time per frame."""
        n = self.settings.frames_per_chunk
        if (
            not isinstance(frames, np.ndarray)
            or frames.dtype != np.uint8
            or frames.ndim != 4
            or frames.shape[-1] != 3
        ):
            got = getattr(frames, "shape", type(frames).__name__), getattr(frames, "dtype", "")
            raise AdapterError("E_MODEL_INPUT", f"frames must be uint8 [T, H, W, 3], got {got}")
        if frames.shape[0] != n or len(times) != n:
            raise AdapterError(
                "E_MODEL_INPUT",
                f"{self.name} takes chunks of {n} frames; got {frames.shape[0]} frames and {len(times)} times",
            )

    @torch.inference_mode()
    def encode_chunk(self, frames: np.ndarray, times: Sequence[float]) -> VisionChunk:
        self.check_frames(frames, times)
        embeds, grid = self._encode_frames(frames)  # [N, D]
        t, h, w = grid
        return VisionChunk(
            embeds=embeds,
            features=embeds.reshape(t, h * w, -1),
            grid_thw=grid,
            times=tuple(float(x) for x in times),
            time_interval=self._time_interval(),
        )

    def chunk_positions(
        self, cache: HFStreamCache, chunk: VisionChunk, kept: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, int]:
        return chunk_positions(
            cache.store.next_position,
            len(self._prefix),
            chunk.grid_thw,
            len(self._suffix),
            interval=chunk.time_interval,
            axes=self.axes,
            kept=kept,
        )

    @torch.inference_mode()
    def prefill_vision(
        self, cache: HFStreamCache, chunk: VisionChunk, kept: torch.Tensor | None = None
    ) -> torch.Tensor:
        pos, span = self.chunk_positions(cache, chunk, kept)
        self._check_positions(cache, span)
        vis = chunk.embeds if kept is None else chunk.embeds[kept.to(chunk.embeds.device)]
        parts = [self._embed(self._prefix), vis.to(self.dtype), self._embed(self._suffix)]
        x = torch.cat(parts)[None]  # [1, n, D]
        mask = None
        if kept is not None:
            mask = torch.zeros(chunk.num_tokens, dtype=torch.bool)
            mask[kept.cpu()] = True
        pids = cache.store.append("vision", positions=pos, span=span, timestamp=chunk.timestamp, kept=mask)
        return self._run(cache, x, pids, last_only=True)[-1]

    # ---- text ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def forward_text(
        self,
        cache: HFStreamCache,
        ids: Sequence[int] | torch.Tensor,
        kind: TextKind = "assistant",
        timestamp: float | None = None,
    ) -> torch.Tensor:
        return self._text(cache, ids, kind, timestamp, last_only=False)

    @torch.inference_mode()
    def prefill_text(
        self,
        cache: HFStreamCache,
        ids: Sequence[int] | torch.Tensor,
        kind: TextKind = "text",
        timestamp: float | None = None,
    ) -> torch.Tensor:
        return self._text(cache, ids, kind, timestamp, last_only=True)[-1]

    def _text(
        self,
        cache: HFStreamCache,
        ids: Sequence[int] | torch.Tensor,
        kind: TextKind,
        timestamp,
        last_only: bool,
    ) -> torch.Tensor:
        ids = torch.as_tensor(ids, dtype=torch.long).flatten()
        if ids.numel() == 0:
            raise AdapterError("E_MODEL_INPUT", "no token ids to prefill")
        self._check_positions(cache, ids.numel())
        pids = cache.store.append(kind, n=ids.numel(), timestamp=timestamp)
        return self._run(cache, self._embed(ids)[None], pids, last_only=last_only)

    # ---- cache ---------------------------------------------------------------------------------
    def new_cache(self, config: StreamCacheConfig | None = None, batch_size: int = 1) -> HFStreamCache:
        _, hf = stream_cache_for(
            self.model.config, config, batch_size=batch_size, dtype=self.dtype, device=self.device
        )
        return hf

    # ---- internals -----------------------------------------------------------------------------
    def _embed(self, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        return self._language_model().embed_tokens(ids)  # [n, D]

    def _run(
        self, cache: HFStreamCache, x: torch.Tensor, position_ids: torch.Tensor, *, last_only: bool = False
    ) -> torch.Tensor:
        """x: [1, n, D] -> fp32 logits [n, V] ([1, V] with `last_only`: a prefill needs only the next
        token, and the output layer over every position costs n x D x V); writes the chunk's K/V."""
        out = self._language_model()(
            inputs_embeds=x, position_ids=position_ids.to(self.device), past_key_values=cache, use_cache=True
        )
        hidden = out.last_hidden_state[0]  # [n, D]
        return self._lm_head()(hidden[-1:] if last_only else hidden).float()

    def _check_positions(self, cache: HFStreamCache, span: int) -> None:
        limit = self.settings.max_positions
        if limit is not None and cache.store.next_position + span > limit:
            raise AdapterError(
                "E_MODEL_POSITIONS",
                f"{self.name}: position {cache.store.next_position + span} exceeds the model's limit {limit}; "
                "use a compacting position policy or a smaller cache",
            )
