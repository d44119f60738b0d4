"""Shared oracles for the shapes-world tests: which objects may cover a pixel (by bounding boxes
only, independent of the renderer's shape masks) and nearest-palette colour naming."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from streamrt.synth import BACKGROUNDS, COLOURS, Scene, SceneObject

PALETTE = {**COLOURS, **{f"bg:{k}": v for k, v in BACKGROUNDS.items()}}
_NAMES = list(PALETTE)
DECODED_MARGIN = 3.0  # pixels around an occluder where a decoded frame may blend two colours
_RGB = np.array([PALETTE[k] for k in _NAMES], dtype=np.float64)  # [K, 3]


def nearest_colour(rgb: np.ndarray) -> tuple[str, float]:
    """Palette name nearest to one RGB pixel and its distance."""
    d = np.linalg.norm(_RGB - rgb.astype(np.float64)[None, :], axis=1)
    i = int(np.argmin(d))
    return _NAMES[i], float(d[i])


def centre_pixel(scene: Scene, o: SceneObject, w: int, h: int) -> tuple[int, int] | None:
    """(row, col) of the pixel holding the object's centre, None if the centre is off-frame."""
    col, row = int(np.floor(o.nx * w)), int(np.floor(o.ny * h))
    return (row, col) if 0 <= col < w and 0 <= row < h else None


def covering(
    scene: Scene, o: SceneObject, w: int, h: int, row: int, col: int, margin: float = 0.0
) -> list[SceneObject]:
    """Objects above `o` whose bounding box, grown by `margin` pixels, contains the pixel centre."""
    x, y = col + 0.5, row + 0.5
    out = []
    for p in scene.objects:
        if p.z > o.z:
            x0, y0, x1, y1 = p.bbox(scene.width, scene.height, w, h)
            if x0 - margin <= x <= x1 + margin and y0 - margin <= y <= y1 + margin:
                out.append(p)
    return out


def check_centres(scene: Scene, pixels: np.ndarray, exact: bool = True) -> int:
    """Assert every on-frame, un-covered object's centre pixel shows its colour; returns how many.

    exact: compare RGB exactly (rendered frames), and a covered centre must show its own colour or
    one of the coverers' colours; else (decoded frames) name the nearest palette colour, and skip
    centres within `DECODED_MARGIN` pixels of a coverer's box (compression blends edges).
    """
    h, w = pixels.shape[:2]
    checked = 0
    for o in scene.objects:
        rc = centre_pixel(scene, o, w, h)
        if rc is None:
            continue
        px = pixels[rc]
        allowed = [o, *covering(scene, o, w, h, *rc, margin=0.0 if exact else DECODED_MARGIN)]
        if exact:
            assert tuple(int(v) for v in px) in {p.rgb for p in allowed}, (o, px, scene.frame)
        elif len(allowed) == 1:
            name, dist = nearest_colour(px)
            assert name == o.colour, (o, px, name, dist, scene.frame)
        checked += len(allowed) == 1
    return checked


@pytest.fixture
def centres() -> Callable[[Scene, np.ndarray, bool], int]:
    return check_centres


@pytest.fixture
def covers() -> Callable[..., list[SceneObject]]:
    return covering


@pytest.fixture
def nearest() -> Callable[[np.ndarray], tuple[str, float]]:
    return nearest_colour
