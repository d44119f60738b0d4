"""`streamrt soak` end to end, and its trend test.

The soak of the issue's CI variant (default suite, three minutes) runs the real command: a real
`streamrt serve` subprocess over loopback with both modes and 4 simulated users, with high rates of
malformed messages, abrupt disconnects and slow readers so every behaviour occurs. Checked from the
JSON report: every verdict check held (server up, no E_INTERNAL, sessions closed, fds back to the
baseline, no upward trend); every behaviour happened; every error code a client received is one the
protocol promises for a malformed message it sent (or a known drop-related code), and no more of a
code came back than were provoked (E_BAD_IMAGE may be fewer: an undecoded frame dropped from the
buffer never gets decoded). The 60-minute run is `streamrt soak --minutes 60`, reported in
docs/reliability.md.

The trend test has its own oracle: lines of known slope with spikes on top.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from streamrt.soak import MALFORMED, theil_sen, trend

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run_soak(tmp_path, minutes: float, sessions: int) -> dict:
    out = tmp_path / "soak.json"
    cmd = [sys.executable, "-m", "streamrt", "soak", "--minutes", str(minutes), "--sessions", str(sessions)]
    cmd += ["--window-s", "10", "--sample-s", "1", "--malformed-rate", "0.15", "--abort-rate", "0.5"]
    cmd += ["--slow-rate", "0.5", "--json", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=900)
    assert out.exists(), r.stderr[-3000:]
    report = json.loads(out.read_text())
    assert r.returncode == (0 if report["ok"] else 1)
    return report


def check(report: dict, minutes: float) -> None:
    assert report["ok"], json.dumps(report["checks"])
    assert report["minutes_soaked"] >= 0.9 * minutes
    load = report["load"]
    assert set(load["sessions_opened"]) == {"understand", "generate"}
    assert load["abrupt_disconnects"] >= 1 and sum(load["graceful_ends"].values()) >= 1
    assert load["slow_reader_sessions"] >= 1 and load["asks"] + load["prompt_switches"] >= 1
    sent = load["malformed_sent_by_expected_code"]
    got = report["errors_by_code"]["clients_received"]
    assert sum(sent.values()) >= 3
    assert set(got) <= set(sent) | {"E_UNSUPPORTED", "E_TOO_LARGE"}, got
    for code, n in got.items():
        assert n <= sent.get(code, 0) or code in ("E_UNSUPPORTED", "E_TOO_LARGE"), (code, n, sent)
    assert "E_INTERNAL" not in report["errors_by_code"]["server_sent"]
    assert report["latency_ms"]["outputs"] > 0 and len(report["samples"]) >= 10
    assert all(s["fds"] > 0 and s["rss_mib"] > 0 for s in report["samples"])


def test_three_minute_soak(tmp_path):
    check(run_soak(tmp_path, 3.0, 4), 3.0)


def test_malformed_kinds_cover_codes():
    assert set(MALFORMED.values()) >= {
        "E_BAD_JSON",
        "E_BAD_TYPE",
        "E_BAD_FIELD",
        "E_BAD_HEADER",
        "E_TRUNCATED",
    }


def test_trend_finds_growth_and_ignores_spikes():
    rng = np.random.default_rng(0)
    t = np.arange(0, 600, 2.0)
    flat = 500 + rng.normal(0, 2, t.size)
    flat[::17] += 80  # allocator spikes / GC pauses
    leak = flat + t * (40 / 600)  # +40 over the span
    assert abs(theil_sen(list(t), list(flat))) < 0.005
    assert abs(theil_sen(list(t), list(leak)) - 40 / 600) < 0.005
    assert trend("rss", list(t), list(flat), 32).ok
    bad = trend("rss", list(t), list(leak), 32)
    assert not bad.ok and 35 < bad.rise < 45
    assert trend("rss", [1.0, 2.0], [0.0, 100.0], 1).ok  # too few points to judge
