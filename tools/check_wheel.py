"""Import every module of an installed streamrt from outside the repository.

Run with the interpreter of the virtual environment the wheel was installed into, from a directory
outside the checkout:  VENV/bin/python REPO/tools/check_wheel.py REPO
The module list comes from the *source tree* (every .py file under the folders pyproject maps), so a
subpackage that was forgotten in the wheel fails here instead of on a user's machine.
"""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path


def source_modules(repo: Path) -> list[str]:
    conf = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    mods = []
    for pkg, folder in conf["package-dir"].items():
        base = repo / folder
        for f in sorted(base.rglob("*.py")):
            rel = f.relative_to(base)
            if f.name == "__main__.py" or not (f.parent / "__init__.py").exists():
                continue
            parts = [pkg, *rel.parent.parts] + ([] if f.name == "__init__.py" else [f.stem])
            mods.append(".".join(parts))
    return sorted(set(mods))


def main() -> int:
    repo = Path(sys.argv[1]).resolve()
    if Path.cwd().resolve().is_relative_to(repo):
        print("run this from outside the repository", file=sys.stderr)
        return 2
    failed = []
    mods = source_modules(repo)
    for m in mods:
        try:
            mod = importlib.import_module(m)
        except Exception as e:  # report every failure, not just the first
            failed.append(f"{m}: {type(e).__name__}: {e}")
            continue
        origin = Path(getattr(mod, "__file__", "") or "").resolve()
        if origin.is_relative_to(repo):
            failed.append(f"{m}: imported from the checkout ({origin}), not the wheel")
    for line in failed:
        print("FAIL", line)
    print(f"imported {len(mods) - len(failed)}/{len(mods)} modules from the installed wheel")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
