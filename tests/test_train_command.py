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
