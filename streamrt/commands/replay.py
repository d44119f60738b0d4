"""`streamrt replay SOURCE`: watch a video (file, URL or webcam) with a vision-language model and
print its timed commentary and answers as they happen."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

NAME = "replay"
ORDER = 5
HELP = "watch a video or webcam with a model: timed commentary, answers to questions, a summary"
DESCRIPTION = """\
Feed SOURCE (a video file, an rtsp/http/udp/... URL, or webcam:N) to a streaming vision-language
model and print what it says, stamped with the stream time it refers to. Frames are sampled at the
model's rate and encoded chunk by chunk; visual tokens that did not change since the previous frame
are dropped; the model comments when its own next-token distribution says something happened (or on
a schedule / on scene changes, see --respond) and answers questions at the next chunk boundary.
With no SOURCE the shipped demo clip (25 s of the shapes world) is replayed.

Files replay in real time by default (--speed realtime), as a live stream would arrive; --speed max
processes as fast as the machine can (the progress bar shows the real-time factor), --speed 4 at 4x.
Each output is flushed to --out the moment it is produced (.jsonl: every event with its latency and
deadline; .srt / .vtt: one subtitle cue per response), so an interrupted run loses nothing. At the
end a summary: frames, visual tokens kept/dropped, latency p50/p99, deadline misses, queue drops,
peak memory.

Resume: with --out, the run's state (KV cache, token-drop reference, counters) is checkpointed at a
chunk boundary every --checkpoint-every seconds to FIRST_OUT.resume (removed when the run ends).
After a kill, a crash or a full disk, the same command with --resume continues: it restores the
checkpoint, re-runs the few chunks after it while checking each regenerated event against the one
already in the files (not written twice), then appends. With --speed max --on-deadline finish the
output is exactly the uninterrupted run's (timing fields aside); a run whose output depends on the
wall clock (responses cut at deadlines, paced files dropping stale chunks) stays consistent instead:
at the first event that comes out differently the files are cut back to before it.

examples:
  streamrt replay                                        # the demo clip with the built-in model
  streamrt replay clip.mp4 --speed max --out clip.srt
  streamrt replay clip.mp4 --ask "12.5:what colour is the square?" --ask "20:how many objects are there?"
  streamrt replay clip.mp4 --ask-file questions.txt --out events.jsonl --out subs.vtt
  streamrt replay webcam:0 --respond schedule:5          # comment every 5 s of stream time
  streamrt replay rtsp://camera/stream --model /models/Qwen2-VL-2B-Instruct --dtype bf16 --device cuda
  streamrt replay clip.mp4 --drop-threshold off          # keep every visual token
  streamrt replay long.mp4 --speed max --on-deadline finish --out ev.jsonl   # killed? then:
  streamrt replay long.mp4 --speed max --on-deadline finish --out ev.jsonl --resume
