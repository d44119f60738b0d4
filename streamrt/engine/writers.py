"""Output files of a session: JSONL (every output), SRT and WebVTT (one cue per complete response).

Every record (a JSONL line, a subtitle cue) goes to the file in one `write` the moment it is
produced, so a killed run loses nothing already produced and leaves whole lines / whole cues. A
write that fails (disk full, file-size limit) truncates the file back to its last whole record and
raises `EngineError("E_ENGINE_OUT_WRITE")`: what was written stays valid. The format follows the
file's extension (`writer_for`). Times in files are stream times; latency is output - capture.

Resuming (`streamrt replay --resume`, see `Outputs`): `open_existing` reads a file back, cuts a
partial last record, and returns the writer positioned at `position` records (from a checkpoint);
the records the file holds beyond that position are *pending*: the resumed run regenerates them,
each one is compared with the file's (timing fields aside, see `content`) and not written again.
If a regenerated output differs (a run whose output depends on wall-clock time, e.g. responses cut
at deadlines), every file is cut back to the records before it and the run goes on writing from
there, so the files stay one consistent run. Writers own their file; they know nothing about how
outputs are produced.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

from streamrt.engine.errors import EngineError
from streamrt.engine.types import Output, ResponseEnd, TextDelta

log = logging.getLogger(__name__)

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".srt": "srt", ".vtt": "vtt"}
TIMING_FIELDS = frozenset({"capture", "output", "latency_s", "deadline_met", "encode_s", "prefill_s"})
"""Record fields that measure this machine's clock: they differ between any two runs."""

Verdict = Literal["new", "same", "differs", "none"]
"""What a writer says about an output: to be written, already in the file (equal), already in the
file but different, or not a record of this format."""


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


def content(rec: dict[str, object]) -> dict[str, object]:
    """A record without its timing fields: what two runs of a reproducible replay agree on."""
    return {k: v for k, v in rec.items() if k not in TIMING_FIELDS}


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


