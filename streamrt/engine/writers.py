"""Output files of a session: JSONL (every output), SRT and WebVTT (one cue per complete response).

Each writer flushes after every record it writes, so a run that is killed loses nothing that was
already produced: a JSONL file always holds whole lines, an SRT/WebVTT file whole cues. The format
follows the file's extension (`writer_for`). Writers own their file handle; they know nothing about
how outputs are produced. Times in files are stream times; latency is output - capture.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Protocol

from streamrt.engine.errors import EngineError
from streamrt.engine.types import Output, ResponseEnd, TextDelta

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".srt": "srt", ".vtt": "vtt"}


def output_record(o: Output) -> dict[str, object]:
    """The JSON form of an output: stream times `t*` in seconds; `capture` and `output` are this
    machine's monotonic clock in seconds (comparable within one file), latency = output - capture."""
    if isinstance(o, TextDelta):
        return {
            "type": "delta",
            "segment": o.segment,
            "kind": o.kind,
            "t": round(o.t, 3),
            "text": o.text,
            "capture": round(o.capture, 4),
            "output": round(o.output, 4),
            "latency_s": round(o.output - o.capture, 4),
            "deadline_met": o.deadline_met,
            "question": o.question,
        }
    if isinstance(o, ResponseEnd):
        return {
            "type": "response",
            "segment": o.segment,
            "kind": o.kind,
            "t": round(o.t, 3),
            "text": o.text,
            "tokens": o.tokens,
            "reason": o.reason,
            "trigger": o.trigger,
            "capture": round(o.capture, 4),
            "output": round(o.output, 4),
            "latency_s": round(o.output - o.capture, 4),
            "deadline_met": o.deadline_met,
            "question": o.question,
            "question_text": o.question_text,
        }
    return {
        "type": "chunk",
        "index": o.index,
        "t_start": round(o.t_start, 3),
        "t_end": round(o.t_end, 3),
        "tokens_total": o.tokens_total,
        "tokens_kept": o.tokens_kept,
        "p_silence": round(o.p_silence, 4),
        "spoke": o.spoke,
        "capture": round(o.capture, 4),
        "output": round(o.output, 4),
        "latency_s": round(o.output - o.capture, 4),
        "deadline_met": o.deadline_met,
        "encode_s": round(o.encode_s, 4),
        "prefill_s": round(o.prefill_s, 4),
    }


def cue_text(o: ResponseEnd) -> str:
    """The text of a subtitle cue: the commentary, or "Q: ... A: ..." for an answer."""
    if o.kind == "answer":
        return f"Q: {o.question_text}\nA: {o.text}"
    return o.text


def timestamp(seconds: float, sep: str) -> str:
    """HH:MM:SS<sep>mmm (sep "," for SRT, "." for WebVTT)."""
    ms = max(0, round(seconds * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


class Writer(Protocol):
    def write(self, o: Output) -> None: ...

    def close(self) -> None: ...


class JsonlWriter:
    """One JSON object per output per line; a header line first (`meta`)."""

    def __init__(self, f: IO[str], meta: dict[str, object]) -> None:
        self._f = f
        self._line({"type": "header", **meta})

    def _line(self, rec: dict[str, object]) -> None:
        self._f.write(json.dumps(rec) + "\n")
        self._f.flush()

    def write(self, o: Output) -> None:
        self._line(output_record(o))

    def summary(self, rec: dict[str, object]) -> None:
        self._line({"type": "summary", **rec})

    def close(self) -> None:
        self._f.close()


class CueWriter:
    """SRT or WebVTT: one cue per complete response, shown from its stream time for `cue_s` seconds."""

    def __init__(self, f: IO[str], fmt: str, cue_s: float = 2.0) -> None:
        self._f = f
        self._fmt = fmt
        self._cue_s = cue_s
        self._n = 0
        if fmt == "vtt":
            f.write("WEBVTT\n\n")
            f.flush()

    def write(self, o: Output) -> None:
        if not isinstance(o, ResponseEnd) or not (o.text.strip() or o.kind == "answer"):
            return
        self._n += 1
        sep = "," if self._fmt == "srt" else "."
        span = f"{timestamp(o.t, sep)} --> {timestamp(o.t + self._cue_s, sep)}"
        head = f"{self._n}\n" if self._fmt == "srt" else ""
        body = "\n".join(
            line for line in cue_text(o).splitlines() if line.strip()
        )  # no blank line inside a cue
        self._f.write(f"{head}{span}\n{body}\n\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def output_format(path: Path) -> str:
    """ "jsonl", "srt" or "vtt" from the extension (E_ENGINE_OUT_FORMAT for anything else)."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise EngineError(
            "E_ENGINE_OUT_FORMAT", f"{path}: unknown output format {path.suffix!r}; use .jsonl, .srt or .vtt"
        )
    return fmt


def writer_for(path: Path, meta: dict[str, object], cue_s: float = 2.0) -> JsonlWriter | CueWriter:
    """Open `path` for writing in the format its extension names (.jsonl/.json, .srt, .vtt)."""
    fmt = output_format(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = path.open("w", encoding="utf-8")
    except OSError as e:
        raise EngineError("E_ENGINE_OUT_OPEN", f"{path}: cannot open for writing ({e.strerror})") from e
    return JsonlWriter(f, meta) if fmt == "jsonl" else CueWriter(f, fmt, cue_s)
