"""Colour-segmentation check of generated frames: is the prompted object there, in its colour and shape?

Every pixel is assigned to the nearest shapes-world palette colour (objects and backgrounds) when it is
within `max_dist` in RGB; the largest connected blob of the prompted colour is the detection. Its shape
is read from the fill ratio of its bounding box (square ~1, circle ~pi/4, triangle ~1/2). Owns: the
decision rule and its thresholds. Does not know how the frames were made.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from streamrt.synth.config import BACKGROUNDS, COLOURS

_NAMES = list(COLOURS) + ["bg:" + b for b in BACKGROUNDS]
_PALETTE = np.array(list(COLOURS.values()) + list(BACKGROUNDS.values()), dtype=np.float32)  # [P, 3]


@dataclass(frozen=True, slots=True)
class Detection:
    """The largest blob of the prompted colour in one frame."""

    found: bool
    area: int
    shape: str
    """"circle", "square", "triangle" or "" when nothing was found."""
    fill: float


def classify(pixels: np.ndarray, max_dist: float = 90.0) -> np.ndarray:
    """[H, W, 3] uint8 -> [H, W] palette index (-1: no palette colour within max_dist)."""
    d = np.linalg.norm(pixels[:, :, None, :].astype(np.float32) - _PALETTE[None, None], axis=-1)  # [H, W, P]
    idx = d.argmin(-1)
    idx[d.min(-1) > max_dist] = -1
    return idx


def shape_of_fill(fill: float) -> str:
    return "square" if fill > 0.88 else "circle" if fill > 0.64 else "triangle"


def detect(pixels: np.ndarray, colour: str, min_area: int = 12) -> Detection:
    """Find the prompted colour's largest blob in a frame [H, W, 3] uint8."""
    mask = (classify(pixels) == _NAMES.index(colour)).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    if n <= 1:
        return Detection(False, 0, "", 0.0)
    i = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    area = int(stats[i, cv2.CC_STAT_AREA])
    w, h = int(stats[i, cv2.CC_STAT_WIDTH]), int(stats[i, cv2.CC_STAT_HEIGHT])
    fill = area / max(1, w * h)
    if area < min_area:
        return Detection(False, area, "", fill)
    return Detection(True, area, shape_of_fill(fill), fill)


@dataclass(frozen=True, slots=True)
class QualityReport:
    frames: int
    colour_rate: float
    """Share of frames with a blob of the prompted colour."""
    shape_rate: float
    """Share of frames whose blob also has the prompted shape."""


def score(frames: list[np.ndarray], colour: str, shape: str) -> QualityReport:
    dets = [detect(f, colour) for f in frames]
    n = max(1, len(dets))
    return QualityReport(
        len(dets), sum(d.found for d in dets) / n, sum(d.found and d.shape == shape for d in dets) / n
    )
