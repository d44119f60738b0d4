"""Offline replay of many videos on Ray: one Ray task per video, one output file per video, resumable.

`run_batch(inputs, out_dir, ...)` finds the videos (a folder, or a glob), skips those already finished,
and runs `streamrt replay` on each of the others as a Ray task, with the replay options the caller
gives (the same parser, the same code path as the single-file command, so a batch output equals the
per-file replay). Every task writes into its own scratch folder under `OUT/.streamrt-batch/`; only when
the replay succeeded are its files moved into place with `os.replace` (atomic on one file system) and
then the completion marker `OUT/.streamrt-batch/NAME.done.json` written (atomically too). A video counts
as finished when its marker exists and every output it lists is there: an interrupted run leaves no
half-written output under a final name, and the next run redoes exactly the unfinished videos.

Owns: the input list, the scratch folders, the markers, the summary table. Does not know what replay
computes (it calls the replay command) nor how Ray places the tasks (at most `max_in_flight` tasks are
submitted at a time; Ray queues them on the cluster's CPUs).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from streamrt.scale.errors import ScaleError, import_ray

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts", ".flv", ".mpg", ".mpeg")
"""Files of a folder input that are replayed (a glob input takes whatever it matches)."""
STATE_DIR = ".streamrt-batch"
"""Scratch folders, completion markers and per-video logs, inside the output folder."""
FORMATS = (".jsonl", ".srt", ".vtt")
BATCH_OWNED = ("source", "out", "summary_json", "report")
"""Replay options the batch sets itself (per video); passing them in replay_args is E_SCALE_ARGS."""

Status = Literal["done", "skipped", "failed"]


@dataclass(frozen=True, slots=True)
class BatchJob:
    """One video to replay and the stem its outputs get (`OUT/NAME.jsonl`, ...)."""

    source: str
    name: str


@dataclass(frozen=True, slots=True)
class VideoResult:
    """What became of one video."""

    name: str
    source: str
    status: Status
    wall_s: float = 0.0
    """Seconds the task took (replay including model load); 0 for skipped videos."""
    summary: dict[str, object] = field(default_factory=dict)
    """The replay summary (`Summary.to_json()`); for skipped videos, the one recorded in the marker."""
    outputs: tuple[str, ...] = ()
    error: str | None = None
    """Failed videos: the replay's error line; its full log stays in OUT/.streamrt-batch/NAME.log."""


