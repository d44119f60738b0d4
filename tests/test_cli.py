"""The `streamrt` entry point: help for every command, logging flags, the installed script."""

from __future__ import annotations

import subprocess
import sys

import pytest

from streamrt.cli import build_parser, discover_commands, main


def test_every_command_documents_itself(capsys):
    mods = discover_commands()
    assert "bench" in [m.NAME for m in mods]
    for m in mods:
        assert m.HELP and getattr(m, "DESCRIPTION", "")
        with pytest.raises(SystemExit) as e:
            main([m.NAME, "--help"])
        assert e.value.code == 0
        assert m.NAME in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "commands" in capsys.readouterr().out


def test_verbosity_flags_parse():
    args = build_parser().parse_args(["-vv", "bench", "--list"])
    assert args.verbose == 2


def test_console_script_and_module_run():
    out = subprocess.run(["streamrt", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("streamrt ")
    out = subprocess.run(
        [sys.executable, "-m", "streamrt", "bench", "--list"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
