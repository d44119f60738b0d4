"""The protocol codec: header round trips (hypothesis), every malformed input maps to its stable code,
and docs/protocol.md documents exactly the codes and the header layout the code uses."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamrt.server import protocol as P

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


@given(
    kind=st.sampled_from([P.KIND_INPUT, P.KIND_OUTPUT]),
    codec=st.sampled_from(["jpeg", "webp", "png"]),
    seq=st.integers(0, 2**32 - 1),
    cap=st.integers(-(2**63), 2**63 - 1),
    ref=st.integers(-1, 2**40),
    flags=st.integers(0, P.FLAG_KNOWN),
    payload=st.binary(min_size=1, max_size=64),
)
def test_header_round_trip(kind, codec, seq, cap, ref, flags, payload) -> None:
    h = P.FrameHeader(kind, codec, seq, cap, ref, 0, 0, flags)
    data = P.encode_frame(h, payload)
    assert len(data) == P.HEADER_SIZE + len(payload) and data[:4] == b"SRT1"
    bf = P.decode_frame(data, expect_kind=kind, max_bytes=1 << 20)
    assert bf.header == h and bf.payload == payload


def _frame(**over) -> bytes:
    f = dict(magic=P.MAGIC, ver=1, kind=1, codec=1, flags=0, seq=0, w=0, h=0, cap=0, ref=-1)
    f.update(over)
    return P.HEADER.pack(*f.values()) + over.get("payload", b"\xff\xd8\xff")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "E_TRUNCATED"),
        (b"SRT1\x01", "E_TRUNCATED"),
        (_frame(magic=b"XXXX"), "E_BAD_HEADER"),
        (_frame(ver=2), "E_BAD_HEADER"),
        (_frame(kind=2), "E_BAD_HEADER"),
        (_frame(codec=9), "E_BAD_HEADER"),
        (_frame(flags=0x80), "E_BAD_HEADER"),
        (_frame(w=9000, h=1), "E_BAD_HEADER"),
        (_frame(codec=4), "E_BAD_HEADER"),  # raw without a size
        (_frame(codec=4, w=2, h=2) + b"\0" * 11, "E_TRUNCATED"),  # 3 + 11 != 12 bytes
        (P.HEADER.pack(P.MAGIC, 1, 1, 1, 0, 0, 0, 0, 0, -1), "E_TRUNCATED"),  # no payload
        (_frame() + b"\0" * 2000, "E_TOO_LARGE"),
    ],
)
def test_bad_frames_have_stable_codes(data: bytes, code: str) -> None:
    with pytest.raises(P.ProtocolError) as e:
        P.decode_frame(data, expect_kind=P.KIND_INPUT, max_bytes=1024)
    assert e.value.code == code


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{", "E_BAD_JSON"),
        ("[1, 2]", "E_BAD_JSON"),
        ('"hello"', "E_BAD_JSON"),
        ("[" * 100000, "E_TOO_LARGE"),
        ("{}", "E_BAD_TYPE"),
        ('{"type": "launch"}', "E_BAD_TYPE"),
        ('{"type": 3}', "E_BAD_TYPE"),
        ('{"type": "hello"}', "E_BAD_FIELD"),
        ('{"type": "hello", "mode": 1}', "E_BAD_FIELD"),
        ('{"type": "hello", "mode": "generate", "params": {"x": [1]}}', "E_BAD_FIELD"),
        ('{"type": "hello", "mode": "generate", "params": {"x": null}}', "E_BAD_FIELD"),
        ('{"type": "hello", "mode": "generate", "params": {"x": NaN}}', "E_BAD_FIELD"),
        ('{"type": "params", "rev": true, "set": {}}', "E_BAD_FIELD"),
        ('{"type": "params", "rev": -1, "set": {}}', "E_BAD_FIELD"),
        ('{"type": "params", "rev": 1}', "E_BAD_FIELD"),
        ('{"type": "ask", "id": "q", "text": ""}', "E_BAD_FIELD"),
        ('{"type": "ask", "id": "q"}', "E_BAD_FIELD"),
    ],
)
def test_bad_control_has_stable_codes(text: str, code: str) -> None:
    with pytest.raises(P.ProtocolError) as e:
        P.decode_control(text, max_bytes=65536)
    assert e.value.code == code


def test_good_control_messages() -> None:
    h = P.decode_control(
        '{"type":"hello","mode":"generate","params":{"prompt":"a red circle","steps":2},"token":"t"}',
        max_bytes=999,
    )
    assert h == P.Hello("generate", {"prompt": "a red circle", "steps": 2}, "t")
    assert P.decode_control('{"type":"params","rev":3,"set":{"budget_ms":90.5}}', max_bytes=999) == P.Params(
        3, {"budget_ms": 90.5}
    )
    assert P.decode_control('{"type":"ask","id":"a","text":"what?"}', max_bytes=999) == P.Ask("a", "what?")
    for t in ("pause", "resume", "end_input", "ping"):
        assert P.decode_control(json.dumps({"type": t}), max_bytes=999) == P.Simple(t)
    assert json.loads(P.error("E_PARAM", "x")) == {"type": "error", "code": "E_PARAM", "message": "x"}


def test_doc_matches_code() -> None:
    doc = DOC.read_text()
    documented = set(re.findall(r"`(E_[A-Z_]+)`", doc))
    assert documented == set(P.ERROR_CODES), documented ^ set(P.ERROR_CODES)
    assert f"{P.HEADER_SIZE} bytes" in doc and P.HEADER.format in doc
    for name in (*P.CLIENT_TYPES, *P.SERVER_TYPES):
        assert f"`{name}`" in doc, name
    assert struct.calcsize(P.HEADER.format) == 32
