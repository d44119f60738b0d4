"""Typed records the shapes world hands out: events, object snapshots, scenes and frames.

Owns: `Event`, `SceneObject`, `Scene`, `SynthFrame`, the event kinds and the position words.
All are frozen, slotted snapshots: a `Scene` never changes after it is returned, so a caller may
keep one while the world moves on. Does not know how they are produced, drawn or described.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

EventKind = Literal[
    "appear",
    "enter",
    "leave",
    "move_start",
    "stop",
    "bounce",
    "colour_change",
    "grow",
    "shrink",
    "cut",
    "still_start",
    "still_end",
]
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)
SCENE_KINDS: tuple[str, ...] = ("cut", "still_start", "still_end")  # events about the scene, no object
SIDES: tuple[str, ...] = ("left", "right", "top", "bottom")
DIRECTIONS: tuple[str, ...] = (
    "left",
    "right",
    "up",
    "down",
    "up-left",
    "up-right",
    "down-left",
    "down-right",
)
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "centre")


@dataclass(frozen=True, slots=True)
class Event:
    """One ground-truth happening.

    `t` is the time of the frame on which the event is first visible (frame index * dt).
    `object_id` is None for scene-wide events (cut, still_start, still_end). `attrs` always holds
    "shape" and "colour" for object events (after the event, e.g. the new colour), "x", "y" (centre,
    normalised to [0, 1], 4 decimals) and "size" (radius / shorter side), plus per kind:
    enter/leave "side"; move_start "direction"; bounce "wall" and the new "direction";
    colour_change "from"; cut "scene" (number) and "background".
    """

    t: float
    kind: str
    object_id: int | None
    attrs: dict[str, str] = field(default_factory=dict)
    frame: int = 0
    """Index of the frame on which the event is first visible."""

    def to_json(self) -> dict[str, object]:
        return {
            "t": self.t,
            "frame": self.frame,
            "kind": self.kind,
            "object": self.object_id,
            "attrs": self.attrs,
        }

    @staticmethod
    def from_json(d: dict[str, object]) -> Event:
        obj = d.get("object")
        attrs = d.get("attrs") or {}
        assert isinstance(attrs, dict)
        return Event(
            t=float(d["t"]),  # type: ignore[arg-type]
            kind=str(d["kind"]),
            object_id=None if obj is None else int(obj),  # type: ignore[arg-type]
            attrs={str(k): str(v) for k, v in attrs.items()},
            frame=int(d.get("frame", 0)),  # type: ignore[arg-type]
        )


@dataclass(frozen=True, slots=True)
class SceneObject:
    """Snapshot of one object. Positions are normalised to [0, 1] (outside while entering/leaving)."""

    id: int
    shape: str
    colour: str
    rgb: tuple[int, int, int]
    nx: float
    """Centre x / frame width."""
    ny: float
    """Centre y / frame height (y grows downwards)."""
    size: float
    """Radius as a fraction of the frame's shorter side."""
    vx: float
    """Velocity in frame widths per second (0 while stopped or during a still period)."""
    vy: float
    """Velocity in frame heights per second."""
    z: int
    """Drawing order: higher z is drawn on top (occludes lower z)."""
    phase: str = "in"
    """One of: entering, in (fully inside the frame), leaving."""

    def x(self, width: int) -> float:
        """Centre x in pixels for a frame `width` wide."""
        return self.nx * width

    def y(self, height: int) -> float:
        """Centre y in pixels for a frame `height` high."""
        return self.ny * height

    def bbox(self, world_w: int, world_h: int, width: int, height: int) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) pixel bounds in a `width` x `height` render of a world_w x world_h scene."""
        rx = self.size * min(world_w, world_h) / world_w * width
        ry = self.size * min(world_w, world_h) / world_h * height
        cx, cy = self.nx * width, self.ny * height
        return cx - rx, cy - ry, cx + rx, cy + ry

    @property
    def moving(self) -> bool:
        return self.vx != 0.0 or self.vy != 0.0


@dataclass(frozen=True, slots=True)
class Scene:
    """The world's state at one frame. `objects` are sorted by z (bottom first)."""

    t: float
    frame: int
    width: int
    """The world's frame width (objects' proportions are defined in this frame)."""
    height: int
    background: str
    bg_rgb: tuple[int, int, int]
    objects: tuple[SceneObject, ...]
    scene_index: int = 0
    """Number of the current scene (incremented by each cut)."""
    still: bool = False
    """True during a still period (nothing moves, no events)."""

    def find(self, object_id: int) -> SceneObject | None:
        return next((o for o in self.objects if o.id == object_id), None)


@dataclass(frozen=True, slots=True)
class SynthFrame:
    """One frame of the stream and the events that happened since the previous frame."""

    index: int
    t: float
    pixels: np.ndarray  # [H, W, 3] uint8 RGB
    events: tuple[Event, ...]
    scene: Scene
