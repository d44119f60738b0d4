"""`streamrt serve` as a real subprocess (start, /healthz, sessions, SIGINT = graceful stop) and
`streamrt client` against it, for text-to-video and for a video file (video to video)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from streamrt.cli import main

DEMO = Path(__file__).resolve().parents[2] / "assets" / "demo" / "shapes_demo.mp4"


@pytest.fixture
def served(gen_model, tmp_path):
    gen_model.save(tmp_path / "gen")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamrt",
            "serve",
            "--gen-model",
            str(tmp_path / "gen"),
            "--port",
            "0",
            "--threads",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # blocks until the server prints its URL (or exits)
        m = re.search(r"(ws://\S+)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield proc, m.group(1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_serve_and_client_commands(served, tmp_path, capsys) -> None:
    proc, url = served
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
        assert json.loads(r.read())["modes"] == ["generate"]
    out1 = tmp_path / "t2v"
    assert (
        main(
            [
                "client",
                "none",
                "--server",
                url,
                "--prompt",
                "a red circle",
                "--frames",
                "4",
                "--save",
                str(out1),
            ]
        )
        == 0
    )
    assert len(list(out1.glob("*.jpg"))) == 4
    out2 = tmp_path / "v2v"
    rc = main(
        [
            "client",
            str(DEMO),
            "--server",
            url,
            "--fps",
            "20",
            "--size",
            "64",
            "--frames",
            "5",
            "--save",
            str(out2),
        ]
    )
    assert rc == 0 and len(list(out2.glob("*.jpg"))) == 5
    printed = capsys.readouterr().out
    assert printed.count("session ") == 2 and "5 output frames" in printed
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    assert proc.wait(20) == 0 and time.monotonic() - t0 < 20
    assert "shutting down" in proc.stderr.read()


def test_serve_refuses_a_public_bind_without_token(capsys) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "E_SERVER_CONFIG" in capsys.readouterr().err


def test_help_texts(capsys) -> None:
    for cmd in ("serve", "client"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert "examples:" in capsys.readouterr().out


def test_client_command_understand_mode_with_questions(server_thread, vlm_adapter, capsys) -> None:
    from streamrt.server.understand import understand_factory

    srv = server_thread({"understand": understand_factory(vlm_adapter)})
    argv = ["client", str(DEMO), "--server", srv.url, "--mode", "understand", "--fps", "4", "--size", "64"]
    assert main([*argv, "--ask", "0:what colour is the circle?", "--seconds", "4"]) == 0
    out = capsys.readouterr().out
    assert "mode=understand" in out and re.search(r"^\[\d+\] ", out, re.M), out  # a final text segment
