"""Resource limits: the memory budget (sizes, measured session cost, admission at hello), decoded frame
size and question length bounds, and `streamrt serve --max-memory` as a real subprocess.

Oracles: the KV-cache bytes recomputed by hand from the model config and the cache geometry; the
budget's arithmetic done by hand; refusals checked on the wire (error code, retry hint, close code) and
the session count; the bounds checked against images whose true size is known.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import urllib.request

import cv2
import numpy as np
import pytest
from websockets.asyncio.client import connect

from streamrt.client import AsyncClient, ServerError
from streamrt.client.client import ClientError
from streamrt.gen.config import GenEngineConfig
from streamrt.server import Server, ServerConfig
from streamrt.server import protocol as P
from streamrt.server.budget import BudgetError, MemoryBudget, SessionCost, measure_session, parse_size
from streamrt.server.generate import DEFAULT_PRESET, generate_factory
from streamrt.server.understand import UnderstandEngine

MiB = 2**20


def test_parse_size() -> None:
    assert parse_size("2G") == 2 * 2**30
    assert parse_size("512M") == parse_size("512MiB") == parse_size("512mb") == 512 * MiB
    assert parse_size("1.5G") == 3 * 2**29
    assert parse_size("4096") == 4096
    for bad in ("", "lots", "2X", "-1G"):
        with pytest.raises(BudgetError, match="E_SERVER_CONFIG"):
            parse_size(bad)


def test_generate_session_cost_has_the_cache_bytes_of_its_config(gen_model) -> None:
    cost = measure_session(generate_factory(gen_model), {}, probes=2, steps=3)
    m, cfg = gen_model.spec.model, GenEngineConfig.preset(DEFAULT_PRESET)
    tokens = (gen_model.spec.height // m.patch) * (gen_model.spec.width // m.patch)
    frames = cfg.sink_frames + cfg.window_frames + cfg.max_inflight()
    per_row = m.layers * m.heads * m.head_dim * 4  # fp32
    kv = per_row * tokens * (2 * frames + (cfg.window_frames + cfg.max_inflight()))  # k, v, k_master
    kept = (cfg.sink_frames + cfg.window_frames) * 3 * gen_model.spec.height * gen_model.spec.width * 4
    assert cost.cache_bytes == kv + kept
    assert cost.overhead_bytes >= 0


def test_understand_cache_bytes_follow_kv_tokens(vlm_adapter) -> None:
    c = vlm_adapter.model.config
    tc = getattr(c, "text_config", c)
    head_dim = getattr(tc, "head_dim", None) or tc.hidden_size // tc.num_attention_heads
    row = 2 * tc.num_hidden_layers * tc.num_key_value_heads * head_dim * 4  # K and V, fp32
    small, big = UnderstandEngine(vlm_adapter, {}, 1024), UnderstandEngine(vlm_adapter, {}, 2048)
    assert big.cache_bytes() - small.cache_bytes() >= row * 1024  # + position tables
    assert big.cache_bytes() - small.cache_bytes() < (row + 64) * 1024


def test_budget_arithmetic() -> None:
    costs = {"generate": SessionCost(3 * MiB, 2 * MiB), "understand": SessionCost(6 * MiB, 4 * MiB)}
    b = MemoryBudget(200 * MiB, 100 * MiB, costs, headroom=0.1)  # 180 - 100 = 80 MiB for sessions
    assert b.available == 80 * MiB
    assert b.capacity("generate") == 16 and b.capacity("understand") == 8
    assert all(b.reserve("understand") for _ in range(7))  # 70 MiB
    assert b.reserve("generate") and b.reserved == 75 * MiB
    assert not b.reserve("understand")  # 75 + 10 > 80
    assert b.reserve("generate") and b.reserved == 80 * MiB
    assert not b.reserve("generate")
    assert "a generate session needs 5.0 MiB" in b.refusal("generate")
    b.release("understand")
    assert b.reserve("generate") and b.reserved == 75 * MiB
    with pytest.raises(BudgetError, match="holds no session.*at least"):
        MemoryBudget(100 * MiB, 95 * MiB, costs)


def test_hello_beyond_the_memory_budget_is_refused_with_a_retry_hint(gen_model, arun) -> None:
    cost = SessionCost(4 * MiB, 1 * MiB)
    budget = MemoryBudget(100 * MiB, 80 * MiB, {"generate": cost}, headroom=0.0)  # room for 4

    async def body():
        cfg = ServerConfig(port=0, retry_after_s=3, max_sessions=8)  # the budget is the tighter limit
        async with Server(cfg, {"generate": generate_factory(gen_model)}, budget) as srv:
            admitted = [AsyncClient(srv.url, "generate", reconnect=False) for _ in range(4)]
            for c in admitted:
                await c.connect()
            async with connect(srv.url, subprotocols=[P.SUBPROTOCOL]) as ws:
                await ws.send(json.dumps({"type": "hello", "mode": "generate"}))
                refused = json.loads(await ws.recv())
                await ws.wait_closed()
                code = ws.close_code
            n_during = len(srv.sessions)
            await admitted[0].close()
            for _ in range(100):
                if len(srv.sessions) < 4:
                    break
                await asyncio.sleep(0.05)
            late = AsyncClient(srv.url, "generate", reconnect=False)
            await late.connect()  # the closed session's reservation came back
            n_after = len(srv.sessions)
            for c in (*admitted[1:], late):
                await c.close()
            return refused, code, n_during, n_after, budget.reserved

    refused, code, n_during, n_after, reserved_after = arun(body(), 120)
    assert refused["code"] == "E_FULL" and refused["retry_after_s"] == 3
    assert "memory budget full" in refused["message"] and "retry after 3 s" in refused["message"]
    assert code == 1013 and n_during == 4 and n_after == 4
    assert reserved_after <= 4 * cost.total


def _jpeg(w: int, h: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.zeros((h, w, 3), np.uint8))
    assert ok
    return buf.tobytes()


def test_frames_above_max_frame_pixels_are_refused_before_decoding(gen_model, serve, arun) -> None:
    async def body():
        async with serve(max_frame_pixels=32 * 32) as srv:
            c = AsyncClient(srv.url, "generate", {"input": "video", "budget_ms": 5000}, reconnect=False)
            await c.connect()
            evs = []
            sizes = [(64, 64), (32, 32), (33, 32)]
            msgs = [
                P.encode_frame(P.FrameHeader(P.KIND_INPUT, "jpeg", i, i * 125_000), _jpeg(w, h))
                for i, (w, h) in enumerate(sizes)
            ]
            raw = P.FrameHeader(P.KIND_INPUT, "raw", 3, 400_000, -1, 40, 40)
            msgs.append(P.encode_frame(raw, bytes(40 * 40 * 3)))
            for m in msgs:  # one at a time: each answered (error or frame) before the next
                await c._send(m)
                while (ev := await c.recv(60)).kind not in ("error", "frame"):
                    pass
                evs.append(ev)
            await c.close()
            return evs

    evs = arun(body(), 120)
    errors = [e for e in evs if isinstance(e, ServerError)]
    frames = [e for e in evs if e.kind == "frame"]
    assert [e.code for e in errors] == ["E_TOO_LARGE"] * 3, errors
    assert "64x64" in errors[0].message and "33x32" in errors[1].message and "40x40" in errors[2].message
    assert [f.header.ref_seq for f in frames] == [1]  # the 32x32 frame was processed; the session lives


def test_long_questions_are_refused_in_tokens(vlm_adapter) -> None:
    eng = UnderstandEngine(vlm_adapter, {}, 1024)
    assert eng.max_question_tokens == 256
    eng.ask("q1", "what is moving?")
    words = " ".join(["circle"] * 400)
    assert len(vlm_adapter.user_ids(words)) > 256
    with pytest.raises(P.ProtocolError) as e:
        eng.ask("q2", words)
    assert e.value.code == "E_TOO_LARGE" and "at most 256" in e.value.message


def test_ask_text_longer_than_the_protocol_bound_is_a_bad_field() -> None:
    msg = json.dumps({"type": "ask", "id": "q", "text": "x" * (P.MAX_TEXT + 1)})
    with pytest.raises(P.ProtocolError) as e:
        P.decode_control(msg, max_bytes=64 * 2**10)
    assert e.value.code == "E_BAD_FIELD"


def test_serve_refuses_a_budget_that_holds_no_session(gen_model, tmp_path) -> None:
    gen_model.save(tmp_path / "gen")
    cmd = [sys.executable, "-m", "streamrt", "serve", "--gen-model", str(tmp_path / "gen"), "--port", "0"]
    r = subprocess.run([*cmd, "--max-memory", "64M"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert re.search(
        r"E_SERVER_CONFIG: --max-memory 64 MiB holds no session.*give at least \d+ MiB", r.stderr
    )


def test_serve_max_memory_plan_in_healthz(gen_model, tmp_path) -> None:
    gen_model.save(tmp_path / "gen")
    cmd = [sys.executable, "-m", "streamrt", "serve", "--gen-model", str(tmp_path / "gen"), "--port", "0"]
    proc = subprocess.Popen([*cmd, "--max-memory", "2G"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        port = re.search(r"ws://127\.0\.0\.1:(\d+)/ws", line)
        assert port, line
        with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/healthz", timeout=10) as r:
            mem = json.loads(r.read())["memory"]
    finally:
        proc.kill()
        proc.wait(10)
    gen = mem["per_session_mib"]["generate"]
    assert mem["limit_mib"] == 2048 and 0 < mem["baseline_mib"] < 2048
    assert gen["kv_cache"] > 0 and gen["overhead"] >= 0
    assert gen["capacity"] == mem["available_bytes"] // gen["bytes"]


def test_client_error_for_refused_hello_names_the_budget(gen_model, arun) -> None:
    budget = MemoryBudget(10 * MiB, 0, {"generate": SessionCost(9 * MiB, 0)}, headroom=0.0)

    async def body():
        async with Server(ServerConfig(port=0), {"generate": generate_factory(gen_model)}, budget) as srv:
            first = AsyncClient(srv.url, "generate", reconnect=False)
            await first.connect()
            try:
                await AsyncClient(srv.url, "generate", reconnect=False, retries=0).connect()
                err = None
            except ClientError as e:
                err = e
            await first.close()
            return err

    err = arun(body(), 120)
    assert err is not None and err.code == "E_FULL" and "memory budget full" in str(err)
