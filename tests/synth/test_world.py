"""The simulation: determinism, every event kind, enter/leave/cut/still semantics, bounded state."""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter

import numpy as np
import pytest

from streamrt.synth import EVENT_KINDS, SynthError, World, WorldConfig, render


def digest(cfg: WorldConfig, n: int) -> tuple[str, list[tuple]]:
    h = hashlib.sha256()
    events = []
    for f in itertools.islice(World(cfg).frames(), n):
        h.update(f.pixels.tobytes())
        events += [(e.t, e.kind, e.object_id, tuple(sorted(e.attrs.items()))) for e in f.events]
    return h.hexdigest(), events


def test_same_seed_same_bytes_and_events():
    cfg = WorldConfig.preset("busy", seed=11, width=96, height=64)
    a, b = digest(cfg, 400), digest(cfg, 400)
    assert a == b
    assert len(a[1]) > 20


def test_different_seed_differs():
    a = digest(WorldConfig.preset("busy", seed=1, width=96, height=64), 200)
    b = digest(WorldConfig.preset("busy", seed=2, width=96, height=64), 200)
    assert a[0] != b[0] and a[1] != b[1]


def run_busy(n: int = 3000, seed: int = 5):
    w = World(WorldConfig.preset("busy", seed=seed))
    for _ in range(n):
        ev = w.step()
        yield ev, w.state()


def test_every_event_kind_happens_and_is_consistent_with_state():
    kinds: Counter[str] = Counter()
    prev = None
    for events, scene in run_busy():
        kinds.update(e.kind for e in events)
        ids = {o.id for o in scene.objects}
        prev_ids = set() if prev is None else {o.id for o in prev.objects}
        for e in events:
            assert e.t == scene.t and e.frame == scene.frame
            if e.kind in ("appear", "enter"):
                assert e.object_id in ids and e.object_id not in prev_ids
            if e.kind == "leave":
                assert e.object_id in prev_ids and e.object_id not in ids
            if e.kind in ("move_start", "stop", "bounce", "colour_change", "grow", "shrink"):
                o = scene.find(e.object_id)
                assert o is not None and o.colour == e.attrs["colour"] and o.shape == e.attrs["shape"]
                assert f"{o.nx:.4f}" == e.attrs["x"] and f"{o.ny:.4f}" == e.attrs["y"]
                assert o.moving == (e.kind != "stop") or e.kind in ("colour_change", "grow", "shrink")
            if e.kind == "colour_change":
                assert e.attrs["from"] != e.attrs["colour"]
                assert prev.find(e.object_id).colour == e.attrs["from"]
            if e.kind in ("grow", "shrink"):
                assert (scene.find(e.object_id).size > prev.find(e.object_id).size) == (e.kind == "grow")
            if e.kind == "cut":
                assert ids.isdisjoint(prev_ids) and scene.background == e.attrs["background"]
                assert scene.background != prev.background
        # objects appear only with an event; vanish only by leave or cut
        born = {e.object_id for e in events if e.kind in ("appear", "enter")}
        gone = {e.object_id for e in events if e.kind == "leave"}
        assert ids - prev_ids == born
        if not any(e.kind == "cut" for e in events):
            assert prev_ids - ids == gone
        assert len(scene.objects) <= 8
        prev = scene
    assert set(EVENT_KINDS) <= set(kinds), set(EVENT_KINDS) - set(kinds)


def test_still_periods_freeze_frames_and_events():
    w = World(WorldConfig.preset("busy", seed=3, width=64, height=36))
    frames = list(itertools.islice(w.frames(), 3000))
    starts = [i for i, f in enumerate(frames) if any(e.kind == "still_start" for e in f.events)]
    assert starts
    for s in starts:
        end = next(
            i for i in range(s + 1, len(frames)) if any(e.kind == "still_end" for e in frames[i].events)
        )
        for i in range(s, end):
            assert np.array_equal(frames[i].pixels, frames[s - 1].pixels)
            assert frames[i].scene.still and all(not o.moving for o in frames[i].scene.objects)
            assert i == s or frames[i].events == ()
        assert not frames[end].scene.still


def test_entering_objects_start_on_the_edge_and_leave_fully():
    for events, scene in run_busy(2000, seed=9):
        for e in events:
            if e.kind == "enter":
                o = scene.find(e.object_id)
                edge = {"left": o.nx, "right": 1 - o.nx, "top": o.ny, "bottom": 1 - o.ny}[e.attrs["side"]]
                assert 0 < edge < 0.01 and o.phase == "entering"
            if e.kind == "leave":
                x, y, r = (float(e.attrs[k]) for k in ("x", "y", "size"))
                assert x < 0.1 or x > 0.9 or y < 0.1 or y > 0.9
                assert scene.find(e.object_id) is None


def test_render_at_any_size_matches_a_resize():
    w = World(WorldConfig.preset("demo", seed=4))
    for _ in range(50):
        w.step()
    scene = w.state()
    big, small = render(scene), render(scene, 64, 36)
    assert big.shape == (360, 640, 3) and small.shape == (36, 64, 3)
    # each small pixel centre maps to a big pixel centre ten times finer: same colour almost everywhere
    sub = big[5::10, 5::10]
    assert (sub == small).all(axis=2).mean() > 0.97


def test_recent_window_is_bounded():
    w = World(WorldConfig.preset("busy", seed=2, width=32, height=32, recent_events=16))
    total = sum(len(w.step()) for _ in range(2000))
    assert total > 100 and len(w.recent()) == 16
    assert all(e.t >= w.t - 1.0 for e in w.recent(1.0))


@pytest.mark.parametrize(
    "bad",
    [
        {"width": 4},
        {"fps": 0},
        {"min_objects": 5, "max_objects": 2},
        {"shapes": ("hexagon",)},
        {"colours": ("red",)},
    ],
)
def test_bad_config_raises_typed_error(bad):
    with pytest.raises(SynthError) as ei:
        WorldConfig(**bad)
    assert ei.value.code == "E_SYNTH_CONFIG"


def test_presets():
    assert WorldConfig.preset("simple").max_objects == 2 and WorldConfig.preset("simple").cut_rate == 0
    assert WorldConfig.preset("demo", seed=3).seed == 3
    with pytest.raises(SynthError) as ei:
        WorldConfig.preset("nope")
    assert ei.value.code == "E_SYNTH_PRESET"
    cfg = WorldConfig.preset("busy")
    assert WorldConfig.from_dict(cfg.to_dict()) == cfg
    n = Counter()
    w = World(WorldConfig.preset("simple", seed=1))
    for _ in range(3000):
        n.update(e.kind for e in w.step())
        assert 1 <= len(w.state().objects) <= 2
    assert n["cut"] == 0


def test_stride_is_a_lower_rate_view_of_the_same_stream():
    cfg = WorldConfig.preset("busy", seed=7, width=64, height=36)
    full = list(itertools.islice(World(cfg).frames(), 300))
    third = list(itertools.islice(World(cfg).frames(stride=3), 100))
    for k, f in enumerate(third):
        g = full[3 * k + 2]
        assert f.index == g.index and f.t == g.t and np.array_equal(f.pixels, g.pixels)
        assert f.events == full[3 * k].events + full[3 * k + 1].events + g.events
    with pytest.raises(SynthError):
        next(World(cfg).frames(stride=0))
