"""Rasterise a `Scene` into an RGB frame of any size with numpy (no antialiasing).

Owns: the shape geometry (an inside-test per shape in unit coordinates, where the shape's bounding
box is [-1, 1]^2) and the pixel-grid cache per frame size. Does not know how scenes evolve.

Drawing is painter's order (ascending z), each object touching only its bounding-box crop of the
frame, so the cost is one background fill plus a few small vectorised masks per frame. Colours are
written exactly (no blending), so the pixel at an un-occluded object's centre is its palette RGB.
A scene rendered at another size is the same picture resized: positions scale with the frame and
proportions follow the world's own aspect ratio (a 640x360 world rendered at 64x64 is squashed,
exactly like resizing the 640x360 frame would).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from streamrt.synth.types import Scene

_STAR_INNER = 0.45  # inner radius of the five-pointed star, as a fraction of the outer radius
_STAR_SECTOR = 2 * math.pi / 5
_STAR_AX = _STAR_INNER * math.cos(_STAR_SECTOR / 2) - 1.0  # edge vector outer -> inner vertex
_STAR_AY = _STAR_INNER * math.sin(_STAR_SECTOR / 2)
_SQRT3 = math.sqrt(3.0)


def inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of points (u, v) inside `shape` centred at 0 with unit radius (v grows down).

    u: [1, w] or any shape broadcastable with v: [h, 1]; returns the broadcast shape.
    """
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "triangle":  # pointing up, inscribed in the unit circle, centroid at 0
        return (v <= 0.5) & (v >= _SQRT3 * np.abs(u) - 1.0)
    if shape == "star":  # five points, one pointing up; fold the angle into one half-sector
        theta = np.arctan2(u, -v) % _STAR_SECTOR
        psi = np.minimum(theta, _STAR_SECTOR - theta)
        rho = np.sqrt(u * u + v * v)
        px, py = rho * np.cos(psi), rho * np.sin(psi)
        return _STAR_AX * py - _STAR_AY * (px - 1.0) >= 0.0
    raise ValueError(f"unknown shape {shape!r}")


@lru_cache(maxsize=16)
def _grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: xs [W], ys [H] (float32, cached per size)."""
    xs = np.arange(width, dtype=np.float32) + 0.5
    ys = np.arange(height, dtype=np.float32) + 0.5
    xs.flags.writeable = False
    ys.flags.writeable = False
    return xs, ys


@lru_cache(maxsize=16)
def _background(width: int, height: int, rgb: tuple[int, int, int]) -> np.ndarray:
    """A read-only frame of one colour [H, W, 3] uint8 (copying it beats a broadcast fill 10x)."""
    bg = np.empty((height, width, 3), dtype=np.uint8)
    bg[...] = rgb
    bg.flags.writeable = False
    return bg


def _object_masks(scene: Scene, w: int, h: int) -> Iterator[tuple[int, slice, slice, np.ndarray]]:
    """Per drawn object, in painter's order (ascending z): (index in `scene.objects`, row slice,
    column slice, mask [h', w'] of its pixels within that crop) at `w` x `h`."""
    xs, ys = _grid(w, h)
    short = min(scene.width, scene.height)
    for i, o in enumerate(scene.objects):  # ascending z: later objects occlude earlier ones
        rx = o.size * short / scene.width * w
        ry = o.size * short / scene.height * h
        cx, cy = o.nx * w, o.ny * h
        c0, c1 = max(0, math.floor(cx - rx)), min(w, math.ceil(cx + rx) + 1)
        r0, r1 = max(0, math.floor(cy - ry)), min(h, math.ceil(cy + ry) + 1)
        if c0 >= c1 or r0 >= r1:
            continue
        u = (xs[c0:c1] - cx)[None, :] / rx  # [1, w']
        v = (ys[r0:r1] - cy)[:, None] / ry  # [h', 1]
        yield i, slice(r0, r1), slice(c0, c1), inside(o.shape, u, v)  # mask: [h', w']


def render(scene: Scene, width: int | None = None, height: int | None = None) -> np.ndarray:
    """Draw `scene` at `width` x `height` (default: the world's own size).

    Returns a new array [H, W, 3] uint8 RGB.
    """
    w = scene.width if width is None else int(width)
    h = scene.height if height is None else int(height)
    out = _background(w, h, scene.bg_rgb).copy()  # one allocation per frame: the caller owns it
    for i, rows, cols, mask in _object_masks(scene, w, h):
        out[rows, cols][mask] = scene.objects[i].rgb
    return out


def object_map(scene: Scene, width: int, height: int) -> np.ndarray:
    """Which object is visible at each pixel of `scene` drawn at `width` x `height`: [H, W] int16,
    the index into `scene.objects`, or -1 for background (same geometry and occlusion as `render`)."""
    out = np.full((height, width), -1, dtype=np.int16)
    for i, rows, cols, mask in _object_masks(scene, width, height):
        out[rows, cols][mask] = i
    return out
