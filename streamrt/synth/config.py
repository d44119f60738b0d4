"""Configuration and closed vocabulary of the shapes world.

Owns: `WorldConfig` (one frozen dataclass, named presets), the shape names, the object palette
(colour name -> RGB) and the background palette, and `SynthError` (typed error with a stable code).
Does not know how the world is simulated, rendered, described or written to disk.

The palettes are chosen so that every object colour differs from every other object colour and from
every background by at least 80 in some RGB channel: sampling one pixel at an object's centre
identifies its colour, even after lossy compression.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

Shape = Literal["circle", "square", "triangle", "star", "diamond"]
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond")

# Object colours: name -> RGB. Ten names, one word each (the language module relies on that).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "orange": (250, 140, 0),
    "yellow": (250, 235, 40),
    "green": (30, 190, 40),
    "cyan": (0, 220, 230),
    "blue": (30, 70, 240),
    "purple": (140, 40, 200),
    "pink": (255, 140, 200),
    "white": (245, 245, 245),
    "brown": (130, 75, 20),
}

# Backgrounds: dark and desaturated, never an object colour.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "charcoal": (40, 40, 40),
    "slate": (45, 55, 75),
    "moss": (40, 60, 40),
    "wine": (65, 35, 45),
}

PRESETS = ("demo", "simple", "busy")


class SynthError(ValueError):
    """Bad input to the shapes world (config, question, codec, path). `code` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True, slots=True)
class WorldConfig:
    """Everything that determines a shapes-world stream. Same config -> same frames and events.

    Rates are per second (Poisson-like: per frame the probability is 1 - exp(-rate / fps)); the
    per-object rates apply to each object independently.
    """

    seed: int = 0
    """Seed of the world's random generator."""
    width: int = 640
    """Frame width in pixels of `World.frames()` (any size can be rendered from a `Scene`)."""
    height: int = 360
    """Frame height in pixels."""
    fps: float = 30.0
    """Frames per second; the simulation steps once per frame (dt = 1 / fps)."""
    min_objects: int = 1
    """Objects never leave below this count; a new scene after a cut starts with at least this many."""
    max_objects: int = 6
    """Objects never enter above this count."""
    shapes: tuple[str, ...] = SHAPES
    """Shapes the world draws from (a subset of `SHAPES`)."""
    colours: tuple[str, ...] = tuple(COLOURS)
    """Colour names the world draws from (a subset of `COLOURS`)."""
    size_range: tuple[float, float] = (0.06, 0.16)
    """Object radius as a fraction of the frame's shorter side: (smallest, largest)."""
    speed_range: tuple[float, float] = (0.08, 0.25)
    """Speed of a moving object in frame heights per second."""
    enter_rate: float = 0.25
    """New objects entering from an edge, per second (while below `max_objects`)."""
    leave_rate: float = 0.04
    """Per object per second: decides to leave through the nearest edge (while above `min_objects`)."""
    move_rate: float = 0.25
    """Per stopped object per second: starts moving in one of eight directions."""
    stop_rate: float = 0.08
    """Per moving object per second: stops."""
    colour_change_rate: float = 0.05
    """Per object per second: turns another colour."""
    resize_rate: float = 0.04
    """Per object per second: grows or shrinks by `resize_factor`."""
    resize_factor: float = 1.35
    """Size ratio of one grow / shrink step (sizes stay within `size_range`)."""
    cut_rate: float = 1 / 15
    """Camera cuts to a new scene (new background, new objects) per second."""
    still_rate: float = 1 / 20
    """Still periods per second: everything freezes and no event happens until `still_end`."""
    still_seconds: tuple[float, float] = (1.0, 3.0)
    """Duration of a still period in seconds: (shortest, longest)."""
    recent_events: int = 256
    """Bound of the world's recent-event window (`World.recent()`); older events are forgotten."""

    def __post_init__(self) -> None:
        bad = []
        if self.width < 8 or self.height < 8:
            bad.append(f"size {self.width}x{self.height} below 8x8")
        if self.fps <= 0:
            bad.append(f"fps {self.fps} <= 0")
        if not 0 <= self.min_objects <= self.max_objects or self.max_objects < 1:
            bad.append(f"objects range {self.min_objects}..{self.max_objects}")
        if not self.shapes or set(self.shapes) - set(SHAPES):
            bad.append(f"shapes {self.shapes} (known: {SHAPES})")
        if len(self.colours) < 2 or set(self.colours) - set(COLOURS):
            bad.append(f"colours {self.colours} (need 2+ of {tuple(COLOURS)})")
        lo, hi = self.size_range
        if not 0 < lo <= hi <= 0.4:
            bad.append(f"size_range {self.size_range}")
        if not 0 < self.speed_range[0] <= self.speed_range[1]:
            bad.append(f"speed_range {self.speed_range}")
        if not 0 < self.still_seconds[0] <= self.still_seconds[1]:
            bad.append(f"still_seconds {self.still_seconds}")
        if self.resize_factor <= 1:
            bad.append(f"resize_factor {self.resize_factor} <= 1")
        if self.recent_events < 1:
            bad.append(f"recent_events {self.recent_events} < 1")
        rates = ("enter_rate", "leave_rate", "move_rate", "stop_rate", "colour_change_rate")
        for name in (*rates, "resize_rate", "cut_rate", "still_rate"):
            if getattr(self, name) < 0:
                bad.append(f"{name} < 0")
        if bad:
            raise SynthError("E_SYNTH_CONFIG", "bad WorldConfig: " + "; ".join(bad))

    @property
    def dt(self) -> float:
        """Seconds per frame."""
        return 1.0 / self.fps

    def replace(self, **changes: object) -> WorldConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able fields (tuples become lists)."""
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, object]) -> WorldConfig:
        """Inverse of `to_dict` (lists become tuples again)."""
        fields = {f.name for f in dataclasses.fields(WorldConfig)}
        return WorldConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in fields})  # type: ignore[arg-type]

    @staticmethod
    def preset(name: str, **overrides: object) -> WorldConfig:
        """A named configuration, optionally with some fields overridden.

        - "demo": 640x360 at 30 fps, up to 6 objects, a cut about every 15 s, stills about every 20 s.
        - "simple": 64x64 at 8 fps, 1-2 objects, no cuts, rare stills, slower events: data for
          training a tiny video generator.
        - "busy": 320x180 at 30 fps, up to 8 objects, many events of every kind: for tests.
        """
        if name == "demo":
            base = WorldConfig()
        elif name == "simple":
            base = WorldConfig(
                width=64,
                height=64,
                fps=8.0,
                min_objects=1,
                max_objects=2,
                size_range=(0.12, 0.24),
                speed_range=(0.15, 0.35),
                enter_rate=0.15,
                leave_rate=0.03,
                cut_rate=0.0,
                still_rate=1 / 60,
            )
        elif name == "busy":
            base = WorldConfig(
                width=320,
                height=180,
                max_objects=8,
                enter_rate=1.0,
                leave_rate=0.15,
                move_rate=1.0,
                stop_rate=0.4,
                colour_change_rate=0.3,
                resize_rate=0.3,
                cut_rate=0.25,
                still_rate=0.2,
                still_seconds=(0.3, 1.0),
            )
        else:
            raise SynthError("E_SYNTH_PRESET", f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
        return base.replace(**overrides) if overrides else base
