"""Model inputs from RGB frames without torchvision: resize, rescale + normalise, patchify.

Mirrors the Hugging Face PIL-backend image processors step by step so the result is bit-identical:
PIL bicubic resize of the uint8 image, rescale in float64 then cast to float32, per-channel
`(x - mean) / std` in float32, then the model's patch layout. Qwen2-VL / Qwen2.5-VL: `smart_resize`
to multiples of patch * merge and the merge-block patch order with a temporal patch (frames of a
chunk go into one temporal patch). Idefics3 / SmolVLM: a square resize to the vision encoder's image
size, channel-first pixel values (no image splitting: one tile per frame, the video-frame path).

Owns no state; does not know models or tokenizers, only geometry numbers passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF_MEAN_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True, slots=True)
class Normalise:
    """Rescale factor and per-channel mean/std of a processor."""

    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD
    rescale: float = 1 / 255


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's target size: multiples of `factor`, area within [min_pixels, max_pixels], aspect
    kept as closely as possible (same rule as transformers' `smart_resize`)."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio {max(height, width) / min(height, width):.1f} exceeds 200")
    h = round(height / factor) * factor
    w = round(width / factor) * factor
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def resize(
    frame: np.ndarray, size: tuple[int, int], resample: Image.Resampling = Image.Resampling.BICUBIC
) -> np.ndarray:
    """PIL resize of one uint8 RGB frame [H, W, 3] to (h, w) (bicubic unless told); returned as is
    when the size is already right (PIL would copy it unchanged)."""
    h, w = size
    if frame.shape[:2] == (h, w):
        return frame
    return np.asarray(Image.fromarray(frame).resize((w, h), resample=resample))


def idefics3_sizes(height: int, width: int, longest_edge: int, image_size: int) -> list[tuple[int, int]]:
    """The two resizes of Idefics3's processor without image splitting: the longest edge to
    `longest_edge` (the other even-rounded, aspect kept), then the square vision-encoder size."""
    aspect = width / height
    if width >= height:
        w, h = longest_edge, int(longest_edge / aspect)
        h += h % 2
    else:
        h, w = longest_edge, int(longest_edge * aspect)
        w += w % 2
    return [(max(h, 1), max(w, 1)), (image_size, image_size)]


def normalise(frames: np.ndarray, norm: Normalise) -> np.ndarray:
    """uint8 [T, H, W, 3] -> float32 channel-first [T, 3, H, W], rescaled and normalised exactly as
    the HF numpy backend does (float64 rescale, float32 normalise)."""
    x = (frames.astype(np.float64) * norm.rescale).astype(np.float32)
    x = (x - np.asarray(norm.mean, dtype=np.float32)) / np.asarray(norm.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def qwen2_vl_patchify(
    pixels: np.ndarray, patch: int, merge: int, temporal_patch: int
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Qwen2-VL patch layout. pixels: float32 [T, 3, H, W] with T a multiple of `temporal_patch`
    (a single image is repeated to fill it) and H, W multiples of patch * merge.

    Returns (patches [gt*gh*gw, 3*temporal_patch*patch*patch], (gt, gh, gw)) in patch units, rows in
    (t, h-block, w-block, h-in-block, w-in-block) order, columns (channel, time, y, x).
    """
    t, c, h, w = pixels.shape
    if t % temporal_patch:
        pixels = np.concatenate([pixels, np.repeat(pixels[-1:], temporal_patch - t % temporal_patch, 0)])
        t = pixels.shape[0]
    gt, gh, gw = t // temporal_patch, h // patch, w // patch
    x = pixels.reshape(gt, temporal_patch, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)  # [gt, gh/m, gw/m, m, m, C, tp, ph, pw]
    return np.ascontiguousarray(x.reshape(gt * gh * gw, c * temporal_patch * patch * patch)), (gt, gh, gw)
