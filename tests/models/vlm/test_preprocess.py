"""Our resize / normalise / patchify against the Hugging Face Qwen2-VL image processor (PIL backend,
which imports without torchvision): bit-identical pixel values and grids; the temporal patch of a
two-frame chunk holds each frame's own processor output."""

from __future__ import annotations

import numpy as np
import pytest
from streamrt.models.vlm.preprocess import Normalise, normalise, qwen2_vl_patchify, resize, smart_resize
from transformers import Qwen2VLImageProcessorPil

SIZES = [(90, 150), (33, 47), (360, 640), (128, 80), (20, 300)]


def _processor(patch: int, merge: int, min_px: int, max_px: int) -> Qwen2VLImageProcessorPil:
    return Qwen2VLImageProcessorPil(
        patch_size=patch,
        merge_size=merge,
        temporal_patch_size=2,
        size={"shortest_edge": min_px, "longest_edge": max_px},
    )


def _ours(img: np.ndarray, patch: int, merge: int, min_px: int, max_px: int):
    size = smart_resize(
        img.shape[-4 + 1] if img.ndim == 4 else img.shape[0], img.shape[-2], patch * merge, min_px, max_px
    )
    stack = img if img.ndim == 4 else img[None]
    return qwen2_vl_patchify(
        normalise(np.stack([resize(f, size) for f in stack]), Normalise()), patch, merge, 2
    )


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("patch,merge", [(14, 2), (8, 2), (16, 1)])
def test_single_image_bit_identical(frames, hw, patch, merge):
    min_px, max_px = 32 * 32, 160 * 160
    img = frames(1, *hw, hw[0])[0]
    ref = _processor(patch, merge, min_px, max_px)(images=[img], return_tensors="np")
    patches, grid = _ours(img, patch, merge, min_px, max_px)
    assert list(ref["image_grid_thw"][0]) == list(grid)
    assert np.array_equal(ref["pixel_values"], patches)


def test_two_frame_chunk_holds_each_frame(frames):
    """In a chunk, temporal slot k of every patch is frame k's own (single-image) processor output."""
    patch, merge, min_px, max_px = 8, 2, 32 * 32, 96 * 96
    two = frames(2, 72, 120, 3)
    patches, grid = _ours(two, patch, merge, min_px, max_px)
    proc = _processor(patch, merge, min_px, max_px)
    c = 3
    got = patches.reshape(-1, c, 2, patch * patch)
    for k in range(2):
        ref = proc(images=[two[k]], return_tensors="np")
        assert list(ref["image_grid_thw"][0]) == list(grid)
        ref_k = ref["pixel_values"].reshape(-1, c, 2, patch * patch)[:, :, 0]
        assert np.array_equal(got[:, :, k], ref_k)


def test_resize_is_identity_at_target_size(frames):
    img = frames(1, 80, 128, 0)[0]
    assert resize(img, (80, 128)) is img
