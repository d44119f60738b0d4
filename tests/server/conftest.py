"""Fixtures of the server tests: a tiny random-weight generator (real GenModel, 16x16 frames), servers
on loopback (in the test's event loop, or in a background thread for blocking clients), and a runner
that puts every async test under a hard timeout."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator

import pytest
import torch
from streamrt.models.gen.dit import GenModelConfig
from streamrt.models.gen.model import GenModel, GenSpec
from streamrt.models.gen.text import shapes_world_vocab

from streamrt.server import Server, ServerConfig
from streamrt.server.generate import generate_factory


def make_tiny_gen(seed: int = 0, size: int = 16) -> GenModel:
    torch.manual_seed(seed)
    vocab = shapes_world_vocab()
    cfg = GenModelConfig(patch=4, dim=24, heads=2, layers=2, text_len=6, vocab_size=len(vocab))
    m = GenModel(GenSpec(cfg, vocab, size, size, 3.0)).eval()
    with torch.no_grad():  # adaLN-zero init makes blocks identity: randomise so every path matters
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return m


@pytest.fixture(scope="session")
def gen_model() -> GenModel:
    return make_tiny_gen()


@pytest.fixture
def factories(gen_model: GenModel) -> dict:
    return {"generate": generate_factory(gen_model)}


def run(coro: Coroutine, timeout: float = 30.0):
    """Run an async test body with a hard timeout (no test can hang the suite)."""

    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


@pytest.fixture
def arun() -> Callable[..., object]:
    return run


@pytest.fixture
def serve(factories: dict) -> Callable[..., contextlib.AbstractAsyncContextManager[Server]]:
    """`async with serve(max_sessions=2) as srv:` a real server on 127.0.0.1, a free port."""

    @contextlib.asynccontextmanager
    async def _serve(**cfg: object) -> AsyncIterator[Server]:
        cfg.setdefault("port", 0)
        async with Server(ServerConfig(**cfg), factories) as srv:  # type: ignore[arg-type]
            yield srv

    return _serve


class ServerThread:
    """A server running on its own event loop in a background thread (for blocking clients)."""

    def __init__(self, factories: dict, **cfg: object) -> None:
        cfg.setdefault("port", 0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = Server(ServerConfig(**cfg), factories)  # type: ignore[arg-type]
        self.call(self.server.start())

    def call(self, coro: Coroutine, timeout: float = 20.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def server_thread(factories: dict) -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def start(modes: dict | None = None, **cfg: object) -> ServerThread:
        st = ServerThread(modes or factories, **cfg)
        started.append(st)
        return st

    yield start
    for st in started:
        st.stop()


@pytest.fixture(scope="session")
def vlm_adapter(tmp_path_factory):
    """The built-in VLM architecture, tokenizer and template with random weights (real HF components)."""
    from streamrt.models.vlm import load_adapter
    from streamrt.models.vlm.train import init_run

    out = tmp_path_factory.mktemp("vlm-random")
    init_run(out, seed=0)
    return load_adapter(str(out))


@pytest.fixture(scope="session")
def builtin_gen() -> GenModel:
    """The built-in generator shipped in streamrt.assets/gen (a missing asset fails the tests)."""
    from streamrt.models.gen.model import load_builtin

    return load_builtin()


@pytest.fixture(scope="session")
def builtin_vlm():
    """The built-in VLM shipped in streamrt.assets/vlm/builtin (a missing asset fails the tests)."""
    from streamrt.models.vlm import load_adapter

    return load_adapter("builtin")
