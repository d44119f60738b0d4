"""`streamrt bench vlm-stream` is registered; its quick run (slow test) reports every figure, with the
no-drop run as baseline, the agreement figures on the token-drop case and on its open-loop twin."""

from __future__ import annotations

import math

import pytest

from streamrt.bench.harness import registry, run_benchmark


def test_registered():
    assert "vlm-stream" in registry()


@pytest.mark.slow
def test_quick_run_reports_every_figure():
    res = run_benchmark("vlm-stream", quick=True, repeats=1, warmup=0)
    base, drop, open_loop = res.cases
    assert base.baseline and base.name == "no drop"
    for c in (base, drop):
        for k in (
            "realtime_factor",
            "chunk_p99_first_ms",
            "chunk_p99_last_ms",
            "p99_last_over_first",
            "rss_last_window_mib",
        ):
            assert math.isfinite(c.extra[k].median)
    assert base.extra["tokens_dropped_share"].median == 0.0
    assert 0.0 < drop.extra["tokens_dropped_share"].median < 1.0
    assert 0.0 <= drop.extra["chunks_identical_share"].median <= 1.0
    assert 0.0 <= drop.extra["decisions_agree_share"].median <= 1.0
    assert drop.extra["reference_events"].median >= 0.0
    assert "calibrated default" in str(res.config["response_policy"])
    assert open_loop.name == "token drop 0.9, open loop"
    assert 0.0 <= open_loop.extra["events_unchanged_share"].median <= 1.0
    assert open_loop.extra["reference_events"].median > 0
