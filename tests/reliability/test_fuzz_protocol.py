"""Fuzzing the wire protocol parser (streamrt/server/protocol.py) with hypothesis, fixed budget.

Property: every input either parses into a typed message that respects the protocol's limits, or
raises `ProtocolError` whose code is one of ERROR_CODES. Nothing else may escape (no KeyError,
TypeError, OverflowError, RecursionError, UnicodeError...). Inputs: arbitrary text and bytes;
JSON objects with a known or unknown `type` and arbitrary fields; binary frames with random and
with well-formed headers. Oracle for the well-formed side: `encode_frame` -> `decode_frame` gives
back the same header and payload, and each accepted message is checked against the limits stated
in docs/protocol.md, written out here independently of the parser.

A problem found stays as a regression test: `test_control_size_limit_counts_bytes` (the limit once
counted characters, not bytes).
"""

from __future__ import annotations

import json
import math
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrt.server import protocol as P

from .conftest import budget  # noqa: TID252

FUZZ = settings(
    max_examples=budget(300),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
LIMIT = 64 * 2**10
COUNT = {"control": 0, "frame": 0}
"""Messages fuzzed in this session (docs/reliability.md quotes a run's totals)."""

json_scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50)
json_value = st.recursive(
    json_scalar,
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=10), kids, max_size=5),
    max_leaves=20,
)
field_names = st.sampled_from(["mode", "params", "token", "rev", "set", "id", "text", "x"]) | st.text(
    max_size=8
)


def check_control(raw: str | bytes) -> None:
    COUNT["control"] += 1
    try:
        msg = P.decode_control(raw, max_bytes=LIMIT)
    except P.ProtocolError as e:
        assert e.code in P.ERROR_CODES
        return
    if isinstance(msg, P.Hello):
        assert isinstance(msg.mode, str) and len(msg.mode) <= P.MAX_ID
        assert msg.token is None or isinstance(msg.token, str)
        check_params(msg.params)
    elif isinstance(msg, P.Params):
        assert type(msg.rev) is int and 0 <= msg.rev < 2**53
        check_params(msg.set)
    elif isinstance(msg, P.Ask):
        assert isinstance(msg.id, str) and len(msg.id) <= P.MAX_ID
        assert isinstance(msg.text, str) and 1 <= len(msg.text) <= P.MAX_TEXT
    else:
        assert isinstance(msg, P.Simple) and msg.type in P.CLIENT_TYPES


def check_params(params: dict) -> None:
    for k, v in params.items():
        assert isinstance(k, str) and len(k) <= P.MAX_ID
        assert isinstance(v, str | int | float | bool)
        assert not isinstance(v, float) or math.isfinite(v)
        assert not isinstance(v, str) or len(v) <= P.MAX_TEXT


@FUZZ
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_fuzz_control_arbitrary(raw):
    check_control(raw)


@FUZZ
@given(
    st.sampled_from([*P.CLIENT_TYPES, "ready", "", "HELLO"]) | st.text(max_size=12),
    st.dictionaries(field_names, json_value, max_size=6),
)
def test_fuzz_control_objects(type_, fields):
    raw = json.dumps({**fields, "type": type_})
    check_control(raw)
    check_control(raw.encode())


@FUZZ
@given(st.text(alphabet='[]{}"\\:,0123456789.eE-+ntrufalse', max_size=200))
def test_fuzz_control_json_shapes(raw):
    check_control(raw)  # deep nesting, huge numbers, broken literals


def check_frame(data: bytes) -> None:
    COUNT["frame"] += 1
    try:
        f = P.decode_frame(data, expect_kind=P.KIND_INPUT, max_bytes=LIMIT)
    except P.ProtocolError as e:
        assert e.code in P.ERROR_CODES
        return
    h = f.header
    assert len(data) <= LIMIT and data[:4] == b"SRT1" and data[4] == 1 and h.kind == P.KIND_INPUT
    assert h.codec in P.CODEC_IDS and h.flags & ~P.FLAG_KNOWN == 0
    assert h.width <= P.MAX_DIM and h.height <= P.MAX_DIM
    assert f.payload == data[32:] and len(f.payload) > 0
    if h.codec == "raw":
        assert len(f.payload) == h.width * h.height * 3


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_frame_arbitrary(data):
    check_frame(data)
    check_frame(b"SRT1\x01\x01" + data)


@FUZZ
@given(
    st.sampled_from([b"SRT1", b"SRT2", b"\x00\x00\x00\x00"]),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**16 - 1),
    st.integers(0, 2**16 - 1),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-(2**63), 2**63 - 1),
    st.binary(max_size=64) | st.integers(0, 40).map(lambda n: bytes(n * 3)),
)
def test_fuzz_frame_headers(magic, ver, kind, codec, flags, seq, w, h, cap, ref, payload):
    data = struct.pack(
        "<4sBBBBIHHqq", magic, ver % 3, kind % 4, codec % 6, flags % 8, seq, w % 16, h % 16, cap, ref
    )
    check_frame(data + payload)


@FUZZ
@given(
    st.sampled_from(sorted(P.CODEC_IDS)),
    st.integers(0, 2**32 - 1),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(1, 12),
    st.integers(1, 12),
    st.integers(0, P.FLAG_KNOWN),
)
def test_fuzz_frame_roundtrip(codec, seq, cap, ref, w, h, flags):
    payload = bytes(w * h * 3) if codec == "raw" else b"\xff\xd8payload"
    hdr = P.FrameHeader(P.KIND_INPUT, codec, seq, cap, ref, w, h, flags)
    got = P.decode_frame(P.encode_frame(hdr, payload), expect_kind=P.KIND_INPUT, max_bytes=LIMIT)
    COUNT["frame"] += 1
    assert got.header == hdr and got.payload == payload


def test_control_size_limit_applies():
    big = json.dumps({"type": "ask", "id": "q", "text": "x" * (LIMIT + 1)})
    try:
        P.decode_control(big, max_bytes=LIMIT)
    except P.ProtocolError as e:
        assert e.code == "E_TOO_LARGE"
    else:
        raise AssertionError("an oversized control message was accepted")


def test_control_size_limit_counts_bytes():
    """docs/protocol.md: E_TOO_LARGE for "a control message above `max_control_bytes`". The parser
    compares len(text), which counts characters for a str (what the server passes for a text
    frame), so a message of LIMIT characters of 4-byte UTF-8 (4 x LIMIT bytes) is accepted."""
    text = "\U0001f600" * (LIMIT - 40)
    msg = json.dumps({"type": "ping", "pad": text}, ensure_ascii=False)
    assert len(msg) <= LIMIT < len(msg.encode())
    try:
        P.decode_control(msg, max_bytes=LIMIT)
    except P.ProtocolError as e:
        assert e.code == "E_TOO_LARGE"
    else:
        raise AssertionError(f"{len(msg.encode())} bytes accepted under a {LIMIT}-byte limit")


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    """Print what was fuzzed (run with -s to see it; docs/reliability.md quotes such a run)."""
    yield
    print(f"\n{__name__}: fuzzed {COUNT}")
