"""`streamrt train`: the registry's help lines match the trainers, and each trainer's --help works."""

from __future__ import annotations

import importlib

import pytest
from streamrt.models.train_registry import TRAINERS

from streamrt.cli import main


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_registry_help_matches_trainer(name):
    path, help_ = TRAINERS[name]
    assert importlib.import_module(path).HELP == help_


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_trainer_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", name, "--help"])
    assert e.value.code == 0
    assert f"streamrt train {name}" in capsys.readouterr().out


def test_unknown_trainer_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "nope"])
    assert e.value.code == 2


def test_train_vlm_options_reach_the_config(tmp_path, capsys):
    """`train vlm` flags land in TrainConfig (checked on the checkpoint's saved config), and a tiny
    run completes through the CLI."""
    import torch

    out = tmp_path / "vlm"
    argv = ["train", "vlm", "--out", str(out), "--steps", "2", "--batch", "1", "--chunks", "1"]
    argv += ["--question-rate", "0.5", "--lr", "0.001", "--seed", "7", "--checkpoint-every", "1"]
    assert main(argv) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    cfg = torch.load(out / "checkpoint.pt", weights_only=False)["config"]
    assert (cfg["steps"], cfg["batch"], cfg["chunks_per_seq"], cfg["question_rate"]) == (2, 1, 1, 0.5)
    assert (cfg["lr"], cfg["seed"]) == (0.001, 7)
