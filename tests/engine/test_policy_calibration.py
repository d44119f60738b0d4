"""The model's calibrated response policy: parsed from its streamrt.json "response_policy" entry,
put in place by the engine's default preset (`EngineConfig.for_model`), the generic P(silence) < 0.5
for a model without one; and the "all of" combination it may use. Oracles: the JSON written by the
test itself, hand-made signals, and a stream whose frames never change (scene change exactly 0)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass

import numpy as np
import pytest
from streamrt.models.vlm import load_adapter
from streamrt.models.vlm.loader import builtin_path

from streamrt.engine import ChunkDone, EngineConfig, EngineError, SceneChange, Signal, StreamRun
from streamrt.engine.config import model_response_policy
from streamrt.engine.policy import (
    GENERIC_SILENCE_THRESHOLD,
    AllOf,
    ModelDefault,
    Schedule,
    SilenceThreshold,
    policy_from_metadata,
)


@dataclass(frozen=True, slots=True)
class Frame:
    pixels: np.ndarray  # [H, W, 3] uint8
    t: float


def sig(p: float, change: float) -> Signal:
    return Signal(t=1.0, p_silence=p, change=change, last_spoke=None)


def test_all_of_speaks_only_when_every_part_fires():
    gate = AllOf((SceneChange(0.1), SilenceThreshold(0.5)))
    assert gate.decide(sig(0.2, 0.3)) == "model"  # both fire: the last one's reason
    assert gate.decide(sig(0.7, 0.3)) is None  # P(silence) too high
    assert gate.decide(sig(0.2, 0.05)) is None  # no scene change
    assert gate.decide(sig(0.2, 0.1)) is None  # change must exceed min_change


def test_model_default_acts_as_the_generic_threshold_until_resolved():
    d = ModelDefault()
    assert d.fallback == SilenceThreshold(GENERIC_SILENCE_THRESHOLD) == SilenceThreshold(0.5)
    assert d.decide(sig(0.49, 0.0)) == "model" and d.decide(sig(0.5, 0.0)) is None


@pytest.mark.parametrize(
    ("meta", "want"),
    [
        ({"min_change": 5e-5}, SceneChange(5e-5)),
        ({"silence_threshold": 0.3, "calibration": "note"}, SilenceThreshold(0.3)),
        ({"min_change": 0.01, "silence_threshold": 0.9}, AllOf((SceneChange(0.01), SilenceThreshold(0.9)))),
    ],
)
def test_metadata_parsed(meta, want):
    assert policy_from_metadata(meta, "m/streamrt.json") == want


@pytest.mark.parametrize(
    "meta",
    [{}, {"calibration": "x"}, {"min_change": -0.1}, {"silence_threshold": 1.5}, {"min_change": "0.1"},
     {"silence_threshold": True}, {"threshold": 0.5}],
)  # fmt: skip
def test_bad_metadata_is_a_typed_error_naming_the_file(meta):
    with pytest.raises(EngineError) as e:
        policy_from_metadata(meta, "m/streamrt.json")
    assert e.value.code == "E_ENGINE_POLICY" and "m/streamrt.json" in str(e.value)


def with_policy(src, dst, entry):
    shutil.copytree(src, dst)
    f = dst / "streamrt.json"
    meta = json.loads(f.read_text())
    if entry is None:
        meta.pop("response_policy", None)
    else:
        meta["response_policy"] = entry
    f.write_text(json.dumps(meta))
    return load_adapter(str(dst))


def test_default_preset_takes_the_models_own_policy(random_model_dir, tmp_path):
    calibrated = with_policy(
        random_model_dir, tmp_path / "a", {"min_change": 0.002, "silence_threshold": 0.8}
    )
    want = AllOf((SceneChange(0.002), SilenceThreshold(0.8)))
    for name in ("default", "exact"):
        assert EngineConfig.preset(name, model=calibrated).response == want
    assert EngineConfig().for_model(calibrated).response == want
    # an explicit policy is kept; without a model the preset keeps the unresolved default
    assert EngineConfig.preset("default", model=calibrated, response=Schedule(2.0)).response == Schedule(2.0)
    assert isinstance(EngineConfig.preset("default").response, ModelDefault)
    plain = with_policy(random_model_dir, tmp_path / "b", None)
    assert model_response_policy(plain) is None
    assert EngineConfig.preset("default", model=plain).response == SilenceThreshold(0.5)
    broken = with_policy(random_model_dir, tmp_path / "c", [0.5])
    with pytest.raises(EngineError) as e:
        EngineConfig.preset("default", model=broken)
    assert e.value.code == "E_ENGINE_POLICY" and str(tmp_path / "c") in str(e.value)


def test_builtin_model_ships_its_calibration():
    meta = json.loads((builtin_path() / "streamrt.json").read_text())["response_policy"]
    assert meta["calibration"]  # says how it was measured
    adapter = load_adapter("builtin")
    assert EngineConfig.preset("default", model=adapter).response == policy_from_metadata(meta, "builtin")


def test_a_scene_change_gate_keeps_a_still_stream_silent(random_model_dir, tmp_path):
    """Frames that never change have scene change 0, so a min_change gate never speaks, whatever
    P(silence) says; the generic threshold on the same stream is free to (and the decision per chunk
    follows P(silence) exactly)."""
    adapter = with_policy(random_model_dir, tmp_path / "g", {"min_change": 1e-6})
    still = np.full((180, 320, 3), 90, np.uint8)
    frames = [Frame(still, i / adapter.fps) for i in range(12)]

    def chunks(cfg):
        return [o for o in StreamRun(adapter, iter(frames), cfg) if isinstance(o, ChunkDone)]

    gated = chunks(EngineConfig.preset("exact", model=adapter, max_commentary_tokens=3, spec=None))
    assert len(gated) == 6 and not any(c.spoke for c in gated)
    generic = chunks(
        EngineConfig.preset("exact", response=SilenceThreshold(0.5), max_commentary_tokens=3, spec=None)
    )
    assert [c.spoke for c in generic] == [c.p_silence < 0.5 for c in generic]


def test_bench_policy_specs():
    from streamrt.bench.harness import registry
    from streamrt.bench.vlm_quality import CANDIDATES, parse_policy

    assert {"vlm-quality", "vlm-calibrate", "vlm-stream"} <= set(registry())
    assert parse_policy("greedy") is None
    assert parse_policy("silence:0.3") == SilenceThreshold(0.3)
    assert parse_policy("change:1e-4&silence:0.5") == AllOf((SceneChange(1e-4), SilenceThreshold(0.5)))
    assert len([parse_policy(s) for s in CANDIDATES.split(",")]) == len(CANDIDATES.split(","))
    for bad in ("loud", "silence:x", "change", "silence:0.5&&change:1"):
        with pytest.raises(ValueError, match="bad policy spec"):
            parse_policy(bad)
