"""The benchmark harness: interleaving, pair-by-pair ratios, extra figures, JSON, registry."""

from __future__ import annotations

import json
import time

import pytest

from streamrt.bench.harness import Bench, format_table, registry, write_json


def test_cases_interleave_and_ratios_are_pairwise():
    order: list[str] = []

    def slow():
        order.append("slow")
        time.sleep(0.02)

    def fast():
        order.append("fast")
        time.sleep(0.005)
        return {"ttff_s": 0.001}

    b = Bench("t", quick=True)
    b.case("slow", slow, work=10, unit="frames", baseline=True)
    b.case("fast", fast, work=10, unit="frames")
    res = b.run(repeats=3, warmup=1)
    assert order == ["slow", "fast"] * 4  # warm-up, then A B A B A B
    slow_r, fast_r = res.cases
    assert slow_r.speedup_vs_baseline.median == pytest.approx(1.0)
    assert fast_r.speedup_vs_baseline.median > 1.5  # 20 ms vs 5 ms sleeps
    assert fast_r.throughput.median > slow_r.throughput.median
    assert fast_r.extra["ttff_s"].median == pytest.approx(0.001)
    assert res.machine["cores"] >= 1 and "torch" in res.machine["versions"]
    assert "fast" in format_table(res)


def test_declaration_errors():
    b = Bench("t", quick=True)
    b.case("a", lambda: None, baseline=True)
    with pytest.raises(ValueError, match="duplicate"):
        b.case("a", lambda: None)
    with pytest.raises(ValueError, match="two baselines"):
        b.case("b", lambda: None, baseline=True)
    with pytest.raises(ValueError, match="no cases"):
        Bench("empty", quick=True).run(repeats=1)


def test_json_round_trip(tmp_path):
    b = Bench("t", quick=True)
    b.config = {"size": "8x8"}
    b.case("only", lambda: None)
    res = b.run(repeats=2, warmup=0)
    out = tmp_path / "r.json"
    write_json(res, out)
    data = json.loads(out.read_text())
    assert data["benchmark"] == "t" and data["config"] == {"size": "8x8"}
    assert data["cases"][0]["speedup_vs_baseline"] is None
    assert len(data["cases"][0]["seconds"]) == 3


def test_registry_discovers_modules():
    reg = registry()
    assert all(r.name == k and r.help for k, r in reg.items())
