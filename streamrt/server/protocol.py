"""Wire protocol v1 (subprotocol `streamrt.v1`): the binary media header and the JSON control messages.

Binary frames carry a fixed 32-byte little-endian header followed by the payload (JPEG, WebP, PNG or
raw RGB24); text frames carry one JSON object `{"type": ..., ...}`. This module parses and builds both,
and turns every malformed input into a `ProtocolError` with a stable `code` (the server sends it back as
`error{code, message}` and carries on). It owns the codes and the limits of a message's fields; it does
not know sockets, sessions or engines. docs/protocol.md is the normative description of the same thing.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Literal

SUBPROTOCOL = "streamrt.v1"
VERSION = 1
MAGIC = b"SRT1"
HEADER = struct.Struct(
    "<4sBBBBIHHqq"
)  # magic, version, kind, codec, flags, seq, width, height, capture_us, ref_seq
HEADER_SIZE = HEADER.size  # 32

KIND_INPUT = 1
"""Client to server: an input frame."""
KIND_OUTPUT = 2
"""Server to client: an output frame."""

CODECS: dict[int, str] = {1: "jpeg", 2: "webp", 3: "png", 4: "raw"}
CODEC_IDS: dict[str, int] = {v: k for k, v in CODECS.items()}
Codec = Literal["jpeg", "webp", "png", "raw"]

FLAG_REPEATED = 1
"""Output: the engine repeated its previous output (input skipped as near-identical or by degrade)."""
FLAG_DEGRADED = 2
"""Output: produced below the session's full quality (a degrade-ladder rung > 0)."""
FLAG_KNOWN = FLAG_REPEATED | FLAG_DEGRADED

MAX_DIM = 8192
MAX_TEXT = 4096
"""Longest `ask.text` / string parameter accepted (characters)."""
MAX_ID = 128

ERROR_CODES: dict[str, str] = {
    "E_BAD_JSON": "a text frame that is not a JSON object (or not UTF-8)",
    "E_BAD_TYPE": "a control message with a missing or unknown `type`",
    "E_BAD_FIELD": "a control message field that is missing, of the wrong type or out of range",
    "E_BAD_HEADER": "a binary frame whose header has a wrong magic, version, kind, codec or flags",
    "E_TRUNCATED": "a binary frame shorter than its header, or a raw payload not width*height*3 bytes",
    "E_TOO_LARGE": "a message above the session's max_frame_bytes / max_control_bytes, an image above max_frame_pixels, or a question above the session's token bound (the socket closes with 1009 above max_message_bytes)",
    "E_BAD_IMAGE": "an encoded image the server could not decode (counted and skipped)",
    "E_STATE": "a message not allowed now (anything before hello, hello twice, frames after end_input)",
    "E_AUTH": "missing or wrong token (the socket closes with 1008)",
    "E_MODE": "hello names a mode this server does not run",
    "E_PARAM": "a parameter that is unknown or has an invalid value",
    "E_UNSUPPORTED": "a message the session's mode does not support (e.g. ask in generate mode)",
    "E_FULL": "the server is at capacity (HTTP 503 with Retry-After at connect), or the session does not fit the memory budget (at hello, with retry_after_s)",
    "E_INTERNAL": "the engine failed; the session ends",
}

CLIENT_TYPES = ("hello", "params", "ask", "pause", "resume", "end_input", "ping")
SERVER_TYPES = ("ready", "text", "params_ack", "stats", "error", "end", "pong")


class ProtocolError(Exception):
    """Malformed or disallowed input: `code` is one of ERROR_CODES and never changes."""

    def __init__(self, code: str, message: str) -> None:
        assert code in ERROR_CODES, code
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# ---- binary frames ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FrameHeader:
    kind: int
    codec: Codec
    seq: int
    """Sequence number of the frame in its direction (u32, wraps)."""
    capture_us: int
    """Input: the client's capture time in microseconds (its own clock). Output: the capture_us of the
    input it answers (video-to-video), or the server's wall clock (µs) when generation started."""
    ref_seq: int = -1
    """Output: the input seq it answers, -1 when none (text-to-video)."""
    width: int = 0
    """Raw payloads: width in pixels (required); other codecs: 0 or the image's width."""
    height: int = 0
    flags: int = 0


@dataclass(frozen=True, slots=True)
class BinaryFrame:
    header: FrameHeader
    payload: bytes


def encode_frame(h: FrameHeader, payload: bytes) -> bytes:
    return HEADER.pack(
        MAGIC,
        VERSION,
        h.kind,
        CODEC_IDS[h.codec],
        h.flags,
        h.seq & 0xFFFFFFFF,
        h.width,
        h.height,
        h.capture_us,
        h.ref_seq,
    ) + bytes(payload)


