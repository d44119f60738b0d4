"""Adapter for Qwen2-VL and Qwen2.5-VL (M-RoPE), and the built-in model (a tiny Qwen2-VL).

Frames of a chunk are resized (a fixed size from streamrt.json, else `smart_resize` with the
checkpoint's min/max pixels), normalised and patchified with the temporal patch holding the chunk's
frames (`streamrt.models.vlm.preprocess`, bit-identical to the HF image processor), then encoded by
the model's own vision tower (`model.model.visual`, merged tokens). Text and vision enter the
language model (`model.model.language_model`) as embeddings with explicit M-RoPE positions.

Default template: Qwen's chat markup (<|im_start|>system ...); the built-in model's streamrt.json
overrides it with its own closed-vocabulary markers and a silence token.
"""

from __future__ import annotations

import numpy as np
import torch
from streamrt.models.vlm.base import PromptTemplate, SpecialTokens, StreamSettings
from streamrt.models.vlm.hf_adapter import (
    HFAdapter,
    end_of_turn_id,
    load_model_and_tokenizer,
    normalise_from,
    read_preprocessor,
    settings_from,
    template_from,
    token_id,
)
from streamrt.models.vlm.preprocess import Normalise, normalise, qwen2_vl_patchify, resize, smart_resize

QWEN_TEMPLATE = PromptTemplate(
    system_prompt="You are watching a live video. Describe what happens and answer questions.",
    system="<|im_start|>system\n{prompt}<|im_end|>\n",
    user="<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n",
    assistant_end="\n",
    vision_prefix="<|vision_start|>",
    vision_suffix="<|vision_end|>",
)
DEFAULT_MIN_PIXELS = 56 * 56
DEFAULT_MAX_PIXELS = 28 * 28 * 1280


class Qwen2VLAdapter(HFAdapter):
    """Qwen2-VL / Qwen2.5-VL (and the built-in model)."""

    axes = 3

    def __init__(
        self, model: torch.nn.Module, tokenizer, *, min_pixels: int, max_pixels: int, **kwargs
    ) -> None:
        super().__init__(model, tokenizer, **kwargs)
        vc = model.config.vision_config
        self.patch = int(vc.patch_size)
        self.merge = int(vc.spatial_merge_size)
        self.temporal_patch = int(vc.temporal_patch_size)
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels

    @classmethod
    def from_pretrained(
        cls, path: str, *, name: str, device: torch.device, dtype: torch.dtype, settings: dict[str, object]
    ) -> Qwen2VLAdapter:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(path)
        if config.model_type == "qwen2_5_vl":
            from transformers import Qwen2_5_VLForConditionalGeneration as Model
        else:
            from transformers import Qwen2VLForConditionalGeneration as Model
        model, tokenizer = load_model_and_tokenizer(Model, path, name, device, dtype)
        proc = read_preprocessor(path)
        size = proc.get("size") if isinstance(proc.get("size"), dict) else {}
        temporal = int(config.vision_config.temporal_patch_size)
        stream = settings_from(settings, StreamSettings(2.0, temporal, None, None))
        template = template_from(settings, QWEN_TEMPLATE)
        norm = normalise_from(
            settings,
            Normalise(
                mean=tuple(proc.get("image_mean", Normalise().mean)),  # type: ignore[arg-type]
                std=tuple(proc.get("image_std", Normalise().std)),  # type: ignore[arg-type]
                rescale=float(proc.get("rescale_factor", 1 / 255)),  # type: ignore[arg-type]
            ),
        )

        eos = end_of_turn_id(tokenizer, settings, "<|im_end|>", name)
        stops = {eos} | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())
        silence = settings.get("silence_token")
        special = SpecialTokens(
            eos_id=eos,
            stop_ids=frozenset(stops),
            pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
            silence_id=token_id(tokenizer, str(silence)) if silence else None,
            user_id=token_id(tokenizer, str(settings.get("user_token", "<|im_start|>"))),
            assistant_id=token_id(tokenizer, str(settings.get("assistant_token", "<|im_start|>"))),
        )
        return cls(
            model,
            tokenizer,
            name=name,
            settings=stream,
            template=template,
            special=special,
            norm=norm,
            min_pixels=int(size.get("shortest_edge", proc.get("min_pixels", DEFAULT_MIN_PIXELS))),
            max_pixels=int(size.get("longest_edge", proc.get("max_pixels", DEFAULT_MAX_PIXELS))),
        )

    # ---- architecture hooks ------------------------------------------------------------------
    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) frames of this size are resized to."""
        if self.settings.frame_size is not None:
            return self.settings.frame_size
        return smart_resize(height, width, self.patch * self.merge, self.min_pixels, self.max_pixels)

    def pixel_patches(self, frames: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
        """uint8 [T, H, W, 3] -> (float32 patches [gt*gh*gw, 3*tp*p*p], grid in patch units)."""
        size = self.target_size(*frames.shape[1:3])
        pixels = normalise(np.stack([resize(f, size) for f in frames]), self.norm)  # [T, 3, h, w]
        return qwen2_vl_patchify(pixels, self.patch, self.merge, self.temporal_patch)

    def _encode_frames(self, frames: np.ndarray) -> tuple[torch.Tensor, tuple[int, int, int]]:
        patches, (gt, gh, gw) = self.pixel_patches(frames)
        x = torch.from_numpy(patches).to(self.device, self.dtype)
        grid = torch.tensor([[gt, gh, gw]], device=self.device)
        embeds = self.model.model.visual(x, grid_thw=grid).pooler_output  # [gt*gh*gw / merge^2, D]
        return embeds, (gt, gh // self.merge, gw // self.merge)

    def _language_model(self) -> torch.nn.Module:
        return self.model.model.language_model

    def _lm_head(self) -> torch.nn.Linear:
        return self.model.lm_head

    def _time_interval(self) -> float:
        """Qwen2.5-VL: tokens_per_second * seconds per temporal patch; Qwen2-VL: 1."""
        tps = getattr(self.model.config.vision_config, "tokens_per_second", None)
        if self.model.config.model_type != "qwen2_5_vl" or not tps:
            return 1.0
        return float(tps) * self.temporal_patch / self.settings.fps
