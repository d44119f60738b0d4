"""Adapter for SmolVLM / Idefics3 (Llama text model, 1-D RoPE, fixed position limit).

Each frame is one image: resized as the Idefics3 processor does without image splitting (longest
edge, then the square encoder size, LANCZOS), normalised, encoded by the model's vision tower and
pixel-shuffle connector (`model.model.get_image_features`) into `(image_size / patch / scale)^2`
tokens. A chunk of T frames is laid out frame after frame between the template's vision prefix and
suffix (default `<fake_token_around_image><global-img>` ... `<fake_token_around_image>`, one frame
per chunk at 1 fps, as SmolVLM reads video frames). Positions are consecutive (1-D) and bounded by
`max_position_embeddings`: the adapter refuses to go past it (E_MODEL_POSITIONS), so the engine must
use a compacting position policy to run for ever.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
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
from streamrt.models.vlm.preprocess import HALF_MEAN_STD, Normalise, idefics3_sizes, normalise, resize

SMOLVLM_TEMPLATE = PromptTemplate(
    system_prompt="You are watching a live video. Describe what happens and answer questions.",
    system="<|im_start|>System: {prompt}<end_of_utterance>\n",
    user="User: {question}<end_of_utterance>\nAssistant:",
    assistant_end="\n",
    vision_prefix="<fake_token_around_image><global-img>",
    vision_suffix="<fake_token_around_image>",
)


class Idefics3Adapter(HFAdapter):
    """SmolVLM / Idefics3."""

    axes = 1

    def __init__(
        self, model: torch.nn.Module, tokenizer, *, longest_edge: int, resample: int, **kwargs
    ) -> None:
        super().__init__(model, tokenizer, **kwargs)
        self.image_size = int(model.config.vision_config.image_size)
        self.longest_edge = longest_edge
        self.resample = Image.Resampling(resample)
        side = self.image_size // int(model.config.vision_config.patch_size) // int(model.config.scale_factor)
        self.side = side  # tokens per image side after the pixel shuffle

    @classmethod
    def from_pretrained(
        cls, path: str, *, name: str, device: torch.device, dtype: torch.dtype, settings: dict[str, object]
    ) -> Idefics3Adapter:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(path)
        if config.model_type == "smolvlm":
            from transformers import SmolVLMForConditionalGeneration as Model
        else:
            from transformers import Idefics3ForConditionalGeneration as Model
        model, tokenizer = load_model_and_tokenizer(Model, path, name, device, dtype)
        proc = read_preprocessor(path)
        image_size = int(config.vision_config.image_size)
        longest = int((proc.get("size") or {}).get("longest_edge", image_size))
        max_pos = int(config.get_text_config().max_position_embeddings)
        stream = settings_from(settings, StreamSettings(1.0, 1, None, max_pos))
        norm = normalise_from(
            settings,
            Normalise(
                mean=tuple(proc.get("image_mean", HALF_MEAN_STD)),  # type: ignore[arg-type]
                std=tuple(proc.get("image_std", HALF_MEAN_STD)),  # type: ignore[arg-type]
                rescale=float(proc.get("rescale_factor", 1 / 255)),  # type: ignore[arg-type]
            ),
        )

        eos = end_of_turn_id(tokenizer, settings, "<end_of_utterance>", name)
        silence = settings.get("silence_token")
        special = SpecialTokens(
            eos_id=eos,
            stop_ids=frozenset(
                {eos} | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())
            ),
            pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
            silence_id=token_id(tokenizer, str(silence)) if silence else None,
            user_id=None,
            assistant_id=None,
        )
        return cls(
            model,
            tokenizer,
            name=name,
            settings=stream,
            template=template_from(settings, SMOLVLM_TEMPLATE),
            special=special,
            norm=norm,
            longest_edge=longest,
            resample=int(proc.get("resample", Image.Resampling.LANCZOS)),
        )

    def pixel_values(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [T, H, W, 3] -> float32 [T, 3, S, S] exactly as the processor (no splitting)."""
        out = []
        for f in frames:
            for size in idefics3_sizes(f.shape[0], f.shape[1], self.longest_edge, self.image_size):
                f = resize(f, size, self.resample)
            out.append(f)
        return normalise(np.stack(out), self.norm)

    def _encode_frames(self, frames: np.ndarray) -> tuple[torch.Tensor, tuple[int, int, int]]:
        px = torch.from_numpy(self.pixel_values(frames)).to(self.device, self.dtype)[None]  # [1, T, 3, S, S]
        feats = self.model.model.get_image_features(pixel_values=px).pooler_output  # T x [side*side, D]
        return torch.cat(list(feats)), (len(frames), self.side, self.side)

    def _language_model(self) -> torch.nn.Module:
        return self.model.model.text_model

    def _lm_head(self) -> torch.nn.Linear:
        return self.model.lm_head
