"""Reading a `streamrt replay --out RUN.jsonl` file into typed records for the report.

The JSONL holds a `header` line (source, model, fps, frames_per_chunk...), one line per output
(`chunk`, `delta`, `response`) and, when the run finished, a `summary` line (see
streamrt/engine/writers.py). A run that was killed has no summary: `Run.summary` is then computed
from the chunk and response lines (the figures that can be). Owns the parsing and the derived series;
knows nothing about HTML or plots.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class ReportError(ValueError):
    """A run file that cannot be reported on (`code` E_REPORT_INPUT), naming the file and the line."""

    def __init__(self, message: str) -> None:
        super().__init__(f"E_REPORT_INPUT: {message}")
        self.code = "E_REPORT_INPUT"


@dataclass(frozen=True, slots=True)
class ChunkRec:
    index: int
    t_start: float
    t_end: float
    """Stream seconds the chunk covers."""
    tokens_total: int
    tokens_kept: int
    latency_s: float
    """Output - capture of the chunk (vision encode + prefill + decisions)."""
    deadline_met: bool

    @property
    def drop_share(self) -> float:
        return 1.0 - self.tokens_kept / self.tokens_total if self.tokens_total else 0.0


@dataclass(frozen=True, slots=True)
class ResponseRec:
    segment: int
    kind: str
    """"commentary" or "answer"."""
    t: float
    """Stream time the response refers to (seconds)."""
    text: str
    latency_s: float
    deadline_met: bool
    reason: str | None = None
    question_text: str | None = None


@dataclass(frozen=True, slots=True)
class Run:
    path: Path
    header: dict[str, object]
    chunks: tuple[ChunkRec, ...]
    responses: tuple[ResponseRec, ...]
    summary: dict[str, object]
    complete: bool
    """The file ends with the run's own summary line (False: interrupted, summary computed here)."""

    @property
    def budget_s(self) -> float | None:
        """The per-chunk deadline budget: the header's `deadline_s`, else one chunk's duration."""
        h = self.header
        if isinstance(h.get("deadline_s"), int | float):
            return float(h["deadline_s"])  # type: ignore[arg-type]
        fps, fpc = h.get("fps"), h.get("frames_per_chunk")
        if isinstance(fps, int | float) and isinstance(fpc, int | float) and fps > 0:
            return float(fpc) / float(fps)
        return None


def _computed_summary(chunks: list[ChunkRec], responses: list[ResponseRec]) -> dict[str, object]:
    lat = np.asarray([c.latency_s for c in chunks], dtype=np.float64)
    total = sum(c.tokens_total for c in chunks)
    kept = sum(c.tokens_kept for c in chunks)
    return {
        "chunks": len(chunks),
        "tokens_total": total,
        "tokens_kept": kept,
        "drop_share": round(1 - kept / total, 4) if total else 0.0,
        "commentaries": sum(r.kind == "commentary" and bool(r.text.strip()) for r in responses),
        "answers": sum(r.kind == "answer" for r in responses),
        "chunk_latency_p50_s": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "chunk_latency_p99_s": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "chunk_deadline_misses": sum(not c.deadline_met for c in chunks),
        "response_deadline_misses": sum(not r.deadline_met for r in responses),
        "stream_s": chunks[-1].t_end if chunks else 0.0,
    }


def read_run(path: str | Path) -> Run:
    """Parse RUN.jsonl; raises ReportError for a missing file, bad JSON or a file with no header."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: no such file")
    header: dict[str, object] | None = None
    summary: dict[str, object] | None = None
    chunks: list[ChunkRec] = []
    responses: list[ResponseRec] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                kind = r["type"]
                if kind == "header":
                    header = {k: v for k, v in r.items() if k != "type"}
                elif kind == "summary":
                    summary = {k: v for k, v in r.items() if k != "type"}
                elif kind == "chunk":
                    chunks.append(
                        ChunkRec(
                            int(r["index"]),
                            float(r["t_start"]),
                            float(r["t_end"]),
                            int(r["tokens_total"]),
                            int(r["tokens_kept"]),
                            float(r["latency_s"]),
                            bool(r["deadline_met"]),
                        )
                    )
                elif kind == "response":
                    responses.append(
                        ResponseRec(
                            int(r["segment"]),
                            str(r["kind"]),
                            float(r["t"]),
                            str(r["text"]),
                            float(r["latency_s"]),
                            bool(r["deadline_met"]),
                            r.get("reason"),
                            r.get("question_text"),
                        )
                    )
            except (ValueError, KeyError, TypeError) as e:
                raise ReportError(
                    f"{path}:{n}: not a replay JSONL record ({type(e).__name__}: {e})"
                ) from None
    if header is None:
        raise ReportError(f"{path}: no header line (is this the JSONL written by `streamrt replay --out`?)")
    complete = summary is not None
    return Run(
        path,
        header,
        tuple(chunks),
        tuple(responses),
        summary if summary is not None else _computed_summary(chunks, responses),
        complete,
    )