ask files: one `SECONDS: question` per line (or JSON lines {"t": 12.5, "text": "..."}).
exit codes: 0 done, 2 bad source / model / arguments / resume state, 3 an output could not be written
(disk full: the files keep every whole record; free space and rerun with --resume), 130 interrupted.
"""

NOT_IN_FINGERPRINT = frozenset(
    {"resume", "checkpoint_every", "no_progress", "summary_json", "report", "report_run", "verbose", "quiet"}
)
"""Arguments that do not change the events written (everything else must match to resume)."""

log = logging.getLogger(__name__)


def _speed(s: str) -> float | None:
    if s == "max":
        return None
    if s == "realtime":
        return 1.0
    try:
        v = float(s.rstrip("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--speed takes realtime, max or a factor like 2, not {s!r}"
        ) from None
    if v <= 0:
        raise argparse.ArgumentTypeError("--speed factor must be positive")
    return v


def _threshold(s: str) -> float | None:
    if s == "off":
        return None
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--drop-threshold takes a number or off, not {s!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    from streamrt.scale.cli import add_replay_ray_arguments

    add_replay_ray_arguments(p)
    p.add_argument(
        "--spec",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="speculative decoding of responses: the same text as plain greedy, fewer model forwards "
        "(default on; --no-spec decodes one token per forward)",
    )
    p.add_argument(
        "--draft",
        metavar="DIR",
        default=None,
        help="draft model for --spec (same vocabulary as --model; default: the built-in model's shipped "
        "draft, none for other models)",
    )
    p.add_argument("source", nargs="?", help="video file, URL or webcam:N (default: the demo clip)")
    p.add_argument(
        "--demo", action="store_true", help="replay the shipped demo clip (the default without SOURCE)"
    )
    p.add_argument(
        "--model", default="builtin", help="builtin (default), a local model directory or a hub id"
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    p.add_argument("--dtype", default="float32", help="float32 (default), bfloat16, float16")
    p.add_argument(
        "--speed", type=_speed, default=1.0, metavar="realtime|max|N", help="files: pace (default realtime)"
    )
    p.add_argument(
        "--ask",
        action="append",
        default=[],
        metavar="T:QUESTION",
        help="ask QUESTION at stream time T s (repeatable)",
    )
    p.add_argument("--ask-file", type=Path, metavar="PATH", help="questions, one `T: question` per line")
    p.add_argument(
        "--out",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="write outputs (.jsonl, .srt, .vtt; repeatable)",
    )
    p.add_argument(
        "--respond",
        default="model",
        metavar="POLICY",
        help="when to comment: model (default: the model's calibrated policy from its streamrt.json, e.g. "
        "the built-in model speaks on a scene change; P(silence) < 0.5 for a model without one; with "
        "--silence-threshold T: P(silence) < T), greedy (unless silence is the most likely token), "
        "schedule:SECONDS, scene[:CHANGE], or several joined by +, e.g. model+scene",
    )
    p.add_argument(
        "--silence-threshold",
        type=float,
        default=None,
        help="model policy: speak when P(silence) is below this instead of the model's calibrated policy",
    )
    p.add_argument(
        "--drop-threshold",
        type=_threshold,
        default=argparse.SUPPRESS,
        help="token drop: cosine similarity above which a visual token is dropped, or off (default: the engine's)",
    )
    p.add_argument("--token-budget", type=int, default=None, help="at most N visual tokens per chunk")
    p.add_argument(
        "--on-deadline",
        choices=("cut", "resume", "finish"),
        default="cut",
        help="a response still decoding at the next frame deadline: cut (default), resume after the next chunk, or finish regardless",
    )
    p.add_argument(
        "--max-tokens",
        type=int,
        default=argparse.SUPPRESS,
        help="longest commentary or answer in tokens (default: the engine's)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per stage (default: half the cores; the vision encoder and the language model run in parallel)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar; stream text as it is decoded")
    p.add_argument("--summary-json", type=Path, metavar="PATH", help="also write the summary as JSON")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run with the same arguments from its --out files and checkpoint",
    )
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="with --out: checkpoint the run's state this often (wall seconds, default 10; 0 = every chunk)",
    )
    p.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="also write a self-contained HTML report to DIR/index.html: commentary on a time line beside "
        "thumbnails, latency against the deadline, token-drop share, the summary (see `streamrt report`)",
    )


def _policy(spec: str, silence: float | None):
    from streamrt.engine import (
        AnyOf,
        EngineError,
        ModelDefault,
        SceneChange,
        Schedule,
        SilenceArgmax,
        SilenceThreshold,
    )

    parts = []
    for item in spec.split("+"):
        name, _, arg = item.strip().partition(":")
        try:
            if name == "greedy":
                parts.append(SilenceArgmax())
            elif name == "model":
                parts.append(ModelDefault() if silence is None else SilenceThreshold(silence))
            elif name == "schedule":
                parts.append(Schedule(float(arg or 5.0)))
            elif name == "scene":
                parts.append(SceneChange(float(arg or 0.2)))
            else:
                raise ValueError
        except ValueError:
            raise EngineError(
                "E_ENGINE_POLICY",
                f"bad --respond {spec!r}: use model, greedy, schedule:SECONDS, scene[:CHANGE] joined by +",
            ) from None
    return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))


def run(args: argparse.Namespace) -> int:
    if getattr(args, "ray", False):
        from streamrt.scale.cli import run_batch_from_args

        return run_batch_from_args(args)
    from streamrt.engine import DEADLINE_POLICIES, EngineConfig, EngineError, parse_ask, read_ask_file
    from streamrt.engine.sources import demo_clip
    from streamrt.engine.writers import output_format
    from streamrt.ingest import IngestError
    from streamrt.models.vlm import AdapterError

    source = str(demo_clip()) if (args.demo or not args.source) else args.source
    try:
        if args.report:
            from streamrt.apps.report import report_jsonl

            args.report_run = report_jsonl(args.report, args.out)  # adds DIR/run.jsonl to --out if needed
        for path in args.out:
            output_format(path)
        questions = [parse_ask(a, f"q{i}") for i, a in enumerate(args.ask)]
        if args.ask_file:
            questions += read_ask_file(args.ask_file, first_id=len(questions))
        given: dict[str, object] = {}
        if hasattr(args, "drop_threshold"):
            given["drop_threshold"] = args.drop_threshold
        if hasattr(args, "max_tokens"):
            given.update(max_commentary_tokens=args.max_tokens, max_answer_tokens=args.max_tokens)
        from streamrt.engine.config import Speculation

        given["spec"] = Speculation(draft_model=args.draft) if args.spec else None
        config = EngineConfig(
            token_budget=args.token_budget,
            response=_policy(args.respond, args.silence_threshold),
            on_deadline=DEADLINE_POLICIES[args.on_deadline],
            **given,  # type: ignore[arg-type]
        )
        return _replay(args, source, questions, config)
    except (IngestError, AdapterError, EngineError) as e:
        code = getattr(e, "code", "E_INGEST")
        msg = str(e) if str(e).startswith(code) else f"{code}: {e}"
        print(f"error: {msg}", file=sys.stderr)
        return 3 if code == "E_ENGINE_OUT_WRITE" else 2


def _replay(args: argparse.Namespace, source: str, questions: list, config) -> int:
    from tqdm import tqdm

    from streamrt.engine import ChunkDone, EngineError, StreamRun
    from streamrt.engine.pipeline import save_state
    from streamrt.engine.sources import check_source, open_stream
    from streamrt.models.vlm import load_adapter

    check_source(source)
    fingerprint = _fingerprint(args, source, questions)
    ckpt = args.out[0].with_name(args.out[0].name + ".resume") if args.out else None
    state, positions = _resume_point(args, source, ckpt, fingerprint)
    if positions is None:
        print(f"{args.out[0]}: the run is already complete; nothing to resume", file=sys.stderr)
        return 0
    import os

    import torch

    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 2) // 2))
    t0 = time.monotonic()
    adapter = load_adapter(args.model, device=args.device, dtype=args.dtype)
    log.info("loaded %s in %.1f s", args.model, time.monotonic() - t0)
    opened = open_stream(source, config.fps or adapter.fps)
    meta = {
        "source": source,
        "model": args.model,
        "fps": adapter.fps,
        "frames_per_chunk": adapter.frames_per_chunk,
        "speed": "max" if args.speed is None else args.speed,
        "drop_threshold": config.drop_threshold,
        "respond": args.respond,
        "started_unix": time.time(),
    }
    outputs = _outputs(args, meta, positions)
    speed = None if opened.live else args.speed
    last_ckpt = time.monotonic()

    def checkpoint() -> None:
        nonlocal last_ckpt
        if ckpt is None or time.monotonic() - last_ckpt < args.checkpoint_every:
            return
        st = run.state()
        if st is None:
            return
        try:
            save_state(ckpt, st, {"fingerprint": fingerprint, "positions": outputs.positions()})
        except EngineError as e:  # the previous checkpoint stays; a resume re-runs a little more
            log.warning("%s", e)
        last_ckpt = time.monotonic()

    run = StreamRun(
        adapter,
        opened.frames,
        config,
        questions=questions,
        speed=speed,
        live=opened.live,
        resume=state,
        on_boundary=checkpoint,
    )
    if state is not None:
        log.info("resuming after chunk %d (stream time %.2f s)", state.chunk, state.t_end)
    bar = None
    if not args.no_progress and not opened.live and sys.stderr.isatty():
        bar = tqdm(total=round(opened.duration_s or 0, 1) or None, unit="s", desc="replay", file=sys.stderr)
    printer = _Printer(bar is None, {q.id: q.text for q in questions})
    interrupted = False
    try:
        for out in run:
            outputs.write(out)
            printer.show(out)
            if isinstance(out, ChunkDone) and bar is not None:
                bar.n = round(min(out.t_end, bar.total or out.t_end), 1)
                wall = time.monotonic() - run.stats.started
                bar.set_postfix_str(f"{out.t_end / wall:.1f}x real time" if wall > 0 else "")
    except KeyboardInterrupt:
        interrupted = True
    except BaseException:
        outputs.close()
        raise
    finally:
        run.close()
        if bar is not None:
            bar.close()
    summary = run.summary()
    try:
        outputs.summary(summary.to_json(), complete=not interrupted)
    finally:
        outputs.close()
    if ckpt is not None and not interrupted:
        ckpt.unlink(missing_ok=True)
    if outputs.diverged_at is not None:
        print(
            f"resume: event {outputs.diverged_at} came out differently than in the interrupted run (its output "
            "depended on the wall clock); the files were cut back to the events before it",
            file=sys.stderr,
        )
    print(("interrupted\n" if interrupted else "") + summary.format(), file=sys.stderr)
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    if args.report:
        from streamrt.apps.report import write_report

        print(f"report: {write_report(args.report_run, args.report, source)}", file=sys.stderr)
    return 130 if interrupted else 0


def _fingerprint(args: argparse.Namespace, source: str, questions: list) -> dict[str, object]:
    """What must be equal for a resumed run to continue the interrupted one: every argument that
    shapes the events, the questions (an --ask-file is read), and the source file's size and mtime."""
    fp: dict[str, object] = {
        k: str(v)
        for k, v in sorted(vars(args).items())
        if not k.startswith("_") and k not in NOT_IN_FINGERPRINT
    }
    fp["source"] = source
    fp["questions"] = [f"{q.t}:{q.id}:{q.text}" for q in questions]
    try:
        st = Path(source).stat()
        fp["source_stat"] = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        pass
    return fp


