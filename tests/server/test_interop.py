"""Interop with a client no one here wrote: `websocket-client` (PyPI), frames built and parsed with
`struct` straight from docs/protocol.md (not with streamrt's codec), images with OpenCV."""

from __future__ import annotations

import json
import struct
import time

import cv2
import numpy as np
import websocket

HDR = "<4sBBBBIHHqq"  # docs/protocol.md section 3


def _next(ws, want: str | None = None):
    for _ in range(100):
        op, data = ws.recv_data()
        if op == websocket.ABNF.OPCODE_BINARY:
            if want in (None, "frame"):
                return "frame", data
            continue
        msg = json.loads(data)
        if want in (None, msg["type"]):
            return msg["type"], msg
    raise AssertionError(f"no {want}")


def test_websocket_client_video_to_video(server_thread) -> None:
    srv = server_thread()
    ws = websocket.create_connection(srv.url, subprotocols=["streamrt.v1"], timeout=10)
    assert ws.getsubprotocol() == "streamrt.v1"
    assert "permessage-deflate" not in (ws.getheaders() or {}).get("sec-websocket-extensions", "")
    ws.send(
        json.dumps(
            {
                "type": "hello",
                "mode": "generate",
                "params": {"prompt": "a white circle", "input": "video", "budget_ms": 5000},
            }
        )
    )
    kind, ready = _next(ws)
    assert kind == "ready" and len(ready["session_id"]) == 24 and ready["limits"]["input_buffer"] == 2
    img = np.zeros((32, 32, 3), np.uint8)
    cv2.circle(img, (16, 16), 8, (255, 255, 255), -1)
    jpg = cv2.imencode(".jpg", img)[1].tobytes()
    cap = time.time_ns() // 1000
    ws.send_binary(struct.pack(HDR, b"SRT1", 1, 1, 1, 0, 7, 0, 0, cap, -1) + jpg)
    _, data = _next(ws, "frame")
    magic, ver, kind_, codec, flags, seq, w, h, cap_out, ref = struct.unpack_from(HDR, data)
    assert (magic, ver, kind_, codec, seq, w, h, cap_out, ref) == (b"SRT1", 1, 2, 1, 0, 16, 16, cap, 7)
    out = cv2.imdecode(np.frombuffer(data[32:], np.uint8), cv2.IMREAD_COLOR)
    assert out.shape == (16, 16, 3)
    ws.send(json.dumps({"type": "params", "rev": 1, "set": {"prompt": "a red square", "out_codec": "png"}}))
    ws.send_binary(struct.pack(HDR, b"SRT1", 1, 1, 1, 0, 8, 0, 0, cap, -1) + jpg)
    _, ack = _next(ws, "params_ack")
    assert ack == {"type": "params_ack", "rev": 1, "applies_at_seq": 8}
    _, data = _next(ws, "frame")
    assert struct.unpack_from(HDR, data)[3] == 3 and data[32:40] == b"\x89PNG\r\n\x1a\n"
    ws.send(json.dumps({"type": "end_input"}))
    _, end = _next(ws, "end")
    assert end == {"type": "end", "reason": "input_ended"}
    ws.close()