@dataclass(frozen=True, slots=True)
class BatchReport:
    """Every video's result, in input order, and the batch's wall time."""

    results: tuple[VideoResult, ...]
    wall_s: float

    def count(self, status: Status) -> int:
        return sum(r.status == status for r in self.results)

    def table(self) -> str:
        """The summary table: one row per video, then the totals."""
        head = ("video", "status", "stream s", "chunks", "responses", "p99 ms", "misses", "task s")
        rows = [head]
        for r in self.results:
            s = r.summary
            rows.append(
                (
                    r.name,
                    r.status if r.error is None else f"failed: {r.error[:60]}",
                    f"{s.get('stream_s', 0):.1f}" if s else "-",
                    str(s.get("chunks", "-")),
                    str(int(s.get("commentaries", 0)) + int(s.get("answers", 0))) if s else "-",
                    f"{1000 * float(s.get('chunk_latency_p99_s', 0)):.0f}" if s else "-",
                    str(int(s.get("chunk_deadline_misses", 0)) + int(s.get("response_deadline_misses", 0)))
                    if s
                    else "-",
                    f"{r.wall_s:.1f}" if r.status == "done" else "-",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        stream = sum(float(r.summary.get("stream_s", 0)) for r in self.results if r.status == "done")
        lines.append(
            f"{len(self.results)} videos: {self.count('done')} replayed, {self.count('skipped')} already "
            f"finished (skipped), {self.count('failed')} failed; {stream:.1f} s of video replayed in "
            f"{self.wall_s:.1f} s"
        )
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {"wall_s": self.wall_s, "results": [asdict(r) for r in self.results]}


# ---- inputs -----------------------------------------------------------------------------------------
def find_inputs(spec: str | Path) -> list[str]:
    """The videos of `spec`: a folder (its files with a video extension, not recursive) or a glob
    pattern (`**` recurses). Sorted. E_SCALE_NO_INPUTS when nothing matches."""
    p = Path(spec)
    if p.is_dir():
        found = [str(f) for f in sorted(p.iterdir()) if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS]
    else:
        found = sorted(f for f in glob.glob(str(spec), recursive=True) if Path(f).is_file())
    if not found:
        raise ScaleError(
            "E_SCALE_NO_INPUTS",
            f"{spec}: no videos ({', '.join(VIDEO_EXTENSIONS)}) in this folder"
            if p.is_dir()
            else f"{spec}: not a folder and the pattern matches no file",
        )
    return found


def plan(sources: Sequence[str]) -> list[BatchJob]:
    """One job per source, named by the file's stem; two sources with the same stem are E_SCALE_NAME_CLASH
    (their outputs would overwrite each other)."""
    seen: dict[str, str] = {}
    jobs = []
    for src in sources:
        name = Path(src).stem
        if name in seen:
            raise ScaleError(
                "E_SCALE_NAME_CLASH", f"{src} and {seen[name]} would both write {name}.*: rename one"
            )
        seen[name] = src
        jobs.append(BatchJob(src, name))
    return jobs


def replay_namespace(source: str, replay_args: Sequence[str]) -> argparse.Namespace:
    """`streamrt replay`'s own parser over SOURCE + replay_args (E_SCALE_ARGS on a bad option, or on an
    option the batch sets per video). Batch default: --speed max unless given."""
    from streamrt.commands import replay

    parser = argparse.ArgumentParser(prog="streamrt replay", add_help=False)
    replay.add_arguments(parser)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            ns = parser.parse_args([source, *replay_args])
    except SystemExit:
        raise ScaleError(
            "E_SCALE_ARGS", f"bad replay options {list(replay_args)}: {err.getvalue().strip()}"
        ) from None
    given = {a.split("=", 1)[0] for a in replay_args if a.startswith("--")}
    owned = [o for o in BATCH_OWNED if o != "source" and getattr(ns, o, None)]
    if owned or ns.source != source or ns.demo:
        raise ScaleError(
            "E_SCALE_ARGS",
            f"replay options {list(replay_args)}: the batch sets the source, --out, --summary-json and "
            "--report per video; use formats= / --format for the output types",
        )
    if "--speed" not in given:
        ns.speed = None  # "max": an offline batch is not paced
    ns.no_progress = True
    return ns


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    out = tuple(f if f.startswith(".") else f".{f}" for f in formats)
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise ScaleError("E_SCALE_ARGS", f"output formats {list(formats)}: use some of {', '.join(FORMATS)}")
    return out


# ---- completion markers -----------------------------------------------------------------------------
def marker_path(out_dir: Path, name: str) -> Path:
    return out_dir / STATE_DIR / f"{name}.done.json"


def finished(out_dir: Path, job: BatchJob, formats: Sequence[str]) -> dict[str, object] | None:
    """The marker of a finished video (None when it must be replayed): the marker exists, and every
    requested output, and every output the marker lists, is in place."""
    m = marker_path(out_dir, job.name)
    try:
        rec = json.loads(m.read_text())
    except (OSError, ValueError):
        return None
    wanted = {f"{job.name}{f}" for f in formats} | set(rec.get("outputs", []))
    if rec.get("source") != job.source or not all((out_dir / o).is_file() for o in wanted):
        return None
    return rec


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---- one video (runs inside a Ray task) -------------------------------------------------------------
def replay_one(
    job: BatchJob, out_dir: str, formats: Sequence[str], template: argparse.Namespace
) -> VideoResult:
    """Replay one video into a scratch folder, then move its outputs into `out_dir` and write the marker.
    The replay's stdout/stderr go to OUT/.streamrt-batch/NAME.log. Never raises for a bad video: the
    result says `failed` with the replay's error line."""
    from streamrt.commands import replay

    out = Path(out_dir)
    state = out / STATE_DIR
    scratch = state / f"{job.name}.part-{uuid.uuid4().hex[:8]}"  # unique per attempt (Ray may retry)
    scratch.mkdir(parents=True)
    t0 = time.monotonic()
    ns = argparse.Namespace(**vars(template))
    ns.ray = False  # this task is one plain replay (the command's own --ray would recurse)
    ns.source = job.source
    ns.out = [scratch / f"{job.name}{f}" for f in formats]
    ns.summary_json = scratch / "summary.json"
    log_path = scratch / "replay.log"
    with log_path.open("w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            rc = replay.run(ns)
        except Exception as e:  # noqa: BLE001 - any crash of one video is that video's failure
            print(f"error: {type(e).__name__}: {e}", file=log)
            rc = 1
    wall = time.monotonic() - t0
    shutil.move(log_path, state / f"{job.name}.log")
    if rc != 0:
        lines = [ln for ln in (state / f"{job.name}.log").read_text().splitlines() if ln.startswith("error")]
        shutil.rmtree(scratch, ignore_errors=True)
        err = lines[-1] if lines else f"replay exited with {rc}"
        return VideoResult(job.name, job.source, "failed", wall, error=err)
    summary = json.loads(ns.summary_json.read_text())
    names = tuple(p.name for p in ns.out)
    for p in ns.out:
        os.replace(p, out / p.name)
    options = {k: v if isinstance(v, int | float | str | None) else str(v) for k, v in vars(template).items()}
    rec = {"source": job.source, "outputs": list(names), "replay_options": options, "summary": summary}
    _write_atomic(marker_path(out, job.name), json.dumps(rec, indent=1) + "\n")
    shutil.rmtree(scratch, ignore_errors=True)
    return VideoResult(job.name, job.source, "done", wall, summary, names)


# ---- the batch --------------------------------------------------------------------------------------
def run_batch(
    inputs: str | Path,
    out_dir: str | Path,
    *,
    replay_args: Sequence[str] | argparse.Namespace = (),
    formats: Sequence[str] = (".jsonl",),
    redo: bool = False,
    cpus_per_task: float = 1.0,
    max_in_flight: int | None = None,
    address: str | None = None,
    progress: bool = True,
) -> BatchReport:
    """Replay every video of `inputs` (folder or glob) into `out_dir` on Ray (see module docstring).

    replay_args: `streamrt replay` options applied to every video (e.g. ["--on-deadline", "finish"]), or
    an already parsed replay Namespace (the command's own, `cli.run_batch_from_args`; used as is, but
    with its source, outputs, summary file and progress bar set per video);
    formats: outputs per video (.jsonl, .srt, .vtt); redo: replay finished videos again; cpus_per_task:
    Ray CPUs each task reserves; max_in_flight: tasks submitted at once (default: 2 x the cluster's
    CPUs); address: Ray cluster to join when Ray is not initialised yet (None: start a local one).
    """
    ray = import_ray()
    fmts = check_formats(formats)
    jobs = plan(find_inputs(inputs))
    if isinstance(replay_args, argparse.Namespace):
        template = argparse.Namespace(**vars(replay_args))
        template.out, template.summary_json, template.report, template.no_progress = [], None, None, True
    else:
        args = list(replay_args)
        if not any(a.split("=", 1)[0] == "--threads" for a in args):
            args += ["--threads", str(max(1, int(cpus_per_task)))]
        template = replay_namespace(jobs[0].source, args)  # bad options fail here, before any task runs
    out = Path(out_dir)
    (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    results: dict[str, VideoResult] = {}
    todo = []
    for job in jobs:
        rec = None if redo else finished(out, job, fmts)
        if rec is None:
            todo.append(job)
        else:
            summary = rec.get("summary", {})
            results[job.name] = VideoResult(
                job.name, job.source, "skipped", summary=summary, outputs=tuple(rec["outputs"])
            )
    if todo and not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    from tqdm import tqdm

    bar = tqdm(
        total=len(jobs), initial=len(jobs) - len(todo), unit="video", desc="replay", disable=not progress
    )
    window = max_in_flight or 0
    if todo and not window:
        window = max(1, int(2 * ray.cluster_resources().get("CPU", 1) / cpus_per_task))
    task = ray.remote(num_cpus=cpus_per_task)(replay_one)
    pending: dict[object, BatchJob] = {}
    queue = list(todo)
    try:
        while queue or pending:
            while queue and len(pending) < window:
                job = queue.pop(0)
                pending[task.remote(job, str(out), fmts, template)] = job
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                job = pending.pop(ref)
                try:
                    r = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - a lost worker or node fails this video only
                    r = VideoResult(
                        job.name, job.source, "failed", error=f"task failed: {type(e).__name__}: {e}"
                    )
                results[job.name] = r
                bar.update(1)
                bar.set_postfix_str(f"{sum(x.status == 'failed' for x in results.values())} failed")
    finally:
        for ref in pending:
            ray.cancel(ref)
        bar.close()
    return BatchReport(tuple(results[j.name] for j in jobs), time.monotonic() - t0)