def decode_frame(data: bytes, *, expect_kind: int, max_bytes: int) -> BinaryFrame:
    """Parse and validate one binary message; raises ProtocolError."""
    if len(data) > max_bytes:
        raise ProtocolError("E_TOO_LARGE", f"binary frame of {len(data)} bytes > limit {max_bytes}")
    if len(data) < HEADER_SIZE:
        raise ProtocolError("E_TRUNCATED", f"binary frame of {len(data)} bytes < header {HEADER_SIZE}")
    magic, ver, kind, codec, flags, seq, w, h, cap, ref = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ProtocolError("E_BAD_HEADER", f"magic {magic!r} != {MAGIC!r}")
    if ver != VERSION:
        raise ProtocolError("E_BAD_HEADER", f"version {ver} not supported (this server speaks {VERSION})")
    if kind != expect_kind:
        raise ProtocolError("E_BAD_HEADER", f"kind {kind} where {expect_kind} was expected")
    if codec not in CODECS:
        raise ProtocolError("E_BAD_HEADER", f"codec {codec} unknown (known: {sorted(CODECS)})")
    if flags & ~FLAG_KNOWN:
        raise ProtocolError("E_BAD_HEADER", f"unknown flag bits {flags & ~FLAG_KNOWN:#x}")
    if w > MAX_DIM or h > MAX_DIM:
        raise ProtocolError("E_BAD_HEADER", f"size {w}x{h} above {MAX_DIM}")
    payload = data[HEADER_SIZE:]
    name = CODECS[codec]
    if name == "raw":
        if w == 0 or h == 0:
            raise ProtocolError("E_BAD_HEADER", "raw frame needs width and height")
        if len(payload) != w * h * 3:
            raise ProtocolError("E_TRUNCATED", f"raw {w}x{h} needs {w * h * 3} bytes, got {len(payload)}")
    elif not payload:
        raise ProtocolError("E_TRUNCATED", f"{name} frame without payload")
    return BinaryFrame(FrameHeader(kind, name, seq, cap, ref, w, h, flags), bytes(payload))  # type: ignore[arg-type]


# ---- control messages ---------------------------------------------------------------------------------
ParamValue = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Hello:
    mode: str
    params: dict[str, ParamValue]
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Params:
    rev: int
    set: dict[str, ParamValue]


@dataclass(frozen=True, slots=True)
class Ask:
    id: str
    text: str


@dataclass(frozen=True, slots=True)
class Simple:
    """pause, resume, end_input, ping (no fields)."""

    type: Literal["pause", "resume", "end_input", "ping"]


Control = Hello | Params | Ask | Simple


def _field(
    msg: dict[str, object], name: str, typ: type | tuple[type, ...], *, required: bool = True
) -> object:
    if name not in msg:
        if required:
            raise ProtocolError("E_BAD_FIELD", f"{msg.get('type')}: missing field {name!r}")
        return None
    v = msg[name]
    if isinstance(v, bool) and bool not in (typ if isinstance(typ, tuple) else (typ,)):
        raise ProtocolError("E_BAD_FIELD", f"{msg.get('type')}.{name}: boolean where {typ} expected")
    if not isinstance(v, typ):
        raise ProtocolError("E_BAD_FIELD", f"{msg.get('type')}.{name}: {type(v).__name__} is not {typ}")
    return v


def _param_map(v: object, where: str) -> dict[str, ParamValue]:
    assert isinstance(v, dict)
    out: dict[str, ParamValue] = {}
    for k, x in v.items():
        if not isinstance(x, str | int | float | bool) or (isinstance(x, float) and not math.isfinite(x)):
            raise ProtocolError("E_BAD_FIELD", f"{where}.{k}: value must be a string, number or boolean")
        if isinstance(x, str) and len(x) > MAX_TEXT:
            raise ProtocolError("E_BAD_FIELD", f"{where}.{k}: longer than {MAX_TEXT} characters")
        out[str(k)[:MAX_ID]] = x
    return out


def decode_control(text: str | bytes, *, max_bytes: int) -> Control:
    """Parse one text frame; raises ProtocolError."""
    size = len(text.encode()) if isinstance(text, str) else len(text)  # the limit is in UTF-8 bytes
    if size > max_bytes:
        raise ProtocolError("E_TOO_LARGE", f"control message of {size} bytes > limit {max_bytes}")
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ProtocolError("E_BAD_JSON", f"not JSON: {e}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("E_BAD_JSON", f"a JSON {type(msg).__name__}, not an object")
    t = msg.get("type")
    if not isinstance(t, str) or t not in CLIENT_TYPES:
        raise ProtocolError("E_BAD_TYPE", f"type {str(t)[:40]!r} unknown; known: {', '.join(CLIENT_TYPES)}")
    if t == "hello":
        mode = _field(msg, "mode", str)
        params = _field(msg, "params", dict, required=False) or {}
        token = _field(msg, "token", str, required=False)
        return Hello(str(mode)[:MAX_ID], _param_map(params, "hello.params"), token)  # type: ignore[arg-type]
    if t == "params":
        rev = _field(msg, "rev", int)
        if not 0 <= rev < 2**53:  # type: ignore[operator]
            raise ProtocolError("E_BAD_FIELD", f"params.rev {rev} out of range")
        return Params(rev, _param_map(_field(msg, "set", dict), "params.set"))  # type: ignore[arg-type]
    if t == "ask":
        qid, q = _field(msg, "id", str), _field(msg, "text", str)
        if not 0 < len(q) <= MAX_TEXT or len(qid) > MAX_ID:  # type: ignore[arg-type]
            raise ProtocolError("E_BAD_FIELD", f"ask: id <= {MAX_ID} and 1..{MAX_TEXT} characters of text")
        return Ask(qid, q)  # type: ignore[arg-type]
    return Simple(t)  # type: ignore[arg-type]


def control(type_: str, **fields: object) -> str:
    """A server-to-client control message as JSON text."""
    assert type_ in SERVER_TYPES, type_
    return json.dumps({"type": type_, **fields}, separators=(",", ":"), allow_nan=False)


def error(code: str, message: str, **extra: object) -> str:
    assert code in ERROR_CODES, code
    return control("error", code=code, message=message, **extra)
