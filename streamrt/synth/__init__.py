"""streamrt.synth: the shapes world, a seeded procedural video world with a ground-truth timeline.

Coloured shapes enter, leave, move, bounce, change colour, grow, shrink and occlude each other;
the camera cuts to new scenes and the world falls still now and then. A `World` streams frames at
any size and fps together with the events that happened, endlessly and in constant memory, and
answers questions about its state. Modules: `config` (WorldConfig, palettes, SynthError), `types`
(Event, SceneObject, Scene, SynthFrame), `world` (simulation), `render` (numpy rasteriser),
`language` (describe / parse / caption), `questions` (questions / answer), `video` (PyAV writer,
JSONL timeline). PyAV is imported only when a video is written.

    from streamrt.synth import World, WorldConfig, describe
    world = World(WorldConfig.preset("demo", seed=3))
    for frame in world.frames():          # endless; frame.pixels: [H, W, 3] uint8 RGB
        for e in frame.events:
            print(f"{e.t:7.2f}s {describe(e)}")
"""

from streamrt.synth.config import BACKGROUNDS, COLOURS, PRESETS, SHAPES, SynthError, WorldConfig
from streamrt.synth.language import Mention, caption, describe, mention, mention_f1, parse
from streamrt.synth.questions import QA, QTYPES, answer, position_of, questions
from streamrt.synth.render import object_map, render
from streamrt.synth.types import (
    DIRECTIONS,
    EVENT_KINDS,
    POSITIONS,
    SIDES,
    Event,
    Scene,
    SceneObject,
    SynthFrame,
)
from streamrt.synth.video import CODECS, CONTAINERS, VideoInfo, read_timeline, timeline_path, write_video
from streamrt.synth.world import World, direction_of, state_at

__all__ = [
    "BACKGROUNDS",
    "CODECS",
    "COLOURS",
    "CONTAINERS",
    "DIRECTIONS",
    "EVENT_KINDS",
    "POSITIONS",
    "PRESETS",
    "QA",
    "QTYPES",
    "SHAPES",
    "SIDES",
    "Event",
    "Mention",
    "Scene",
    "SceneObject",
    "SynthError",
    "SynthFrame",
    "VideoInfo",
    "World",
    "WorldConfig",
    "answer",
    "caption",
    "describe",
    "direction_of",
    "mention",
    "mention_f1",
    "object_map",
    "parse",
    "position_of",
    "questions",
    "read_timeline",
    "render",
    "state_at",
    "timeline_path",
    "write_video",
]
