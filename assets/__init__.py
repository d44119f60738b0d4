"""streamrt.assets: package data (demo clips and their timelines, trained tiny model weights, web
static files). `path(name)` resolves a file shipped here, installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def path(name: str) -> Path:
    """Absolute path of the shipped asset `name` (relative to the assets folder); raises if absent."""
    p = ROOT / name
    if not p.exists():
        raise FileNotFoundError(f"streamrt asset {name!r} not found under {ROOT}")
    return p
