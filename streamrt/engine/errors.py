"""The engine's typed error: a stable `code` (E_ENGINE_*) and a message naming the problem."""

from __future__ import annotations


class EngineError(ValueError):
    """Bad engine input (question, output path, model, configuration); `code` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