def _resume_point(args: argparse.Namespace, source: str, ckpt: Path | None, fingerprint: dict[str, object]):
    """(RunState or None, positions per file or None when the run already completed). Without
    --resume: (None, {}) and any old checkpoint removed."""
    from streamrt.engine import EngineError
    from streamrt.engine.pipeline import load_state
    from streamrt.engine.writers import ExistingFile
    from streamrt.ingest import source_kind

    if not args.resume:
        if ckpt is not None:
            ckpt.unlink(missing_ok=True)
        return None, {}
    if ckpt is None:
        raise EngineError(
            "E_ENGINE_RESUME", "--resume continues the files named by --out: give the same --out"
        )
    if source_kind(source) != "file":
        raise EngineError("E_ENGINE_RESUME", f"{source}: a live source cannot be resumed (only files)")
    if any(ExistingFile(p).complete for p in args.out):
        return None, None
    if not ckpt.exists():
        return None, {}  # killed before the first checkpoint: re-run from the start against the files
    state, extra = load_state(ckpt)
    saved = extra.get("fingerprint", {})
    if saved != fingerprint:
        assert isinstance(saved, dict)
        diff = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
        raise EngineError(
            "E_ENGINE_RESUME",
            f"{ckpt}: the interrupted run had other arguments or another source ({', '.join(diff)}); "
            "rerun with the same ones, or without --resume to start over",
        )
    return state, dict(extra.get("positions", {}))  # type: ignore[call-overload]


