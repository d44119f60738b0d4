"""Shapes-world streams as training and evaluation data for the built-in model.

A stream is a `World` sampled at the model's fps (every `stride`-th simulation frame, each sample
carrying all events since the previous one) and cut into chunks of `frames_per_chunk` frames. Each
`ChunkSample` holds the chunk's frames (rendered at `render_size`), their times, the events that
happened during it (their `describe()` sentences are the target commentary; none means silence),
and, sometimes, questions about the state at the chunk's end with their ground-truth answers (the
engine answers questions at the next chunk boundary, so that is when the truth is taken).
`patch_targets` labels each visual patch of a chunk with what it shows (colour, shape, position
word of its object, whether that object took part in an event): dense supervision for training.

Owns the split between training and held-out seeds (`TRAIN_SEED_BASE`: training never uses a seed
below it; the benchmark only uses seeds below it). Does not know tokens or tensors.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from streamrt.synth import (
    COLOURS,
    POSITIONS,
    QA,
    SHAPES,
    Event,
    Scene,
    World,
    WorldConfig,
    describe,
    object_map,
    position_of,
    questions,
)
from streamrt.synth.language import plural

TRAIN_SEED_BASE = 1_000_000
"""Training worlds use seeds >= this; held-out evaluation uses seeds below it."""
RECENT_SECONDS = 2.0
"""Window of 'what just happened?' (the same default as `streamrt.synth.state_at`)."""


@dataclass(frozen=True, slots=True)
class ChunkSample:
    """One chunk of a stream with its ground truth."""

    frames: np.ndarray  # [T, H, W, 3] uint8 RGB at the render size
    times: tuple[float, ...]  # stream time of each frame (s)
    events: tuple[Event, ...]  # everything that happened since the previous chunk's last frame
    qas: tuple[QA, ...]  # questions asked at the chunk's end, answered from the state at its last frame
    scene: Scene  # the state at the chunk's last frame

    @property
    def commentary(self) -> str | None:
        """The target commentary: the events' sentences joined by '. ', or None (silence)."""
        return commentary(self.events)


def commentary(events: tuple[Event, ...]) -> str | None:
    """'. '-joined `describe()` of the events in time order; None when nothing happened."""
    return ". ".join(describe(e) for e in events) if events else None


def world_config(seed: int) -> WorldConfig:
    """The world the built-in model is trained and evaluated on: the "demo" preset (the demo clip's)."""
    return WorldConfig.preset("demo", seed=seed)


def stream_chunks(
    config: WorldConfig,
    *,
    fps: float,
    frames_per_chunk: int,
    render_size: tuple[int, int],
    question_rate: float,
    qa_seed: int,
    start: float = 0.0,
    questions_per_chunk: int = 1,
) -> Iterator[ChunkSample]:
    """Endless chunks of one world (see module docstring). render_size is (h, w); `start` skips
    ahead (no rendering) to that stream time first; with probability `question_rate` a chunk gets
    `questions_per_chunk` questions of distinct, uniformly drawn answerable types."""
    stride = round(config.fps / fps)
    if stride < 1 or abs(config.fps / stride - fps) > 1e-6:
        raise ValueError(f"world fps {config.fps} is not a multiple of the model's {fps}")
    world = World(config)
    if start > 0:
        world.skip_to(start)
    qrng = random.Random(qa_seed)
    h, w = render_size
    frames = world.frames(w, h, stride=stride)
    while True:
        got = [next(frames) for _ in range(frames_per_chunk)]
        qas: tuple[QA, ...] = ()
        if qrng.random() < question_rate:
            cands = questions(got[-1].scene, qrng, world.recent(RECENT_SECONDS))
            qas = tuple(qrng.sample(cands, min(questions_per_chunk, len(cands))))
        yield ChunkSample(
            frames=np.stack([f.pixels for f in got]),
            times=tuple(f.t for f in got),
            events=tuple(e for f in got for e in f.events),
            qas=qas,
            scene=got[-1].scene,
        )


IGNORE = -100
"""Target value of a patch that a label does not apply to (cross-entropy's ignore_index)."""


@dataclass(frozen=True, slots=True)
class PatchTargets:
    """What each visual patch of a chunk shows (patch grid [gh, gw], row-major like the tokens)."""

    colour: np.ndarray  # [gh, gw] int64: 0 background, else 1 + index in COLOURS
    shape: np.ndarray  # [gh, gw] int64: 0 background, else 1 + index in SHAPES
    position: (
        np.ndarray
    )  # [gh, gw] int64: index in POSITIONS of the object's position word; IGNORE on background
    event: np.ndarray  # [gh, gw] int64: 1 if the patch's object took part in one of the chunk's events
    owner: np.ndarray  # [gh, gw] int64: index in `scene.objects` of the patch's object, -1 background


def patch_targets(
    sample: ChunkSample, frame_size: tuple[int, int], patch: int, min_share: float = 0.03
) -> PatchTargets:
    """Label the patches of `sample`'s last frame drawn at frame_size (h, w) in patch x patch cells:
    a patch belongs to the object covering most of its pixels if that is at least `min_share` of the
    patch (else background)."""
    h, w = frame_size
    gh, gw = h // patch, w // patch
    scene = sample.scene
    ids = object_map(scene, w, h)[: gh * patch, : gw * patch]  # [H, W] int16, -1 background
    cells = ids.reshape(gh, patch, gw, patch).transpose(0, 2, 1, 3).reshape(gh, gw, patch * patch)
    n = len(scene.objects)
    counts = np.stack([(cells == i).sum(-1) for i in range(n)], -1) if n else np.zeros((gh, gw, 0))
    owner = np.full((gh, gw), -1)
    if n:
        best = counts.argmax(-1)
        owner = np.where(counts.max(-1) >= min_share * patch * patch, best, -1)
    colour_ix = {c: i + 1 for i, c in enumerate(COLOURS)}
    active = {e.object_id for e in sample.events}
    table = np.array(
        [
            (
                colour_ix[o.colour],
                SHAPES.index(o.shape) + 1,
                POSITIONS.index(position_of(o)),
                int(o.id in active),
            )
            for o in scene.objects
        ]
        + [(0, 0, IGNORE, 0)],
        dtype=np.int64,
    )  # [n + 1, 4]; row n (= owner -1) is the background
    lab = table[owner]  # [gh, gw, 4]
    return PatchTargets(lab[..., 0], lab[..., 1], lab[..., 2], lab[..., 3], owner)


def referents(qa: QA, scene: Scene) -> tuple[int, ...]:
    """Indices in `scene.objects` of the objects a question is about: those matching every colour
    and shape word it names ("how many objects" names none: all of them); () for "what just
    happened?", which is about events, not objects."""
    if qa.qtype == "last_event":
        return ()
    words = set(qa.question.rstrip("?").split())
    colours = words & set(COLOURS)
    shapes = {sh for sh in SHAPES if sh in words or plural(sh) in words}
    return tuple(
        i
        for i, o in enumerate(scene.objects)
        if (not colours or o.colour in colours) and (not shapes or o.shape in shapes)
    )
