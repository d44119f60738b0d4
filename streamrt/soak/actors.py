"""The client side of a soak: simulated users that join, stream, ask, switch prompts, read slowly,
send malformed messages, and leave (gracefully or by dropping the connection), over raw websockets.

An actor runs one session after another until the soak's end: mode and behaviour are drawn from its
own seeded `random.Random`. A session sends JPEG frames of the shapes world at `fps` (understand, and
generate with video input; text-to-video sends none), a question (understand) or a prompt switch
(generate) now and then, a `ping`, and with probability `malformed_rate` per tick one malformed
message of a known kind, whose expected error code is counted. Its reader measures end-to-end
latency: output frames carry the input's capture time; text segments carry the input seq that
completed their chunk. A slow reader stops reading for a few seconds at a time. Everything observed
goes into one `Tally` (all actors share one event loop: no locks). Knows nothing about the server's
process or the trend test.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streamrt.server import protocol as P
from streamrt.server.media import encode_image

PROMPTS = ("a red circle moving right", "a blue square on green", "two yellow triangles", "a white star")
QUESTIONS = ("what colour is the square?", "how many objects are there?", "what just happened?")

MALFORMED: dict[str, str] = {
    "bad_json": "E_BAD_JSON",
    "not_object": "E_BAD_JSON",
    "unknown_type": "E_BAD_TYPE",
    "bad_field": "E_BAD_FIELD",
    "bad_magic": "E_BAD_HEADER",
    "bad_codec": "E_BAD_HEADER",
    "truncated": "E_TRUNCATED",
    "bad_image": "E_BAD_IMAGE",
    "hello_twice": "E_STATE",
}
"""Malformed message kinds a session sends, with the error code the protocol promises for each."""


def malformed(kind: str, seq: int, rng: random.Random) -> str | bytes:
    """One malformed message of `kind` (see MALFORMED)."""
    now = time.time_ns() // 1000

    def hdr(codec: int = 1) -> bytes:
        return P.HEADER.pack(P.MAGIC, P.VERSION, P.KIND_INPUT, codec, 0, seq, 0, 0, now, -1)

    junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    return {
        "bad_json": lambda: '{"type": "ping"' + junk.hex(),
        "not_object": lambda: json.dumps([1, 2, 3]),
        "unknown_type": lambda: json.dumps({"type": f"x{rng.randint(0, 999)}"}),
        "bad_field": lambda: json.dumps({"type": "params", "rev": "one", "set": {}}),
        "bad_magic": lambda: b"XXXX" + hdr()[4:] + junk,
        "bad_codec": lambda: hdr(codec=99) + junk,
        "truncated": lambda: hdr()[: rng.randint(0, P.HEADER_SIZE - 1)],
        "bad_image": lambda: hdr() + b"\xff\xd8\xff" + junk,
        "hello_twice": lambda: json.dumps({"type": "hello", "mode": "understand"}),
    }[kind]()


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """What the simulated users do."""

    modes: tuple[str, ...] = ("understand", "generate")
    fps: float = 4.0
    """Input frames per second per session."""
    session_s: tuple[float, float] = (6.0, 20.0)
    """Range of a session's length (uniform)."""
    malformed_rate: float = 0.05
    """Probability per tick of one malformed message."""
    abort_rate: float = 0.3
    """Share of sessions that end by dropping the TCP connection (no close handshake)."""
    slow_rate: float = 0.25
    """Share of sessions whose reader stops for seconds at a time."""
    ask_rate: float = 0.05
    """Probability per tick of a question (understand) or a prompt switch (generate)."""
    size: tuple[int, int] = (96, 64)
    """Input frame width, height."""


