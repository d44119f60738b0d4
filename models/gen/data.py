"""Training clips for the built-in generator: shapes-world video with prompts, rendered on the fly.

Each clip comes from its own seeded `World` (the "simple" preset, narrowed by `ClipConfig`), started
at a random moment, rendered at the model's frame size, with a prompt made from the world's caption
plus a motion phrase ("a red circle moving up left"). With probability `sink_gap_p` the first frame
is taken `1..max_sink_gap` frames before the rest: at inference the sink frame of a FrameCache sits at
position 0 while the window holds much later frames, so the model learns that frame 0 may be stale.
With probability `switch_p` the clip is a prompt switch: its first frames come from another world
(another prompt) and only the rest from the prompted one, as after a KV-recache in the engine, where
the cached frames of the old prompt are re-encoded under the new one; the trainer keeps those first
frames clean and outside the loss, so the model learns to draw the new prompt after them.
Owns: clip sampling and the prompt wording. Does not know the model or the loss.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from streamrt.synth import World, WorldConfig, caption, render
from streamrt.synth.types import Scene
from streamrt.synth.world import direction_of


@dataclass(frozen=True, slots=True)
class ClipConfig:
    """What the training clips look like."""

    frames: int = 8
    """Frames per clip (must cover sink + window + in-flight frames of the engine's cache)."""
    size: int = 64
    """Frame side in pixels."""
    shapes: tuple[str, ...] = ("circle", "square", "triangle")
    """Shapes drawn (a subset of the shapes world's)."""
    max_objects: int = 1
    """Objects in view (the "simple" preset allows 2; one keeps the tiny model's task learnable)."""
    max_start: int = 48
    """A clip starts after 0..max_start world steps."""
    sink_gap_p: float = 0.3
    """Probability that frame 0 is taken from earlier than the rest (a stale sink)."""
    max_sink_gap: int = 64
    switch_p: float = 0.0
    """Probability that a clip is a prompt switch (`Clip.context` frames of another world first)."""
    switch_step: int = 2
    """The switch happens at a multiple of this many frames (the largest training block)."""


@dataclass(frozen=True, slots=True)
class Clip:
    """One training clip."""

    frames: Tensor  # [F, 3, S, S] in [-1, 1]
    prompt: str
    context: int = 0
    """Leading frames from another world (a prompt switch): context only, never a target."""


def prompt_of(scene: Scene) -> str:
    """The world's caption plus, for a single moving object, "moving <direction>"."""
    text = caption(scene)
    if len(scene.objects) == 1 and scene.objects[0].moving:
        o = scene.objects[0]
        text += " moving " + direction_of(o.vx, o.vy).replace("-", " ")
    return text


def to_tensor(pixels: np.ndarray) -> Tensor:
    """[H, W, 3] uint8 -> [3, H, W] float in [-1, 1]."""
    return torch.from_numpy(pixels).permute(2, 0, 1).float() / 127.5 - 1.0


def to_pixels(x: Tensor) -> np.ndarray:
    """[..., 3, H, W] in [-1, 1] -> [..., H, W, 3] uint8."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1).cpu().numpy()


class ClipSampler:
    """Endless seeded stream of `Clip`s."""

    def __init__(self, cfg: ClipConfig, seed: int) -> None:
        self.cfg = cfg
        self.rng = random.Random(seed)

    def world_config(self, seed: int) -> WorldConfig:
        c = self.cfg
        return WorldConfig.preset("simple", seed=seed, shapes=c.shapes, max_objects=c.max_objects)

    def scenes(self, n: int, may_be_stale: bool) -> list[Scene]:
        """`n` consecutive scenes of a new world from a random moment; with `may_be_stale`, the first
        is taken from earlier with probability `sink_gap_p`."""
        c, rng = self.cfg, self.rng
        world = World(self.world_config(rng.randrange(2**31)))
        for _ in range(rng.randint(0, c.max_start)):
            world.step()
        world.step()
        scenes = [world.state()]
        if may_be_stale and rng.random() < c.sink_gap_p:
            for _ in range(rng.randint(1, c.max_sink_gap)):
                world.step()
        for _ in range(n - 1):
            world.step()
            scenes.append(world.state())
        return scenes

    def sample(self) -> Clip:
        c, rng = self.cfg, self.rng
        context = 0
        if c.switch_p > 0 and c.frames > c.switch_step and rng.random() < c.switch_p:
            context = c.switch_step * rng.randint(1, (c.frames - 1) // c.switch_step)
        if context:  # another world's frames, then the prompted world's
            scenes = self.scenes(context, True) + self.scenes(c.frames - context, False)
        else:
            scenes = self.scenes(c.frames, True)
        frames = torch.stack([to_tensor(render(s, c.size, c.size)) for s in scenes])
        # the prompt describes the second frame of the prompted part (the first may be stale)
        return Clip(frames, prompt_of(scenes[min(context + 1, len(scenes) - 1)]), context)

    def batch(self, n: int) -> tuple[Tensor, list[str], Tensor]:
        """[n, F, 3, S, S], n prompts and [n] context frames (int64)."""
        clips = [self.sample() for _ in range(n)]
        frames = torch.stack([c.frames for c in clips])
        return frames, [c.prompt for c in clips], torch.tensor([c.context for c in clips])
