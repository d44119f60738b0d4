"""Guardrails for the package-dir mapping (DESIGN.md §2): every package folder is listed in
pyproject, no module imports a mapped folder by its bare name, and every module imports."""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
PACKAGE_DIR: dict[str, str] = CONF["package-dir"]
BARE = {"models", "cache", "kernels", "apps", "assets"}


def source_packages() -> dict[str, Path]:
    """Every folder holding an __init__.py under a mapped root, by its installed package name."""
    out = {}
    for pkg, folder in PACKAGE_DIR.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            name = ".".join([pkg, *rel.parts]) if rel.parts else pkg
            out[name] = init.parent
    return out


def source_modules() -> list[str]:
    mods = []
    for pkg, folder in source_packages().items():
        for f in sorted(folder.glob("*.py")):
            if f.name != "__main__.py":  # runs the CLI on import; covered by the CLI tests
                mods.append(pkg if f.name == "__init__.py" else f"{pkg}.{f.stem}")
    return sorted(mods)


def test_every_package_is_listed():
    listed = set(CONF["packages"])
    found = set(source_packages())
    assert found - listed == set(), f"add these to [tool.setuptools] packages: {sorted(found - listed)}"
    assert listed - found == set(), f"listed but missing on disk: {sorted(listed - found)}"


def test_no_bare_imports_of_mapped_folders():
    offenders = []
    for folder in {*PACKAGE_DIR.values(), "tests"}:
        for f in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(f.read_text(), str(f))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                offenders += [f"{f.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in BARE]
    assert offenders == []


@pytest.mark.parametrize("module", source_modules())
def test_module_imports(module):
    importlib.import_module(module)
