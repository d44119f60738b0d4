"""The shipped demo clip: small, decodes fully, its timeline is what the seeded world produces, and
its decoded pixels show the timeline's objects."""

from __future__ import annotations

from pathlib import Path

import av

from streamrt.synth import EVENT_KINDS, World, WorldConfig, read_timeline

DEMO = Path(__file__).resolve().parents[2] / "assets" / "demo"


def test_demo_clip_matches_its_timeline(centres):
    clip = DEMO / "shapes_demo.mp4"
    assert clip.stat().st_size < 2_000_000
    header, events = read_timeline(DEMO / "shapes_demo.events.jsonl")
    cfg = WorldConfig.from_dict(header["config"])
    assert (cfg.width, cfg.height, cfg.fps, cfg.seed) == (640, 360, 30.0, 0)
    assert {e.kind for e in events} == set(EVENT_KINDS)
    world = World(cfg)
    regenerated, scenes = [], {}
    want = {e.frame for e in events} | set(range(0, 750, 50))
    for k in range(header["video"]["frames"]):
        regenerated += world.step()
        if k in want:
            scenes[k] = world.state()
    assert regenerated == events  # the README's command reproduces the timeline exactly
    checked = n = 0
    with av.open(str(clip)) as c:
        for k, frame in enumerate(c.decode(video=0)):
            n += 1
            if k in scenes:
                checked += centres(scenes[k], frame.to_ndarray(format="rgb24"), False)
    assert n == 750 and checked > 100
