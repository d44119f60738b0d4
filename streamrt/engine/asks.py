"""Questions scheduled at stream times: parsing `--ask "12.5:what colour is the square?"` and ask
files, and the time-ordered inbox the language model takes them from at chunk boundaries.

Ask file format: one question per line, `SECONDS: question` (blank lines and `#` comments skipped),
or JSON lines `{"t": 12.5, "text": "...", "id": "q1"}`. The inbox owns pending questions (bounded:
questions are never dropped silently; a full inbox refuses with E_ENGINE_ASK_FULL). It does not
know how questions are answered.
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
from pathlib import Path

from streamrt.engine.errors import EngineError
from streamrt.engine.types import Question


def parse_ask(spec: str, qid: str) -> Question:
    """'12.5:what colour is the square?' -> Question(12.5, 'what colour is the square?', qid)."""
    head, sep, text = spec.partition(":")
    try:
        t = float(head)
    except ValueError:
        t = float("nan")
    if not sep or not text.strip() or not t >= 0:
        raise EngineError(
            "E_ENGINE_ASK",
            f"bad question {spec!r}: want SECONDS:QUESTION, e.g. '12.5:what colour is the square?'",
        )
    return Question(t, text.strip(), qid)


def read_ask_file(path: Path, first_id: int = 0) -> list[Question]:
    """Questions from a file (see module docstring); ids q<N> unless a JSON line names one."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise EngineError("E_ENGINE_ASK_FILE", f"{path}: cannot read ({e.strerror})") from e
    out: list[Question] = []
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        qid = f"q{first_id + len(out)}"
        if s.startswith("{"):
            try:
                d = json.loads(s)
                out.append(Question(float(d["t"]), str(d["text"]).strip(), str(d.get("id", qid))))
            except (ValueError, KeyError, TypeError) as e:
                raise EngineError("E_ENGINE_ASK_FILE", f"{path}:{n}: bad JSON question ({e})") from e
            continue
        try:
            out.append(parse_ask(s, qid))
        except EngineError as e:
            raise EngineError("E_ENGINE_ASK_FILE", f"{path}:{n}: {e}") from e
    return out


class Inbox:
    """Pending questions ordered by stream time (then arrival); thread-safe; bounded."""

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._heap: list[tuple[float, int, Question]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def put(self, q: Question) -> None:
        with self._lock:
            if len(self._heap) >= self.capacity:
                raise EngineError("E_ENGINE_ASK_FULL", f"{self.capacity} questions already pending")
            heapq.heappush(self._heap, (q.t, next(self._seq), q))

    def due(self, t: float) -> list[Question]:
        """Remove and return every question asked at or before stream time `t`, in time order."""
        out = []
        with self._lock:
            while self._heap and self._heap[0][0] <= t:
                out.append(heapq.heappop(self._heap)[2])
        return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._heap)
