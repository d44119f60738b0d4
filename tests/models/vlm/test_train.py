"""Training: seeded and resumable. Two steps in one run equal one step, a stop, and a resumed
second step, bit for bit; the run directory loads as a model at once; a run started from another
model (`init`) starts from exactly its weights."""

from __future__ import annotations

import torch
from streamrt.models.vlm import load_adapter
from streamrt.models.vlm.train import TrainConfig, train


def _weights(path):
    return {k: v.clone() for k, v in load_adapter(str(path)).model.state_dict().items()}


def test_resume_is_exact(tmp_path):
    cfg = dict(batch=1, chunks_per_seq=2, windows_per_world=1, checkpoint_every=1, threads=1)
    train(tmp_path / "a", TrainConfig(steps=2, **cfg))
    train(tmp_path / "b", TrainConfig(steps=1, **cfg))
    train(tmp_path / "b", TrainConfig(steps=2, **cfg))
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    fresh = TrainConfig(steps=0, **cfg)
    train(tmp_path / "c", fresh)
    assert any(not torch.equal(a[k], v) for k, v in _weights(tmp_path / "c").items())


def test_init_starts_from_the_given_model(tmp_path):
    cfg = dict(batch=1, chunks_per_seq=2, windows_per_world=1, checkpoint_every=1, threads=1)
    train(tmp_path / "a", TrainConfig(steps=1, **cfg))
    train(tmp_path / "b", TrainConfig(steps=0, init=str(tmp_path / "a"), seed=3, **cfg))
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    train(tmp_path / "b", TrainConfig(steps=1, init=str(tmp_path / "a"), seed=3, **cfg))  # resumes b
    assert any(not torch.equal(a[k], v) for k, v in _weights(tmp_path / "b").items())


def test_vision_only_trains_the_tower_alone(tmp_path):
    cfg = dict(batch=1, chunks_per_seq=2, windows_per_world=1, checkpoint_every=1, threads=1)
    train(tmp_path / "a", TrainConfig(steps=0, **cfg))
    train(tmp_path / "b", TrainConfig(steps=1, vision_only=True, init=str(tmp_path / "a"), **cfg))
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    tower = [k for k in a if k.startswith("model.visual.")]
    assert tower and all(not torch.equal(a[k], b[k]) for k in tower if k.endswith("weight"))
    assert all(torch.equal(a[k], b[k]) for k in a if k not in tower)


def test_init_vision_takes_the_donor_tower(tmp_path):
    cfg = dict(batch=1, chunks_per_seq=2, windows_per_world=1, checkpoint_every=1, threads=1)
    train(tmp_path / "old", TrainConfig(steps=1, patch_size=16, merge=1, **cfg))
    train(tmp_path / "vis", TrainConfig(steps=1, vision_only=True, seed=5, **cfg))
    train(
        tmp_path / "new",
        TrainConfig(steps=0, init=str(tmp_path / "old"), init_vision=str(tmp_path / "vis"), **cfg),
    )
    old, vis, new = (_weights(tmp_path / d) for d in ("old", "vis", "new"))
    assert new.keys() == vis.keys()
    for k, v in new.items():
        assert torch.equal(v, vis[k] if k.startswith("model.visual.") else old[k]), k
    adapter = load_adapter(str(tmp_path / "new"))
    assert (adapter.patch, adapter.merge) == (8, 2)
    train(
        tmp_path / "new",
        TrainConfig(steps=1, init=str(tmp_path / "old"), init_vision=str(tmp_path / "vis"), **cfg),
    )
