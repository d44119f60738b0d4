"""Rendered pixels against the state and the timeline: the colour at every visible centre, the
background elsewhere, at the world's size and at other sizes."""

from __future__ import annotations

import random

import numpy as np

from streamrt.synth import World, WorldConfig, object_map, render
from streamrt.synth.render import inside


def test_centres_show_their_colours_at_event_times_and_random_times(centres):
    w = World(WorldConfig.preset("busy", seed=21))
    rng = random.Random(0)
    checked = frames = 0
    for _ in range(1500):
        events = w.step()
        if events or rng.random() < 0.05:
            scene = w.state()
            for size in ((scene.width, scene.height), (64, 64), (160, 90)):
                checked += centres(scene, render(scene, *size))
            frames += 1
    assert frames > 100 and checked > 1000


def test_event_attrs_point_at_their_colour(nearest):
    """The timeline alone (x, y, colour of each event) predicts the pixel, unless something covers it."""
    w = World(WorldConfig.preset("busy", seed=8))
    hits = 0
    for _ in range(1500):
        for e in w.step():
            if e.object_id is None or e.kind == "leave":
                continue
            scene = w.state()
            px = render(scene)
            row, col = int(float(e.attrs["y"]) * scene.height), int(float(e.attrs["x"]) * scene.width)
            o = scene.find(e.object_id)
            above = [p for p in scene.objects if p.z > o.z]
            colours = {e.attrs["colour"], *(p.colour for p in above)}
            assert nearest(px[min(row, scene.height - 1), min(col, scene.width - 1)])[0] in colours
            hits += not above
    assert hits > 50


def test_background_outside_every_bounding_box():
    w = World(WorldConfig.preset("demo", seed=2))
    for _ in range(120):
        w.step()
    scene = w.state()
    px = render(scene)
    free = np.ones(px.shape[:2], dtype=bool)
    for o in scene.objects:
        x0, y0, x1, y1 = o.bbox(scene.width, scene.height, scene.width, scene.height)
        free[max(0, int(y0) - 1) : int(y1) + 2, max(0, int(x0) - 1) : int(x1) + 2] = False
    assert free.any() and (px[free] == scene.bg_rgb).all()


def test_shape_areas_are_distinct_and_centres_inside():
    g = (np.arange(400) + 0.5) / 200 - 1.0
    u, v = g[None, :], g[:, None]
    areas = {s: inside(s, u, v).mean() * 4 for s in ("circle", "square", "triangle", "star", "diamond")}
    assert abs(areas["circle"] - np.pi) < 0.01 and abs(areas["diamond"] - 2) < 0.01
    assert abs(areas["square"] - 1.7**2) < 0.01 and abs(areas["triangle"] - 3 * np.sqrt(3) / 4) < 0.01
    assert 0.5 < areas["star"] < 1.6
    for s in areas:
        assert inside(s, np.zeros((1, 1)), np.zeros((1, 1))).all()


def test_object_map_agrees_with_the_rendered_pixels():
    """Where the map names an object the frame shows that object's colour; where it says background,
    the background colour; and every object the map names is one whose centre test covers it."""
    w = World(WorldConfig.preset("busy", seed=3))
    seen = 0
    for step in range(600):
        w.step()
        if step % 20:
            continue
        scene = w.state()
        for size in ((scene.width, scene.height), (128, 80)):
            px, ids = render(scene, *size), object_map(scene, *size)
            assert ids.shape == px.shape[:2]
            assert (px[ids < 0] == scene.bg_rgb).all()
            for i, o in enumerate(scene.objects):
                assert (px[ids == i] == o.rgb).all()
                seen += int((ids == i).any())
    assert seen > 50
