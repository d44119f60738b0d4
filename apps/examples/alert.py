"""Alert when the live commentary mentions an event: a `streamrt.client` integration example.

Streams a video file, URL or webcam to a streamrt server in understand mode and watches the final
commentary segments; when a sentence mentions the chosen event, it fires an action: a line on
stdout, optionally a shell command (the text and stream time in STREAMRT_ALERT_TEXT /
STREAMRT_ALERT_T) and a JSON line in --log. Owns the trigger (`Trigger`: words that must appear in
order in one sentence, `a|b` for alternatives) and the session loop; the server does the watching.

    python -m streamrt.apps.examples.alert clip.mp4 --when "red triangle appears|enters"
    python -m streamrt.apps.examples.alert webcam:0 --when "person" --exec 'notify-send "$STREAMRT_ALERT_TEXT"'

Exit codes (like grep): 0 at least one alert, 1 none, 2 bad arguments or no server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

SENTENCE = re.compile(r"[.;!?\n]+")
WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True, slots=True)
class Trigger:
    """Words (each a set of alternatives) that must all occur, in this order, within one sentence."""

    words: tuple[frozenset[str], ...]

    @staticmethod
    def parse(spec: str) -> Trigger:
        """ "red triangle appears|enters" -> ({red}, {triangle}, {appears, enters}); case-insensitive."""
        words = tuple(frozenset(a for a in w.split("|") if a) for w in spec.lower().split())
        if not words or not all(words):
            raise ValueError(f"--when {spec!r}: give one or more words (alternatives joined by |)")
        return Trigger(words)

    def sentence(self, text: str) -> str | None:
        """The first sentence of `text` that matches, or None."""
        for s in SENTENCE.split(text):
            i = 0
            for w in WORD.findall(s.lower()):
                if i < len(self.words) and w in self.words[i]:
                    i += 1
            if i == len(self.words):
                return s.strip()
        return None


@dataclass(frozen=True, slots=True)
class Alert:
    t: float
    """Stream seconds (capture time of the frame that completed the chunk, from the first frame)."""
    sentence: str
    text: str


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m streamrt.apps.examples.alert",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        '  python -m streamrt.apps.examples.alert clip.mp4 --when "red triangle appears|enters" --once\n'
        '  python -m streamrt.apps.examples.alert webcam:0 --when "blue circle" --exec \'echo "$STREAMRT_ALERT_TEXT"\'\n'
        "exit codes: 0 alerted, 1 no alert, 2 bad arguments / no server",
    )
    p.add_argument("source", help="video file, stream URL or webcam:N")
    p.add_argument("--when", required=True, help='event words, in order, e.g. "red triangle appears|enters"')
    p.add_argument("--server", default="ws://127.0.0.1:8765/ws", help="streamrt server (default local)")
    p.add_argument("--token", default=os.environ.get("STREAMRT_TOKEN"), help="server token ($STREAMRT_TOKEN)")
    p.add_argument("--fps", type=float, default=4.0, help="frames per second sent (default 4)")
    p.add_argument(
        "--realtime",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="files: send at --fps in real time (default) or as fast as the server takes them",
    )
    p.add_argument("--exec", dest="command", help="shell command run on each alert")
    p.add_argument("--log", type=Path, help="append every final commentary (and alerts) as JSON lines")
    p.add_argument("--cooldown", type=float, default=5.0, help="stream seconds between alerts (default 5)")
    p.add_argument("--once", action="store_true", help="stop after the first alert")
    return p


class Watcher:
    """One understand session: send SOURCE, watch the commentary, fire alerts."""

    def __init__(self, args: argparse.Namespace, trigger: Trigger) -> None:
        self.args = args
        self.trigger = trigger
        self.alerts: list[Alert] = []
        self.captures: OrderedDict[int, int] = OrderedDict()  # input seq -> capture_us (bounded)
        self.first_us: int | None = None
        self.log = args.log.open("a", encoding="utf-8") if args.log else None

    def stream_time(self, seq: int) -> float:
        cap = self.captures.get(seq)
        return 0.0 if cap is None or self.first_us is None else (cap - self.first_us) / 1e6

    async def send(self, client) -> None:
        """Decode SOURCE on a thread, send frames at --fps with their capture times, then end_input."""
        from streamrt.ingest import EveryFps, PixelSpec, open_source, source_kind

        px = PixelSpec(format="rgb24", short_side=256)
        file = source_kind(self.args.source) == "file"
        src = (
            open_source(self.args.source, pixels=px, sampling=EveryFps(self.args.fps))
            if file
            else open_source(self.args.source, pixels=px)
        )
        it, period = iter(src), 1.0 / self.args.fps
        nxt = time.monotonic()
        try:
            while (frame := await asyncio.to_thread(next, it, None)) is not None:
                if self.args.realtime or not file:
                    await asyncio.sleep(max(0.0, nxt - time.monotonic()))
                    nxt = max(nxt + period, time.monotonic() - period)
                now_us = time.time_ns() // 1000
                if self.first_us is None:  # files: capture times follow the file's own timestamps
                    self.first_us = now_us - (round(frame.t * 1e6) if file else 0)
                cap = self.first_us + round(frame.t * 1e6) if file else now_us
                seq = await client.send_frame(frame.pixels, capture_time=cap / 1e6)
                self.captures[seq] = cap
                while len(self.captures) > 4096:
                    self.captures.popitem(last=False)
            await client.end_input()
        finally:
            await asyncio.to_thread(src.close)

    def fire(self, text: str, ref_seq: int) -> Alert | None:
        t = self.stream_time(ref_seq)
        self._log({"type": "commentary", "t": round(t, 3), "text": text})
        sentence = self.trigger.sentence(text)
        if sentence is None or (self.alerts and t - self.alerts[-1].t < self.args.cooldown):
            return None
        alert = Alert(t, sentence, text)
        self.alerts.append(alert)
        print(f"ALERT [{t:7.2f}s] {sentence}", flush=True)
        self._log({"type": "alert", "t": round(t, 3), "sentence": sentence})
        if self.args.command:
            env = os.environ | {"STREAMRT_ALERT_TEXT": sentence, "STREAMRT_ALERT_T": f"{t:.3f}"}
            subprocess.run(self.args.command, shell=True, env=env, check=False, timeout=60)
        return alert

    def _log(self, rec: dict[str, object]) -> None:
        if self.log is not None:
            self.log.write(json.dumps(rec) + "\n")
            self.log.flush()

    async def run(self) -> int:
        from streamrt.client import AsyncClient, End, ServerError, Text

        params = {"max_tokens": 40}
        client = AsyncClient(self.args.server, "understand", params, token=self.args.token)  # type: ignore[arg-type]
        await client.connect()
        sender = asyncio.create_task(self.send(client))
        try:
            async for ev in client:
                if isinstance(ev, Text) and ev.final and ev.question_id is None and ev.text.strip():
                    if self.fire(ev.text, ev.ref_seq) and self.args.once:
                        break
                elif isinstance(ev, ServerError):
                    print(f"server error {ev.code}: {ev.message}", file=sys.stderr, flush=True)
                elif isinstance(ev, End):
                    break
                if sender.done() and sender.exception() is not None:
                    raise sender.exception()  # type: ignore[misc]
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            await client.close()
            if self.log is not None:
                self.log.close()
        return 0 if self.alerts else 1


def main(argv: list[str] | None = None) -> int:
    from streamrt.client import ClientError
    from streamrt.ingest import IngestError

    args = build_parser().parse_args(argv)
    try:
        trigger = Trigger.parse(args.when)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        code = asyncio.run(Watcher(args, trigger).run())
    except (ClientError, IngestError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(f"{'no' if code else 'some'} alert(s) for {args.when!r}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