def _outputs(args: argparse.Namespace, meta: dict[str, object], positions: dict[str, int]):
    from streamrt.engine.writers import ExistingFile, Outputs

    if not args.resume:
        return Outputs.create(args.out, meta)
    return Outputs([ExistingFile(p).open(positions.get(str(p), 0), meta) for p in args.out], args.out)


class _Printer:
    """Commentary on stdout: streamed delta by delta without a progress bar, else one line per response
    (printed above the bar)."""

    def __init__(self, stream: bool, questions: dict[str, str]) -> None:
        self.stream = stream
        self.questions = questions  # id -> text
        self.open: int | None = None  # segment whose line is being streamed

    def show(self, out) -> None:
        from tqdm import tqdm

        from streamrt.engine import ResponseEnd, TextDelta

        if isinstance(out, TextDelta) and self.stream:
            if self.open != out.segment:
                asked = (
                    f"Q: {self.questions.get(out.question or '', '?')}  A: " if out.kind == "answer" else ""
                )
                head = f"[{out.t:8.2f}s] {asked}"
                print(head, end="", flush=True)
                self.open = out.segment
            print(out.text, end="", flush=True)
        elif isinstance(out, ResponseEnd):
            if self.stream and self.open == out.segment:
                print(flush=True)
            elif out.text or out.kind == "answer":
                line = _line(out)
                print(line, flush=True) if self.stream else tqdm.write(line, file=sys.stdout)
            self.open = None


def _line(o) -> str:
    if o.kind == "answer":
        return f"[{o.t:8.2f}s] Q: {o.question_text}  A: {o.text}"
    return f"[{o.t:8.2f}s] {o.text}"
