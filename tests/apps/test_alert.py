"""The alert example (`python -m streamrt.apps.examples.alert`).

Trigger oracle: the shapes world's own language. For every event of several generated streams, the
trigger "red triangle appears|enters" fires on the event's sentence exactly when the event's
`mention` is a red triangle appearing or entering. End to end against a real `streamrt serve`
(understand mode): every final commentary is logged, alerts are exactly the logged commentaries the
trigger matches (cooldown applied), the --exec action ran once per alert. Slow: with the trained
built-in model, the alert fires for the red triangle that the world's timeline says appears at 4.93 s.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from streamrt.apps.examples.alert import Trigger, main

from streamrt.synth import World, WorldConfig, describe, mention

SEED, APPEARS_AT = 37, 4.93  # shapes world (demo preset) seed whose red triangle appears at 4.93 s


def test_trigger_fires_exactly_on_matching_events() -> None:
    trig = Trigger.parse("Red triangle appears|enters")
    n = fired = 0
    for seed in range(6):
        for i, fr in enumerate(World(WorldConfig.preset("busy", seed=seed, width=32, height=18)).frames()):
            if i > 900:
                break
            for e in fr.events:
                m = mention(e)
                want = m.colour == "red" and m.shape == "triangle" and m.kind in ("appear", "enter")
                got = trig.sentence(f"[{e.t:.2f}s] the scene is busy. {describe(e)}; nothing else")
                assert (got is not None) == want, describe(e)
                n, fired = n + 1, fired + want
    assert n > 200 and fired > 0
    assert trig.sentence("a triangle appears. it is red") is None  # one sentence, in order
    with pytest.raises(ValueError):
        Trigger.parse("  ")


def test_bad_arguments_exit_2(capsys) -> None:
    assert main(["x.mp4", "--when", " | "]) == 2
    assert main(["x.mp4", "--when", "red", "--server", "ws://127.0.0.1:9/ws"]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from streamrt.synth import write_video

    path = tmp_path_factory.mktemp("alert") / "red_triangle.mp4"
    write_video(path, World(WorldConfig.preset("demo", seed=SEED)), 9.0, gop=30)
    return path


def run_alert(served, clip, tmp_path) -> tuple[int, list[dict], list[tuple[float, str]]]:
    """Run the example against the server; returns (exit code, logged commentary, expected alerts).
    Checks the example against the oracle: alerts are exactly the logged commentaries the trigger
    matches (5 s cooldown), and --exec ran once per alert with its sentence."""
    log, fired = tmp_path / "log.jsonl", tmp_path / "fired.txt"
    argv = [str(clip), "--when", "red triangle appears|enters", "--server", served.url, "--log", str(log)]
    argv += ["--exec", f'echo "$STREAMRT_ALERT_T $STREAMRT_ALERT_TEXT" >> {fired}', "--fps", "4"]
    code = main(argv)
    recs = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    said = [r for r in recs if r["type"] == "commentary"]
    alerts = [r for r in recs if r["type"] == "alert"]
    trig, want, last = Trigger.parse("red triangle appears|enters"), [], None
    for r in said:
        s = trig.sentence(r["text"])
        if s is not None and (last is None or r["t"] - last >= 5.0):
            want.append((r["t"], s))
            last = r["t"]
    assert [(a["t"], a["sentence"]) for a in alerts] == want
    assert code == (0 if want else 1)
    lines = fired.read_text().splitlines() if fired.exists() else []
    assert [ln.split(" ", 1)[1] for ln in lines] == [s for _, s in want]
    assert all(0 <= r["t"] <= 9.5 for r in said)
    return code, said, want


def test_alert_against_a_real_server(served, models, clip, tmp_path) -> None:
    _, said, _ = run_alert(served, clip, tmp_path)
    assert said or not models.trained_vlm, "the trained model said nothing about 9 s of the shapes world"


@pytest.mark.slow
def test_trained_model_alerts_on_the_red_triangle(served, models, clip, tmp_path) -> None:
    """A model-quality check through the example: the world's timeline has a red triangle appear at
    4.93 s; the trained built-in model must say so within a few seconds."""
    if not models.trained_vlm:
        pytest.skip("the trained built-in VLM is not installed")
    _, said, want = run_alert(served, clip, tmp_path)
    assert want, f"no alert; the model said: {[r['text'] for r in said]}"
    assert APPEARS_AT - 1.0 <= want[0][0] <= APPEARS_AT + 3.0, want


def test_runs_as_a_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "streamrt.apps.examples.alert", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "--when" in out.stdout and "exit codes" in out.stdout
