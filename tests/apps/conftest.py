"""Fixtures of the apps tests: small real models (the built-in ones when installed, else random-weight
models of the same architectures), a real `streamrt serve` subprocess on a loopback port, a
deterministic fake-camera clip (y4m of the shapes world) and headless Chromium driven by selenium
through Debian's chromedriver (no browser download)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
HAVE_BROWSER = Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()


def have_builtin_vlm() -> bool:
    from streamrt.models.vlm import builtin_path

    return (builtin_path() / "config.json").is_file()


def have_builtin_gen() -> bool:
    from streamrt.models.gen.model import builtin_path

    return (builtin_path() / "model.safetensors").is_file()


@dataclass(frozen=True)
class Models:
    vlm: str
    """--vlm-model argument: "builtin" or a random-weight model folder."""
    gen: Path | None
    """--gen-model argument (None: the built-in generator)."""
    trained_vlm: bool


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Models:
    root = tmp_path_factory.mktemp("models")
    vlm = "builtin"
    if not have_builtin_vlm():
        from streamrt.models.vlm.train import init_run

        init_run(root / "vlm", seed=0)
        vlm = str(root / "vlm")
    gen = None
    if not have_builtin_gen():
        from streamrt.models.gen.dit import GenModelConfig
        from streamrt.models.gen.model import GenModel, GenSpec
        from streamrt.models.gen.text import shapes_world_vocab

        torch.manual_seed(0)
        vocab = shapes_world_vocab()
        cfg = GenModelConfig(patch=4, dim=24, heads=2, layers=2, text_len=6, vocab_size=len(vocab))
        m = GenModel(GenSpec(cfg, vocab, 32, 32, 3.0)).eval()
        with torch.no_grad():  # adaLN-zero init outputs flat frames: randomise so the output has structure
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.2)
        gen = root / "gen"
        m.save(gen)
    return Models(vlm, gen, vlm == "builtin")


@dataclass(frozen=True)
class Served:
    proc: subprocess.Popen
    url: str
    """ws://127.0.0.1:PORT/ws"""
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def health(self) -> dict:
        with urllib.request.urlopen(f"{self.http}/healthz", timeout=10) as r:
            return json.loads(r.read())


def start_server(models: Models, *extra: str) -> Served:
    """A real `streamrt serve` subprocess on a free loopback port (both modes)."""
    cmd = [sys.executable, "-m", "streamrt", "serve", "--port", "0", "--threads", "1"]
    cmd += ["--modes", "understand,generate", "--vlm-model", models.vlm, *extra]
    if models.gen is not None:
        cmd += ["--gen-model", str(models.gen)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # blocks until the server prints its URL (or exits)
    m = re.search(r"ws://127\.0\.0\.1:(\d+)/ws", line)
    if not m:
        proc.kill()
        raise AssertionError(f"server did not start: {line!r} {proc.stderr.read()[-2000:]}")
    return Served(proc, m.group(0), int(m.group(1)))


def stop_server(s: Served) -> None:
    if s.proc.poll() is None:
        s.proc.kill()
    s.proc.wait(10)


@pytest.fixture(scope="session")
def served(models: Models) -> Iterator[Served]:
    s = start_server(models)
    yield s
    stop_server(s)


def write_y4m(path: Path, seconds: float = 4.0, fps: int = 10, size: tuple[int, int] = (320, 180)) -> Path:
    """The shapes world (demo preset, seed 5) as a YUV4MPEG2 4:2:0 file: Chromium's fake camera input."""
    import cv2

    from streamrt.synth import World, WorldConfig

    w, h = size
    world = World(WorldConfig.preset("demo", seed=5, width=w, height=h, fps=float(fps)))
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i, fr in enumerate(world.frames()):
            if i >= int(seconds * fps):
                break
            yuv = cv2.cvtColor(np.ascontiguousarray(fr.pixels), cv2.COLOR_RGB2YUV_I420)  # [H*3/2, W]
            f.write(b"FRAME\n" + yuv.tobytes())
    return path


@pytest.fixture(scope="session")
def fake_cam(tmp_path_factory) -> Path:
    return write_y4m(tmp_path_factory.mktemp("cam") / "cam.y4m")


def chrome(fake_cam: Path | None, *, width: int = 1200, height: int = 900, deny_camera: bool = False):
    """Headless Chromium (Debian's) through chromedriver, with the fake camera when given (deny_camera:
    a fake camera whose permission prompt is refused)."""
    if not HAVE_BROWSER:
        pytest.skip("needs Debian chromium + chromium-driver (scripts/install-system.sh)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={width},{height}",
    ):
        opts.add_argument(flag)
    if deny_camera:
        opts.add_argument("--use-fake-device-for-media-stream")
    if fake_cam is not None:
        opts.add_argument("--use-fake-device-for-media-stream")
        opts.add_argument("--use-fake-ui-for-media-stream")
        opts.add_argument(f"--use-file-for-fake-video-capture={fake_cam}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    drv.set_page_load_timeout(20)
    drv.set_script_timeout(20)
    if deny_camera:  # what a user's "Block" does: the permission is denied for every site
        drv.execute_cdp_cmd("Browser.setPermission", {"permission": {"name": "camera"}, "setting": "denied"})
    return drv


@pytest.fixture
def make_chrome() -> Iterator[Callable[..., object]]:
    """`make_chrome(fake_cam, ...)`: a browser (see `chrome`), quit at the end of the test."""
    started: list = []

    def make(*args: object, **kw: object):
        drv = chrome(*args, **kw)  # type: ignore[arg-type]
        started.append(drv)
        return drv

    yield make
    for drv in started:
        drv.quit()


@pytest.fixture
def browser(make_chrome, fake_cam: Path):
    return make_chrome(fake_cam)


@pytest.fixture(scope="session")
def make_server(models: Models) -> Iterator[Callable[..., Served]]:
    """`make_server(*extra_args)`: another `streamrt serve` subprocess, stopped at the end of the session."""
    started: list[Served] = []

    def make(*extra: str) -> Served:
        s = start_server(models, *extra)
        started.append(s)
        return s

    yield make
    for s in started:
        stop_server(s)
