"""Typed server-to-client events of protocol v1, parsed from websocket messages.

Binary messages become `OutputFrameEvent` (header + payload; `pixels()` decodes); text messages become
`Ready`, `Text`, `ParamsAck`, `Stats`, `ServerError`, `End` or `Pong`. An unknown `type` becomes
`Unknown` (a newer server may add types; clients ignore what they do not know). Owns nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from streamrt.server import protocol as P
from streamrt.server.media import decode_image


@dataclass(frozen=True, slots=True)
class Ready:
    session_id: str
    mode: str
    limits: dict[str, object]
    kind: str = "ready"


@dataclass(frozen=True, slots=True)
class Text:
    segment_id: int
    text: str
    final: bool
    ref_seq: int = -1
    question_id: str | None = None
    kind: str = "text"


@dataclass(frozen=True, slots=True)
class ParamsAck:
    rev: int
    applies_at_seq: int
    kind: str = "params_ack"


@dataclass(frozen=True, slots=True)
class Stats:
    data: dict[str, object]
    kind: str = "stats"


@dataclass(frozen=True, slots=True)
class ServerError:
    code: str
    message: str
    kind: str = "error"


@dataclass(frozen=True, slots=True)
class End:
    reason: str
    retry_after_s: float | None = None
    """With reason "draining": open a new session after this many seconds (it lands elsewhere)."""
    kind: str = "end"


@dataclass(frozen=True, slots=True)
class Pong:
    t: float
    kind: str = "pong"


@dataclass(frozen=True, slots=True)
class Unknown:
    data: dict[str, object]
    kind: str = "unknown"


@dataclass(frozen=True, slots=True)
class OutputFrameEvent:
    header: P.FrameHeader
    payload: bytes = field(repr=False)
    received: float = 0.0
    """time.time() when it arrived (end-to-end latency = received - header.capture_us / 1e6)."""
    kind: str = "frame"

    def pixels(self) -> np.ndarray:
        """[H, W, 3] uint8 RGB."""
        h = self.header
        return decode_image(h.codec, self.payload, h.width, h.height)


Event = Ready | Text | ParamsAck | Stats | ServerError | End | Pong | Unknown | OutputFrameEvent


def parse_event(msg: str | bytes, received: float = 0.0) -> Event:
    """One server message -> its event (raises ProtocolError on a malformed binary frame)."""
    if isinstance(msg, bytes):
        bf = P.decode_frame(msg, expect_kind=P.KIND_OUTPUT, max_bytes=len(msg))
        return OutputFrameEvent(bf.header, bf.payload, received)
    d = json.loads(msg)
    t = d.get("type")
    if t == "ready":
        return Ready(d["session_id"], d["mode"], d.get("limits", {}))
    if t == "text":
        return Text(d["segment_id"], d["text"], d["final"], d.get("ref_seq", -1), d.get("question_id"))
    if t == "params_ack":
        return ParamsAck(d["rev"], d["applies_at_seq"])
    if t == "stats":
        return Stats({k: v for k, v in d.items() if k != "type"})
    if t == "error":
        return ServerError(d["code"], d["message"])
    if t == "end":
        return End(d["reason"], d.get("retry_after_s"))
    if t == "pong":
        return Pong(d.get("t", 0.0))
    return Unknown(d)
