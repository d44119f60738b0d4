"""The client tests use the server tests' fixtures (a real server with a tiny random-weight generator)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_server_fixtures", Path(__file__).parents[1] / "server" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)

arun = _mod.arun
factories = _mod.factories
gen_model = _mod.gen_model
serve = _mod.serve
server_thread = _mod.server_thread
