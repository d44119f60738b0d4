"""The shapes-world simulation: a seeded, endless stream of scenes, frames and ground-truth events.

Owns: the live objects (mutable, private), the random generator (`random.Random(seed)`, used only
by `step`, so rendering never changes the stream), the frame counter, the still/cut state and a
bounded window of recent events (`WorldConfig.recent_events`). Memory is constant however long the
stream runs: past events are handed to the caller and only the last few are kept.
Does not know pixels (see `render`), language (see `language`) or files (see `video`).

One `step()` advances one frame (dt = 1 / fps); events that happen during the step carry the new
frame's time and index, and that frame already shows their effect. Frame 0 shows the first scene
(its objects `appear`). Rules:
- a still period freezes everything; no event happens until `still_end`;
- a cut replaces all objects and the background at once (`cut`, then one `appear` per object);
- an entering object starts with its centre on an edge and moves inwards; a leaving object heads
  for the nearest edge and is removed (`leave`) once it is entirely outside;
- an object fully inside bounces off the frame edges (`bounce`); objects pass over each other and
  the one with the higher z is drawn on top.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from streamrt.synth.config import BACKGROUNDS, COLOURS, SynthError, WorldConfig
from streamrt.synth.render import render
from streamrt.synth.types import Event, Scene, SceneObject, SynthFrame

_DIAG = 1 / math.sqrt(2)
_DIR_VEC: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "up-left": (-_DIAG, -_DIAG),
    "up-right": (_DIAG, -_DIAG),
    "down-left": (-_DIAG, _DIAG),
    "down-right": (_DIAG, _DIAG),
}


def direction_of(vx: float, vy: float) -> str:
    """The direction word of a velocity (one of `DIRECTIONS`); "none" when still."""
    h = "left" if vx < 0 else "right" if vx > 0 else ""
    v = "up" if vy < 0 else "down" if vy > 0 else ""
    return f"{v}-{h}" if h and v else (h or v or "none")


@dataclass(slots=True)
class _Obj:
    """A live object (mutable, private to the world)."""

    id: int
    shape: str
    colour: str
    nx: float
    ny: float
    size: float
    vx: float
    vy: float
    z: int
    phase: str  # "entering" | "in" | "leaving"
    side: str  # the edge it enters from or leaves through ("" while "in")


class World:
    """An endless shapes world. `frames()` streams; `step()` + `state()` drive it by hand."""

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = config or WorldConfig()
        self._rng = random.Random(self.config.seed)
        self._frame = -1  # index of the current frame (-1: nothing produced yet)
        self._objects: list[_Obj] = []  # ascending z
        self._next_id = 0
        self._next_z = 0
        self._scene_index = 0
        self._background = "black"
        self._still_until = -1  # frame index at which the current still period ends
        self._recent: deque[Event] = deque(maxlen=self.config.recent_events)
        self._pending: list[tuple[str, _Obj | None, dict[str, str]]] = []  # this step's events
        c = self.config
        self._short = min(c.width, c.height)
        self._aspect = c.height / c.width  # converts frame heights to frame widths

    # ---- public -------------------------------------------------------------------------------

    @property
    def frame_index(self) -> int:
        """Index of the current frame (-1 before the first `step`)."""
        return self._frame

    @property
    def t(self) -> float:
        """Time of the current frame in seconds."""
        return max(self._frame, 0) / self.config.fps

    def step(self) -> tuple[Event, ...]:
        """Advance one frame; return the events that happened (in order)."""
        self._frame += 1
        self._pending.clear()
        if self._frame == 0:
            self._new_scene(cut=False)
        else:
            self._advance()
        events = tuple(self._event(*p) for p in self._pending)
        self._recent.extend(events)
        return events

    def state(self) -> Scene:
        """Snapshot of the current frame's state (objects bottom to top)."""
        still = self._frame < self._still_until
        objs = tuple(
            SceneObject(
                id=o.id,
                shape=o.shape,
                colour=o.colour,
                rgb=COLOURS[o.colour],
                nx=o.nx,
                ny=o.ny,
                size=o.size,
                vx=0.0 if still else o.vx,
                vy=0.0 if still else o.vy,
                z=o.z,
                phase=o.phase,
            )
            for o in self._objects
        )
        return Scene(
            t=self.t,
            frame=self._frame,
            width=self.config.width,
            height=self.config.height,
            background=self._background,
            bg_rgb=BACKGROUNDS[self._background],
            objects=objs,
            scene_index=self._scene_index,
            still=still,
        )

    def recent(self, seconds: float | None = None) -> tuple[Event, ...]:
        """Events of the last `seconds` (all kept ones if None; at most `config.recent_events`)."""
        if seconds is None:
            return tuple(self._recent)
        t0 = self.t - seconds
        return tuple(e for e in self._recent if e.t >= t0)

    def skip_to(self, t: float) -> int:
        """Step (without rendering) up to the frame at time `t` (frame round(t * fps)); returns the
        number of frames stepped. Their events pass through the bounded `recent()` window only."""
        target = round(t * self.config.fps)
        n = 0
        while self._frame < target:
            self.step()
            n += 1
        return n

    def frames(
        self, width: int | None = None, height: int | None = None, stride: int = 1
    ) -> Iterator[SynthFrame]:
        """Endless frames rendered at `width` x `height` (default: the config's size).

        stride: yield every stride-th frame (fps / stride), each with all the events since the
        previous one yielded: a lower-rate view of the same stream (events keep their own times).
        """
        if stride < 1:
            raise SynthError("E_SYNTH_ARGS", f"stride must be >= 1, not {stride}")
        while True:
            events = self.step()
            for _ in range(stride - 1):
                events += self.step()
            scene = self.state()
            yield SynthFrame(self._frame, scene.t, render(scene, width, height), events, scene)

    # ---- simulation ---------------------------------------------------------------------------

    def _p(self, rate: float) -> float:
        return 1.0 - math.exp(-rate / self.config.fps)

    def _emit(self, kind: str, o: _Obj | None, **extra: str) -> None:
        """Queue an event; its object attributes are read when the step ends (the frame shown)."""
        self._pending.append((kind, o, extra))

    def _event(self, kind: str, o: _Obj | None, extra: dict[str, str]) -> Event:
        attrs: dict[str, str] = {}
        if o is not None:
            attrs = {
                "shape": o.shape,
                "colour": o.colour,
                "x": f"{o.nx:.4f}",
                "y": f"{o.ny:.4f}",
                "size": f"{o.size:.4f}",
            }
        attrs.update(extra)
        return Event(self.t, kind, None if o is None else o.id, attrs, self._frame)

    def _half(self, o: _Obj) -> tuple[float, float]:
        """Half extents (normalised x, normalised y) of an object's bounding box."""
        r = o.size * self._short
        return r / self.config.width, r / self.config.height

    def _velocity(self, direction: str) -> tuple[float, float]:
        lo, hi = self.config.speed_range
        speed = self._rng.uniform(lo, hi)
        dx, dy = _DIR_VEC[direction]
        return speed * dx * self._aspect, speed * dy

    def _make(self, nx: float, ny: float, size: float, phase: str, side: str) -> _Obj:
        rng, c = self._rng, self.config
        o = _Obj(
            self._next_id,
            rng.choice(c.shapes),
            rng.choice(c.colours),
            nx,
            ny,
            size,
            0.0,
            0.0,
            self._next_z,
            phase,
            side,
        )
        self._next_id += 1
        self._next_z += 1
        return o

    def _new_scene(self, cut: bool) -> None:
        rng, c = self._rng, self.config
        if cut:
            self._scene_index += 1
            others = [b for b in BACKGROUNDS if b != self._background]
            self._background = rng.choice(others)
            self._objects.clear()
            self._emit("cut", None, scene=str(self._scene_index), background=self._background)
        lo = max(c.min_objects, 1)
        n = rng.randint(lo, max(lo, min(c.max_objects, 4)))
        for _ in range(n):
            size = rng.uniform(*c.size_range)
            o = self._make(0.0, 0.0, size, "in", "")
            hx, hy = self._half(o)
            o.nx, o.ny = rng.uniform(hx, 1 - hx), rng.uniform(hy, 1 - hy)
            if rng.random() < 0.5:
                o.vx, o.vy = self._velocity(rng.choice(list(_DIR_VEC)))
            self._objects.append(o)
            self._emit("appear", o)

    def _advance(self) -> None:
        rng, c = self._rng, self.config
        if self._frame < self._still_until:
            return
        if self._frame == self._still_until:
            self._emit("still_end", None)
        elif rng.random() < self._p(c.cut_rate):
            self._new_scene(cut=True)
            return
        elif rng.random() < self._p(c.still_rate):
            self._still_until = self._frame + max(1, round(rng.uniform(*c.still_seconds) * c.fps))
            self._emit("still_start", None)
            return
        dt = c.dt
        for o in list(self._objects):
            o.nx += o.vx * dt
            o.ny += o.vy * dt
            self._walls(o)
        for o in self._objects:
            if o.phase == "in":
                self._object_events(o)
        if len(self._objects) < c.max_objects and rng.random() < self._p(c.enter_rate):
            self._enter()

    def _walls(self, o: _Obj) -> None:
        """Bounce off edges, finish entering, remove objects that have left."""
        hx, hy = self._half(o)
        free = "x" if o.side in ("left", "right") else "y" if o.side in ("top", "bottom") else ""
        if o.phase == "leaving":
            gone = {
                "left": o.nx + hx <= 0,
                "right": o.nx - hx >= 1,
                "top": o.ny + hy <= 0,
                "bottom": o.ny - hy >= 1,
            }[o.side]
            if gone:
                self._objects.remove(o)
                self._emit("leave", o, side=o.side)
                return
        if o.phase == "entering" and hx <= o.nx <= 1 - hx and hy <= o.ny <= 1 - hy:
            o.phase, o.side, free = "in", "", ""
        if free != "x":
            if o.nx < hx and o.vx < 0:
                o.nx, o.vx = hx, -o.vx
                self._emit("bounce", o, wall="left", direction=direction_of(o.vx, o.vy))
            elif o.nx > 1 - hx and o.vx > 0:
                o.nx, o.vx = 1 - hx, -o.vx
                self._emit("bounce", o, wall="right", direction=direction_of(o.vx, o.vy))
        if free != "y":
            if o.ny < hy and o.vy < 0:
                o.ny, o.vy = hy, -o.vy
                self._emit("bounce", o, wall="top", direction=direction_of(o.vx, o.vy))
            elif o.ny > 1 - hy and o.vy > 0:
                o.ny, o.vy = 1 - hy, -o.vy
                self._emit("bounce", o, wall="bottom", direction=direction_of(o.vx, o.vy))

    def _object_events(self, o: _Obj) -> None:
        rng, c = self._rng, self.config
        moving = o.vx != 0.0 or o.vy != 0.0
        if moving and rng.random() < self._p(c.stop_rate):
            o.vx = o.vy = 0.0
            self._emit("stop", o)
        elif not moving and rng.random() < self._p(c.move_rate):
            d = rng.choice(list(_DIR_VEC))
            o.vx, o.vy = self._velocity(d)
            self._emit("move_start", o, direction=d)
        if rng.random() < self._p(c.colour_change_rate):
            old = o.colour
            o.colour = rng.choice([k for k in c.colours if k != old])
            self._emit("colour_change", o, **{"from": old})
        if rng.random() < self._p(c.resize_rate):
            lo, hi = c.size_range
            grow = o.size * c.resize_factor <= hi and (o.size / c.resize_factor < lo or rng.random() < 0.5)
            new = o.size * c.resize_factor if grow else o.size / c.resize_factor
            if lo <= new <= hi:
                o.size = new
                hx, hy = self._half(o)
                o.nx, o.ny = min(max(o.nx, hx), 1 - hx), min(max(o.ny, hy), 1 - hy)
                self._emit("grow" if grow else "shrink", o)
        staying = sum(1 for p in self._objects if p.phase != "leaving")
        if staying > c.min_objects and rng.random() < self._p(c.leave_rate):
            dist = {"left": o.nx, "right": 1 - o.nx, "top": o.ny, "bottom": 1 - o.ny}
            o.side = min(dist, key=dist.__getitem__)
            o.phase = "leaving"
            dvec = {"left": "left", "right": "right", "top": "up", "bottom": "down"}[o.side]
            o.vx, o.vy = self._velocity(dvec)

    def _enter(self) -> None:
        rng, c = self._rng, self.config
        side = rng.choice(("left", "right", "top", "bottom"))
        o = self._make(0.0, 0.0, rng.uniform(*c.size_range), "entering", side)
        hx, hy = self._half(o)
        ex, ey = 0.5 / c.width, 0.5 / c.height  # centre half a pixel inside the edge: visible at once
        inward = {"left": "right", "right": "left", "top": "down", "bottom": "up"}[side]
        if side in ("left", "right"):
            o.nx, o.ny = (ex if side == "left" else 1 - ex), rng.uniform(hy, 1 - hy)
            d = rng.choice((inward, f"up-{inward}", f"down-{inward}"))
        else:
            o.nx, o.ny = rng.uniform(hx, 1 - hx), (ey if side == "top" else 1 - ey)
            d = rng.choice((inward, f"{inward}-left", f"{inward}-right"))
        o.vx, o.vy = self._velocity(d)
        self._objects.append(o)
        self._emit("enter", o, side=side)


def state_at(config: WorldConfig, t: float, recent_seconds: float = 2.0) -> tuple[Scene, tuple[Event, ...]]:
    """The state of a fresh world of `config` at time `t`, and the events of the `recent_seconds`
    before it: the ground truth for a question asked at `t` about a clip made from `config`.
    Replays the simulation from the start (tens of thousands of frames per second, no rendering)."""
    world = World(config)
    world.skip_to(t)
    return world.state(), world.recent(recent_seconds)
