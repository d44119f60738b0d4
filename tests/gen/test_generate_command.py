"""`streamrt generate`: a switch follows --prompt-switch, else the checkpoint's own mode (the built-in
model names recache); the sampler follows --sampler, else the checkpoint's (renoise); the file holds
every frame (read back with PyAV)."""

from __future__ import annotations

import ast

import av
import pytest

from streamrt.cli import main


def _counters(out: str) -> dict[str, int]:
    line = next(x for x in out.splitlines() if x.startswith("counters:"))
    return ast.literal_eval(line.removeprefix("counters:").strip())


@pytest.mark.parametrize(("flag", "recaches", "cuts"), [([], 1, 0), (["--prompt-switch", "hard-cut"], 0, 1)])
def test_prompt_switch_mode(tmp_path, capsys, flag, recaches, cuts) -> None:
    out = tmp_path / "sw.mp4"
    argv = ["generate", "--prompt", "a red circle", "--switch", "1:a blue square", "--seconds", "2"]
    assert main([*argv, "--threads", "1", "--out", str(out), *flag]) == 0
    counters = _counters(capsys.readouterr().out)
    assert (counters["recaches"], counters["hard_cuts"]) == (recaches, cuts)
    with av.open(str(out)) as f:
        assert sum(1 for _ in f.decode(video=0)) == 16  # 2 s at the engine's 8 fps


@pytest.mark.parametrize(("flag", "sampler"), [([], "renoise"), (["--sampler", "euler"], "euler")])
def test_sampler(tmp_path, capsys, flag, sampler) -> None:
    out = tmp_path / "s.mp4"
    argv = ["generate", "--prompt", "a red circle", "--seconds", "1", "--threads", "1", "--out", str(out)]
    assert main([*argv, *flag]) == 0
    assert f"4 steps ({sampler})" in capsys.readouterr().out
