"""describe / parse / caption: the parser inverts the sentences for every event kind."""

from __future__ import annotations

from collections import Counter

from streamrt.synth import (
    COLOURS,
    DIRECTIONS,
    EVENT_KINDS,
    SHAPES,
    SIDES,
    Event,
    Scene,
    SceneObject,
    World,
    WorldConfig,
    caption,
    describe,
    mention,
    mention_f1,
    parse,
)


def all_events() -> list[Event]:
    """Every kind with every value of every word slot."""
    out = []
    base = {"x": "0.5", "y": "0.5", "size": "0.1"}
    for s in SHAPES:
        for c in COLOURS:
            a = {**base, "shape": s, "colour": c}
            out += [Event(0.0, k, 1, a) for k in ("appear", "stop", "grow", "shrink")]
            out += [Event(0.0, k, 1, {**a, "side": d}) for k in ("enter", "leave") for d in SIDES]
            out += [Event(0.0, "move_start", 1, {**a, "direction": d}) for d in DIRECTIONS]
            out += [Event(0.0, "bounce", 1, {**a, "wall": d, "direction": "up"}) for d in SIDES]
            out += [Event(0.0, "colour_change", 1, {**a, "from": o}) for o in COLOURS if o != c]
    out += [Event(0.0, k, None, {}) for k in ("cut", "still_start", "still_end")]
    return out


def test_parse_inverts_describe_for_every_event():
    events = all_events()
    assert {e.kind for e in events} == set(EVENT_KINDS)
    for e in events:
        assert parse(describe(e)) == [mention(e)], describe(e)
    sentences = [describe(e) for e in events]
    assert len(set(sentences)) == len(set(map(mention, events)))  # different content, different words


def test_parse_commentary_with_timestamps_noise_and_case():
    w = World(WorldConfig.preset("busy", seed=4))
    events = [e for _ in range(600) for e in w.step()]
    assert Counter(e.kind for e in events).keys() >= {"enter", "bounce", "cut"}
    text = "\n".join(f"[{e.t:8.2f}s] {describe(e).upper()}." for e in events)
    assert parse(text) == [mention(e) for e in events]
    noisy = (
        "hello there. the red circle enters from the left; The blue square turns green! 12.5: the scene cuts"
    )
    got = parse(noisy)
    assert [m.kind for m in got] == ["colour_change", "cut"]
    assert got[0].colour == "blue" and got[0].shape == "square" and got[0].detail == "green"
    assert parse("") == [] and parse("a red hexagon appears") == []


def test_examples_read_naturally():
    a = {"shape": "circle", "colour": "red", "x": "0", "y": "0.5", "size": "0.1"}
    assert describe(Event(1.0, "enter", 3, {**a, "side": "left"})) == "a red circle enters from the left"
    assert describe(Event(1.0, "appear", 3, {**a, "colour": "orange"})) == "an orange circle appears"
    assert describe(
        Event(1.0, "colour_change", 3, {**a, "shape": "square", "colour": "green", "from": "blue"})
    ) == ("the blue square turns green")
    assert describe(Event(1.0, "cut", None, {"scene": "2", "background": "slate"})) == "the scene cuts"


def obj(i: int, shape: str, colour: str, nx: float = 0.5, ny: float = 0.5) -> SceneObject:
    return SceneObject(i, shape, colour, COLOURS[colour], nx, ny, 0.1, 0.0, 0.0, i)


def scene_of(*objs: SceneObject) -> Scene:
    return Scene(0.0, 0, 640, 360, "black", (0, 0, 0), tuple(objs))


def test_caption():
    assert caption(scene_of()) == "nothing"
    assert caption(scene_of(obj(0, "circle", "red"))) == "a red circle"
    s = scene_of(
        obj(0, "circle", "red"), obj(1, "square", "blue"), obj(2, "square", "blue"), obj(3, "star", "orange")
    )
    assert caption(s) == "a red circle, two blue squares and an orange star"


def test_mention_f1():
    w = World(WorldConfig.preset("busy", seed=6))
    truth = [mention(e) for _ in range(300) for e in w.step()]
    assert len(truth) > 10
    assert mention_f1(truth, truth) == (1.0, 1.0, 1.0)
    half = truth[: len(truth) // 2]
    p, r, f = mention_f1(half, truth)
    assert p == 1.0 and r == len(half) / len(truth) and abs(f - 2 * r / (1 + r)) < 1e-12
    assert mention_f1([], truth) == (0.0, 0.0, 0.0) and mention_f1([], []) == (1.0, 1.0, 1.0)
    assert mention_f1(parse("the scene cuts. the scene cuts"), parse("the scene cuts"))[:2] == (0.5, 1.0)
