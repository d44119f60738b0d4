"""Every question type against ground truth: hand-built scenes with known answers, and random
world states against independent recounts."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from streamrt.synth import (
    COLOURS,
    QTYPES,
    Event,
    Scene,
    SceneObject,
    SynthError,
    World,
    WorldConfig,
    answer,
    questions,
)
from streamrt.synth.language import NUMBERS


def obj(i: int, shape: str, colour: str, nx: float = 0.5, ny: float = 0.5) -> SceneObject:
    return SceneObject(i, shape, colour, COLOURS[colour], nx, ny, 0.1, 0.0, 0.0, i)


SCENE = Scene(
    2.0,
    60,
    640,
    360,
    "black",
    (0, 0, 0),
    (
        obj(0, "circle", "red", 0.1, 0.5),
        obj(1, "square", "blue", 0.9, 0.4),
        obj(2, "square", "blue", 0.5, 0.05),
        obj(3, "star", "green", 0.5, 0.95),
        obj(4, "triangle", "white", 0.55, 0.45),
    ),
)


@pytest.mark.parametrize(
    ("q", "a"),
    [
        ("what colour is the circle?", "red"),
        ("What color is the star", "green"),
        ("what colour is the square?", "several"),
        ("what colour is the diamond?", "none"),
        ("what shape is the red object?", "circle"),
        ("what shape is the blue object?", "several"),
        ("what shape is the pink object?", "none"),
        ("how many squares are there?", "two"),
        ("how many diamonds are there?", "zero"),
        ("how many blue objects are there?", "two"),
        ("how many objects are there?", "five"),
        ("where is the red circle?", "left"),
        ("where is the green star?", "bottom"),
        ("where is the white triangle?", "centre"),
        ("where is the blue square?", "several"),
        ("what just happened?", "nothing"),
    ],
)
def test_known_answers(q, a):
    assert answer(q, SCENE) == a


def test_position_words():
    one = lambda x, y: Scene(0.0, 0, 640, 360, "black", (0, 0, 0), (obj(0, "star", "red", x, y),))  # noqa: E731
    assert answer("where is the red star?", one(0.9, 0.5)) == "right"
    assert answer("where is the red star?", one(0.5, 0.1)) == "top"
    assert answer("where is the red star?", one(0.6, 0.6)) == "centre"


def test_last_event():
    a = {"shape": "circle", "colour": "red", "x": "0.5", "y": "0.5", "size": "0.1"}
    evs = [Event(1.0, "stop", 0, a), Event(1.5, "grow", 0, a), Event(1.5, "bounce", 1, {**a, "wall": "top"})]
    assert (
        answer("what just happened?", SCENE, evs)
        == "the red circle grows. the red circle bounces off the top edge"
    )
    cut = [*evs, Event(2.0, "cut", None, {}), Event(2.0, "appear", 5, a)]
    assert answer("what just happened?", SCENE, cut) == "the scene cuts"


def test_unknown_question_raises():
    with pytest.raises(SynthError) as ei:
        answer("what is the meaning of life?", SCENE)
    assert ei.value.code == "E_SYNTH_QUESTION"


def test_generated_questions_against_recounts():
    """Random states of a busy world; each answer recomputed here from the objects directly."""
    w = World(WorldConfig.preset("busy", seed=13))
    rng = random.Random(1)
    seen: Counter[str] = Counter()
    for i in range(1500):
        w.step()
        if i % 10:
            continue
        scene, recent = w.state(), w.recent(2.0)
        for q, a, qtype in questions(scene, rng, recent):
            seen[qtype] += 1
            words = q.rstrip("?").split()
            objs = scene.objects
            if qtype == "colour":
                (o,) = [o for o in objs if o.shape == words[-1]]
                assert a == o.colour
            elif qtype == "shape":
                (o,) = [o for o in objs if o.colour == words[-2]]
                assert a == o.shape
            elif qtype == "count":
                if words[2] == "objects":
                    n = len(objs)
                elif words[3] == "objects":
                    n = sum(o.colour == words[2] for o in objs)
                else:
                    n = sum(o.shape + "s" == words[2] for o in objs)
                assert a == NUMBERS[n]
            elif qtype == "position":
                (o,) = [o for o in objs if (o.colour, o.shape) == (words[-2], words[-1])]
                dx, dy = o.nx - 0.5, o.ny - 0.5
                expect = {
                    "centre": abs(dx) < 1 / 6 and abs(dy) < 1 / 6,
                    "left": dx < -abs(dy) and dx < -1 / 6,
                    "right": dx > abs(dy) and dx > 1 / 6,
                    "top": dy < -abs(dx) and dy < -1 / 6,
                    "bottom": dy > abs(dx) and dy > 1 / 6,
                }
                assert [k for k, v in expect.items() if v] == [a]
            else:
                last = [e for e in recent if e.t == max((e.t for e in recent), default=-1)]
                if not recent:
                    assert a == "nothing"
                elif any(e.kind == "cut" for e in last):
                    assert a == "the scene cuts"
                else:
                    assert len(a.split(". ")) == len(last)
    assert set(seen) == set(QTYPES) and min(seen.values()) >= 20


def test_state_at_answers_questions_about_a_moment_of_a_clip():
    """state_at(t) equals the state streamed at that frame; its answers follow from that state."""
    from streamrt.synth import state_at

    cfg = WorldConfig.preset("busy", seed=3, width=32, height=32)
    w = World(cfg)
    for _ in range(301):
        w.step()
    scene, recent = state_at(cfg, 10.0)
    assert scene == w.state() and scene.frame == 300 and recent == w.recent(2.0)
    assert answer("how many objects are there?", scene) == NUMBERS[len(w.state().objects)]
    assert answer("what just happened?", scene, recent) == answer(
        "what just happened?", w.state(), w.recent(2.0)
    )