@dataclass(slots=True)
class Tally:
    """Everything the clients observed (see module docstring)."""

    started: float = field(default_factory=time.monotonic)
    latencies: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since start, end-to-end latency in seconds) per output."""
    sessions: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    frames_sent: int = 0
    outputs: Counter[str] = field(default_factory=Counter)
    """Output frames and text segments received, by kind."""
    asks: int = 0
    prompt_switches: int = 0
    pings: int = 0
    malformed_sent: Counter[str] = field(default_factory=Counter)
    """Expected error code -> malformed messages sent."""
    errors: Counter[str] = field(default_factory=Counter)
    """Error code -> error messages received."""
    ends: Counter[str] = field(default_factory=Counter)
    """end{reason} received, by reason."""
    aborted: int = 0
    """Sessions that ended by dropping the connection."""
    slow_readers: int = 0
    miss_rates: list[float] = field(default_factory=list)
    """The server's deadline-miss rate from each session's last stats message."""
    problems: Counter[str] = field(default_factory=Counter)
    """Things a client did not expect (timeouts, closes without end), by kind."""

    def latency(self, seconds: float) -> None:
        self.latencies.append((time.monotonic() - self.started, seconds))


class _Reader:
    """Receives one session's messages; measures latency; may read slowly."""

    def __init__(self, ws: ClientConnection, tally: Tally, slow: bool, rng: random.Random) -> None:
        self.ws, self.tally, self.slow, self.rng = ws, tally, slow, rng
        self.sent: dict[int, float] = {}  # input seq -> monotonic send time (bounded below)
        self.seen_segments: set[int] = set()
        self.end: str | None = None
        self.last_stats: dict[str, object] = {}
        self.ready = asyncio.Event()

    async def run(self) -> None:
        try:
            async for msg in self.ws:
                if self.slow and self.rng.random() < 0.05:
                    await asyncio.sleep(self.rng.uniform(1.0, 4.0))  # not reading: the server must cope
                if isinstance(msg, bytes):
                    self._frame(msg)
                else:
                    self._control(msg)
        except ConnectionClosed:
            pass

    def _frame(self, data: bytes) -> None:
        try:
            f = P.decode_frame(data, expect_kind=P.KIND_OUTPUT, max_bytes=1 << 30)
        except P.ProtocolError:
            self.tally.problems["bad_output_frame"] += 1
            return
        self.tally.outputs["frame"] += 1
        if f.header.ref_seq >= 0:  # it answers an input: capture_us is ours (same machine's wall clock)
            self.tally.latency((time.time_ns() // 1000 - f.header.capture_us) / 1e6)

    def _control(self, text: str) -> None:
        msg = json.loads(text)
        t = msg.get("type")
        if t == "ready":
            self.ready.set()
        elif t == "text":
            self.tally.outputs["text"] += 1
            seg, ref = msg.get("segment_id"), msg.get("ref_seq", -1)
            if seg not in self.seen_segments and ref in self.sent:
                self.seen_segments.add(seg)
                self.tally.latency(time.monotonic() - self.sent[ref])
        elif t == "error":
            self.tally.errors[str(msg.get("code"))] += 1
        elif t == "stats":
            self.last_stats = msg
        elif t == "end":
            self.end = str(msg.get("reason"))


async def session(url: str, cfg: LoadConfig, tally: Tally, rng: random.Random, stop_at: float) -> None:
    """One session from connect to leave (see module docstring)."""
    mode = rng.choice(cfg.modes)
    params: dict[str, P.ParamValue] = {}
    video = True
    if mode == "generate":
        video = rng.random() < 0.5
        params = {"prompt": rng.choice(PROMPTS), "input": "video" if video else "none"}
    slow = rng.random() < cfg.slow_rate
    abort = rng.random() < cfg.abort_rate
    length = rng.uniform(*cfg.session_s)
    ticks = random.Random(rng.getrandbits(64))  # per-tick draws: the session-level ones above stay seeded
    try:
        ws = await connect(
            url, subprotocols=[P.SUBPROTOCOL], compression=None, open_timeout=30, max_size=1 << 24
        )
    except InvalidStatus:
        tally.refused += 1
        await asyncio.sleep(rng.uniform(0.5, 2.0))
        return
    reader = _Reader(ws, tally, slow, random.Random(ticks.getrandbits(64)))
    reading = asyncio.create_task(reader.run())
    try:
        await ws.send(json.dumps({"type": "hello", "mode": mode, "params": params}))
        if not await _ready(reader, reading):
            tally.problems["no_ready"] += 1
            return
        tally.sessions[mode] += 1
        tally.slow_readers += slow
        until = min(stop_at, time.monotonic() + length)
        await _stream(ws, reader, cfg, tally, ticks, mode, video, until)
        if abort:
            ws.transport.abort()  # abrupt: no end_input, no close frame
            tally.aborted += 1
            return
        await ws.send(json.dumps({"type": "end_input"}))
        try:
            await asyncio.wait_for(reading, timeout=60)
        except TimeoutError:
            tally.problems["no_end_after_end_input"] += 1
        if reader.end is None:
            tally.problems["closed_without_end"] += 1
        else:
            tally.ends[reader.end] += 1
        rate = reader.last_stats.get("deadline_miss_rate")
        if isinstance(rate, int | float):
            tally.miss_rates.append(float(rate))
    except ConnectionClosed:
        tally.problems["connection_closed"] += 1
    finally:
        reading.cancel()
        ws.transport.abort()  # idempotent; after a close handshake the socket is already gone


async def _ready(reader: _Reader, reading: asyncio.Task[None]) -> bool:
    """Wait (up to 60 s: the server builds the engine) for `ready`; False if the connection ends first."""
    got = asyncio.create_task(reader.ready.wait())
    await asyncio.wait({got, reading}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    got.cancel()
    return reader.ready.is_set()


async def _stream(
    ws: ClientConnection,
    reader: _Reader,
    cfg: LoadConfig,
    tally: Tally,
    rng: random.Random,
    mode: str,
    video: bool,
    until: float,
) -> None:
    from streamrt.synth import World, WorldConfig

    w, h = cfg.size
    frames = World(
        WorldConfig.preset("busy", seed=rng.randint(0, 9999), fps=cfg.fps, width=w, height=h)
    ).frames()
    seq, rev = 0, 0
    period = 1.0 / cfg.fps
    nxt = time.monotonic()
    while time.monotonic() < until:
        if video:
            pixels: np.ndarray = next(frames).pixels
            payload = encode_image(pixels, "jpeg", 80)
            now_us = time.time_ns() // 1000
            hdr = P.FrameHeader(P.KIND_INPUT, "jpeg", seq, now_us)
            reader.sent[seq] = time.monotonic()
            reader.sent.pop(seq - 512, None)
            await ws.send(P.encode_frame(hdr, payload))
            tally.frames_sent += 1
            seq += 1
        r = rng.random()
        if r < cfg.malformed_rate:
            kind = rng.choice(sorted(MALFORMED))
            if kind in ("bad_image", "truncated", "bad_magic", "bad_codec") and not video:
                kind = "bad_json"  # frames to a text-to-video session are E_UNSUPPORTED instead
            await ws.send(malformed(kind, seq, rng))
            tally.malformed_sent[MALFORMED[kind]] += 1
        elif r < cfg.malformed_rate + cfg.ask_rate:
            if mode == "understand":
                await ws.send(json.dumps({"type": "ask", "id": f"q{seq}", "text": rng.choice(QUESTIONS)}))
                tally.asks += 1
            else:
                rev += 1
                msg = {"type": "params", "rev": rev, "set": {"prompt": rng.choice(PROMPTS)}}
                await ws.send(json.dumps(msg))
                tally.prompt_switches += 1
        elif r > 0.97:
            await ws.send(json.dumps({"type": "ping"}))
            tally.pings += 1
        nxt += period
        await asyncio.sleep(max(0.0, nxt - time.monotonic()))


async def actor(url: str, cfg: LoadConfig, tally: Tally, seed: int, stop_at: float) -> None:
    """Sessions one after another until `stop_at` (monotonic)."""
    rng = random.Random(seed)
    while time.monotonic() < stop_at - 1.0:
        await session(url, cfg, tally, rng, stop_at)
        await asyncio.sleep(rng.uniform(0.1, 1.0))