class RecordFile:
    """A file appended to one whole record at a time; `size` is the end of the last whole record.

    A failed write (ENOSPC, EFBIG under RLIMIT_FSIZE, EIO) truncates back to `size` (shrinking a
    file needs no space) and raises E_ENGINE_OUT_WRITE naming the file and the cause."""

    def __init__(self, path: Path, keep: int = 0) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
            if keep != os.fstat(self._fd).st_size:
                os.ftruncate(self._fd, keep)  # a regular file: cut a partial record (resume)
            os.lseek(self._fd, keep, os.SEEK_SET)
        except OSError as e:
            raise EngineError("E_ENGINE_OUT_OPEN", f"{path}: cannot open for writing ({e.strerror})") from e
        self.size = keep

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)  # may be short at a size limit; the next write raises
                view = view[n:]
        except OSError as e:
            self._cut(self.size)
            why = {28: "disk full", 27: "file size limit reached"}.get(e.errno or 0, e.strerror)
            raise EngineError(
                "E_ENGINE_OUT_WRITE",
                f"{self.path}: cannot write ({why}); the file keeps its {self.size} bytes of whole records "
                "(free space, then rerun with --resume to continue)",
            ) from e
        self.size += len(data)

    def truncate(self, size: int) -> None:
        """Cut the file back to `size` bytes (a record boundary)."""
        self._cut(size)
        self.size = size

    def _cut(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
            os.lseek(self._fd, size, os.SEEK_SET)
        except OSError:  # a character device (/dev/full) cannot be truncated: nothing was written
            log.debug("%s: cannot truncate", self.path)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _Pending:
    """Records a resumed file holds beyond the regenerated stream's position: (record, end offset)."""

    def __init__(self, records: Sequence[tuple[object, int]], start: int) -> None:
        self.items = deque(records)
        self.offset = start
        """Byte offset after the last record confirmed (or written)."""

    def take(self, rec: object) -> Verdict:
        if not self.items:
            return "new"
        want, end = self.items[0]
        if want != rec:
            return "differs"
        self.items.popleft()
        self.offset = end
        return "same"


def _abandon(f: RecordFile, pending: _Pending | None) -> None:
    """Drop the records a file holds beyond the confirmed ones (none left: nothing to cut)."""
    if pending is not None and pending.items:
        f.truncate(pending.offset)


class Writer(Protocol):
    position: int
    """Records (of this format) produced up to the current output, in the file or pending."""

    def check(self, o: Output) -> Verdict:
        """Compare `o` with the next pending record (consumed when "same")."""
        ...

    def write(self, o: Output) -> None:
        """Append `o`'s record (the file is past its pending records)."""
        ...

    def skip(self) -> None:
        """`o` was confirmed by `check`: count it."""
        ...

    def abandon(self) -> None:
        """Cut the file back to the confirmed records (a resumed run diverged)."""
        ...

    def close(self) -> None: ...


class JsonlWriter:
    """One JSON object per output per line; a header line first (`meta`); a summary line last."""

    def __init__(
        self, f: RecordFile, meta: dict[str, object] | None, pending: _Pending | None = None
    ) -> None:
        self._f = f
        self.position = 0
        self._pending = pending
        if meta is not None:
            self._line({"type": "header", **meta})

    def _line(self, rec: dict[str, object]) -> None:
        self._f.append((json.dumps(rec) + "\n").encode())

    def check(self, o: Output) -> Verdict:
        if self._pending is None:
            return "new"
        return self._pending.take(content(json.loads(json.dumps(output_record(o)))))

    def write(self, o: Output) -> None:
        self._line(output_record(o))
        self.position += 1

    def skip(self) -> None:
        self.position += 1

    def abandon(self) -> None:
        _abandon(self._f, self._pending)
        self._pending = None

    def summary(self, rec: dict[str, object], complete: bool = True) -> None:
        """The last line: `complete` False for an interrupted run (a resume replaces it)."""
        self._line({"type": "summary", "complete": complete, **rec})

    def close(self) -> None:
        self._f.close()


class CueWriter:
    """SRT or WebVTT: one cue per complete response, shown from its stream time for `cue_s` seconds."""

    def __init__(self, f: RecordFile, fmt: str, cue_s: float = 2.0, pending: _Pending | None = None) -> None:
        self._f = f
        self._fmt = fmt
        self._cue_s = cue_s
        self.position = 0
        self._pending = pending
        if fmt == "vtt" and pending is None and f.size == 0:
            f.append(b"WEBVTT\n\n")

    def cue(self, o: Output) -> str | None:
        """The cue block for `o` (numbered after `position`), or None when `o` is not a cue."""
        if not isinstance(o, ResponseEnd) or not (o.text.strip() or o.kind == "answer"):
            return None
        sep = "," if self._fmt == "srt" else "."
        span = f"{timestamp(o.t, sep)} --> {timestamp(o.t + self._cue_s, sep)}"
        head = f"{self.position + 1}\n" if self._fmt == "srt" else ""
        body = "\n".join(line for line in cue_text(o).splitlines() if line.strip())  # no blank line in a cue
        return f"{head}{span}\n{body}\n\n"

    def check(self, o: Output) -> Verdict:
        block = self.cue(o)
        if block is None:
            return "none"
        return "new" if self._pending is None else self._pending.take(block)

    def write(self, o: Output) -> None:
        block = self.cue(o)
        if block is not None:
            self._f.append(block.encode())
            self.position += 1

    def skip(self) -> None:
        self.position += 1

    def abandon(self) -> None:
        _abandon(self._f, self._pending)
        self._pending = None

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
    """Open `path` for writing (truncated) in the format its extension names (.jsonl/.json, .srt, .vtt)."""
    fmt = output_format(path)
    f = RecordFile(path)
    return JsonlWriter(f, meta) if fmt == "jsonl" else CueWriter(f, fmt, cue_s)


# ---- reading files back (resume) ---------------------------------------------------------------
def _jsonl_records(data: bytes) -> list[tuple[dict[str, object], int]]:
    """Whole JSON-object lines from the start, each with its end offset; stops at the first
    partial or unreadable line."""
    out: list[tuple[dict[str, object], int]] = []
    pos = 0
    while (nl := data.find(b"\n", pos)) >= 0:
        try:
            rec = json.loads(data[pos:nl])
        except ValueError:
            break
        if not isinstance(rec, dict):
            break
        out.append((rec, nl + 1))
        pos = nl + 1
    return out


def _cue_blocks(data: bytes, fmt: str) -> tuple[int, list[tuple[str, int]]]:
    """(offset after the WebVTT header or 0, whole cue blocks with their end offsets)."""
    start = 0
    if fmt == "vtt":
        if not data.startswith(b"WEBVTT\n\n"):
            return 0, []
        start = len(b"WEBVTT\n\n")
    out: list[tuple[str, int]] = []
    pos = start
    while (end := data.find(b"\n\n", pos)) >= 0:
        block = data[pos : end + 2].decode("utf-8", errors="replace")
        lines = block.split("\n")
        timing = lines[1] if fmt == "srt" else lines[0]
        if (fmt == "srt" and lines[0] != str(len(out) + 1)) or " --> " not in timing:
            break
        out.append((block, end + 2))
        pos = end + 2
    return start, out


class ExistingFile:
    """What an output file holds (for a resume): whole records, each with its end offset."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fmt = output_format(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as e:
            raise EngineError("E_ENGINE_RESUME", f"{path}: cannot read to resume ({e.strerror})") from e
        self.complete = False
        """JSONL: the file ends with the summary of a run that finished (nothing to resume)."""
        self.header_end = 0
        self.records: list[tuple[object, int]] = []
        if self.fmt == "jsonl":
            recs = _jsonl_records(data)
            if recs and recs[0][0].get("type") == "header":
                self.header_end = recs[0][1]
                body = recs[1:]
                if body and body[-1][0].get("type") == "summary":
                    self.complete = bool(body[-1][0].get("complete", True))
                    body = body[:-1]  # an interrupted run's summary is replaced at the end
                self.records = [(content(r), end) for r, end in body]
        else:
            self.header_end, blocks = _cue_blocks(data, self.fmt)
            self.records = list(blocks)

    @property
    def fresh(self) -> bool:
        """Nothing usable in the file (missing, empty, or no header): write it anew."""
        return self.header_end == 0 and not self.records

    def open(self, position: int, meta: dict[str, object], cue_s: float = 2.0) -> Writer:
        """A writer after `position` records; the file's later records are pending (see module)."""
        if self.fresh:
            if position:
                raise EngineError(
                    "E_ENGINE_RESUME",
                    f"{self.path}: empty, but its checkpoint says {position} records were written",
                )
            return writer_for(self.path, meta, cue_s)
        if position > len(self.records):
            raise EngineError(
                "E_ENGINE_RESUME",
                f"{self.path}: holds {len(self.records)} records but its checkpoint says {position}; "
                "was the file edited? (delete it and its .resume file to start over)",
            )
        start = self.records[position - 1][1] if position else self.header_end
        f = RecordFile(self.path, keep=self.records[-1][1] if self.records else self.header_end)
        pending = _Pending(self.records[position:], start)
        if self.fmt == "jsonl":
            w: JsonlWriter | CueWriter = JsonlWriter(f, None, pending)
        else:
            w = CueWriter(f, self.fmt, cue_s, pending)
        w.position = position
        return w


class Outputs:
    """All output files of one run, written output by output (resumed files verify first)."""

    def __init__(self, writers: list[Writer], paths: list[Path]) -> None:
        self.writers = writers
        self.paths = paths
        self.diverged_at: int | None = None
        """Output number at which a resumed run first differed from the files (None: never)."""
        self._n = 0

    @classmethod
    def create(cls, paths: list[Path], meta: dict[str, object]) -> Outputs:
        return cls([writer_for(p, meta) for p in paths], paths)

    def write(self, o: Output) -> None:
        verdicts = [w.check(o) for w in self.writers]
        if "differs" in verdicts:
            self.diverged_at = self._n
            log.warning(
                "output %d differs from the file's record (the run depends on wall-clock time): "
                "the files are cut back to the records before it and continue from there",
                self._n,
            )
            for w in self.writers:
                w.abandon()
            verdicts = [w.check(o) for w in self.writers]
        for w, v in zip(self.writers, verdicts, strict=True):
            if v == "same":
                w.skip()
            elif v == "new":
                w.write(o)
        self._n += 1

    def positions(self) -> dict[str, int]:
        """Records produced so far per file (what a checkpoint stores)."""
        return {str(p): w.position for p, w in zip(self.paths, self.writers, strict=True)}

    def summary(self, rec: dict[str, object], complete: bool) -> None:
        for w in self.writers:
            if isinstance(w, JsonlWriter):
                w.abandon()  # records still pending at the end are not part of this run
                w.summary(rec, complete)
            else:
                w.abandon()

    def close(self) -> None:
        for w in self.writers:
            w.close()
