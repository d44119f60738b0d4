"""Fuzzing a live session (hypothesis, through `websocket-client`, a client no one here wrote).

Every generated message is invalid by construction (checked with the stdlib json module, not with our
codec): text that is not a JSON object, JSON of unknown type, known types with broken fields, binary
garbage, frames with one bad header field, truncated raw frames, frames above max_frame_bytes. Each must
get an `error` with a documented code (never E_INTERNAL), and afterwards the same session still answers
`ping` and still turns a valid frame into an output; the server still accepts new sessions.
"""

from __future__ import annotations

import json
import struct
import urllib.request

import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrt.server import protocol as P

MAX_FRAME = 4096
HDR = "<4sBBBBIHHqq"


def _raw_frame(w: int = 4, h: int = 4, **over) -> bytes:
    """A raw input frame (48 payload bytes unless w x h says more and is small)."""
    f = dict(magic=b"SRT1", ver=1, kind=1, codec=4, flags=0, seq=0, w=w, h=h, cap=0, ref=-1)
    f.update(over)
    return struct.pack(HDR, *f.values()) + b"\x80" * (w * h * 3 if w * h <= 256 else 48)


def _not_object(s: str) -> bool:
    try:
        return not isinstance(json.loads(s), dict)
    except ValueError:
        return True


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
bad_text = st.one_of(
    st.text(max_size=200).filter(_not_object),
    st.lists(json_scalars, max_size=5).map(json.dumps),
    st.text(max_size=30).filter(lambda t: t not in P.CLIENT_TYPES).map(lambda t: json.dumps({"type": t})),
    json_scalars.filter(lambda v: not isinstance(v, str)).map(lambda v: json.dumps({"type": v})),
    st.sampled_from(
        [
            {"type": "hello", "mode": "generate"},  # hello inside a session
            {"type": "params"},
            {"type": "params", "rev": "1", "set": {}},
            {"type": "params", "rev": 10**20, "set": {}},
            {"type": "params", "rev": 1, "set": []},
            {"type": "params", "rev": 1, "set": {"steps": 99}},
            {"type": "params", "rev": 1, "set": {"no_such_param": 1}},
            {"type": "params", "rev": 1, "set": {"seed": 3}},  # hello-only
            {"type": "ask", "id": "q", "text": "what?"},  # unsupported in generate
            {"type": "ask", "id": 5, "text": "x"},
        ]
    ).map(json.dumps),
)
bad_binary = st.one_of(
    st.binary(max_size=300).filter(lambda b: b[:4] != b"SRT1"),
    st.sampled_from(
        [
            _raw_frame(magic=b"SRT2"),
            _raw_frame(ver=0),
            _raw_frame(ver=255),
            _raw_frame(kind=2),
            _raw_frame(kind=0),
            _raw_frame(codec=0),
            _raw_frame(codec=77),
            _raw_frame(flags=4),
            _raw_frame(w=0),
            _raw_frame(w=10000, h=1),
        ]
    ),
    st.integers(0, len(_raw_frame()) - 1).map(lambda n: _raw_frame()[:n]),
    st.integers(MAX_FRAME + 1, 3 * MAX_FRAME).map(lambda n: _raw_frame() + b"\0" * (n - len(_raw_frame()))),
    st.binary(min_size=1, max_size=64).map(
        lambda p: struct.pack(HDR, b"SRT1", 1, 1, 1, 0, 0, 0, 0, 0, -1) + p
    ),
)


def _until(ws: websocket.WebSocket, kind: str) -> dict:
    """Read (skipping frames and stats) until a message of `kind` or an error; returns it."""
    for _ in range(200):
        op, data = ws.recv_data()
        if op == websocket.ABNF.OPCODE_BINARY:
            continue
        msg = json.loads(data)
        if msg["type"] in (kind, "error"):
            return msg
    raise AssertionError(f"no {kind}")


def test_fuzzed_messages_get_errors_and_the_session_goes_on(server_thread) -> None:
    srv = server_thread(max_frame_bytes=MAX_FRAME, max_message_bytes=4 * MAX_FRAME, stats_interval_s=0.2)
    ws = websocket.create_connection(srv.url, subprotocols=[P.SUBPROTOCOL], timeout=10)
    ws.send(
        json.dumps(
            {
                "type": "hello",
                "mode": "generate",
                "params": {"input": "video", "out_codec": "raw", "budget_ms": 5000},
            }
        )
    )
    assert _until(ws, "ready")["type"] == "ready"
    seen: set[str] = set()

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(msg=bad_text | bad_binary)
    def fuzz(msg: str | bytes) -> None:
        if isinstance(msg, bytes):
            ws.send_binary(msg)
        else:
            ws.send(msg)
        err = _until(ws, "error")
        assert err["type"] == "error", (msg, err)
        assert err["code"] in P.ERROR_CODES and err["code"] != "E_INTERNAL", err
        seen.add(err["code"])
        ws.send(json.dumps({"type": "ping"}))
        assert _until(ws, "pong")["type"] == "pong", msg

    fuzz()
    assert {
        "E_BAD_JSON",
        "E_BAD_TYPE",
        "E_BAD_FIELD",
        "E_BAD_HEADER",
        "E_TRUNCATED",
        "E_TOO_LARGE",
    } <= seen, seen
    ws.send_binary(_raw_frame(16, 16))  # the session still works
    for _ in range(100):
        op, data = ws.recv_data()
        if op == websocket.ABNF.OPCODE_BINARY:
            assert len(data) == 32 + 16 * 16 * 3
            break
    else:
        raise AssertionError("no output frame after fuzzing")
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.server.port}/healthz", timeout=5) as r:
        assert json.loads(r.read())["sessions"] == 1
    ws2 = websocket.create_connection(srv.url, subprotocols=[P.SUBPROTOCOL], timeout=10)
    ws2.send(json.dumps({"type": "hello", "mode": "generate", "params": {}}))
    assert _until(ws2, "ready")["type"] == "ready"
    ws2.close()
    ws.close()


def test_message_above_the_hard_limit_closes_with_1009(server_thread) -> None:
    srv = server_thread(max_frame_bytes=MAX_FRAME, max_message_bytes=2 * MAX_FRAME)
    ws = websocket.create_connection(srv.url, subprotocols=[P.SUBPROTOCOL], timeout=10)
    ws.send(json.dumps({"type": "hello", "mode": "generate", "params": {"input": "video"}}))
    _until(ws, "ready")
    ws.send_binary(b"\0" * (2 * MAX_FRAME + 1))
    for _ in range(50):
        op, data = ws.recv_data(control_frame=True)
        if op == websocket.ABNF.OPCODE_CLOSE:
            assert struct.unpack("!H", data[:2])[0] == 1009
            break
    else:
        raise AssertionError("socket not closed")
