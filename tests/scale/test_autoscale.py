"""The autoscaling policy (pure function) and its Serve adapter, without Ray.

Oracles: replica counts worked out by hand from the rules in the policy's docstring (slot-use
thresholds, miss-rate thresholds, cooldowns, the quiet period), and the bounds [min, max]."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from streamrt.scale import ScaleError
from streamrt.scale.autoscale import (
    AutoscaleConfig,
    PolicyState,
    ReplicaLoad,
    ServePolicy,
    desired_replicas,
    loads_from_metrics,
)

CFG = AutoscaleConfig(
    min_replicas=1,
    max_replicas=4,
    scale_up_at=0.75,
    scale_down_at=0.5,
    miss_up=0.1,
    miss_down=0.02,
    up_cooldown_s=5,
    down_cooldown_s=30,
    down_after_s=10,
)


def loads(*used: float, slots: int = 4, miss: float = 0.0) -> list[ReplicaLoad]:
    return [ReplicaLoad(u, slots, miss) for u in used]


def test_scales_up_on_slot_use_to_the_smallest_count_below_the_threshold() -> None:
    s0 = PolicyState()
    assert desired_replicas(loads(2), 1, CFG, s0, 100.0)[0] == 1  # 2/4 = 50% < 75%
    n, s = desired_replicas(loads(3), 1, CFG, s0, 100.0)  # 3/4 = 75%: up to 2 (3/8 = 37.5%)
    assert (n, s.last_change) == (2, 100.0)
    assert desired_replicas(loads(4, 4), 2, CFG, s0, 100.0)[0] == 3  # 8 sessions: floor(8/3)+1 = 3
    assert desired_replicas(loads(4, 4, 4), 3, CFG, s0, 100.0)[0] == 4  # 12/3 + 1 = 5, capped at max 4
    assert desired_replicas(loads(4, 4, 4, 4), 4, CFG, s0, 100.0)[0] == 4  # at max: stays


def test_scales_up_by_one_on_deadline_misses_even_with_free_slots() -> None:
    n, _ = desired_replicas(loads(1, 1, miss=0.2), 2, CFG, PolicyState(), 50.0)
    assert n == 3
    # the miss rate is weighted by sessions: an idle replica's rate does not count
    quiet_miss = [ReplicaLoad(2, 4, 0.0), ReplicaLoad(0, 4, 0.9)]
    assert desired_replicas(quiet_miss, 2, CFG, PolicyState(), 50.0)[0] == 2


def test_up_cooldown() -> None:
    s = PolicyState(last_change=100.0)
    assert desired_replicas(loads(3), 1, CFG, s, 104.0)[0] == 1  # 4 s < 5 s since the last change
    assert desired_replicas(loads(3), 1, CFG, s, 105.0)[0] == 2


def test_scales_down_by_one_after_the_quiet_period_and_cooldown_with_hysteresis() -> None:
    s = PolicyState()
    # 2 sessions on 3 replicas of 4 slots: on 2 replicas they would use 25% <= 50%: quiet
    n, s = desired_replicas(loads(1, 1, 0), 3, CFG, s, 0.0)
    assert (n, s.quiet_since) == (3, 0.0)
    n, s = desired_replicas(loads(1, 1, 0), 3, CFG, s, 9.9)
    assert n == 3  # quiet for 9.9 s < 10 s
    n, s = desired_replicas(loads(1, 1, 0), 3, CFG, s, 10.0)
    assert (n, s) == (2, PolicyState(10.0, None))  # one replica at a time
    n, s = desired_replicas(loads(1, 1), 2, CFG, s, 25.0)  # quiet again, but the last change is 15 s old
    assert n == 2 and s.quiet_since == 25.0
    assert desired_replicas(loads(1, 1), 2, CFG, s, 40.0)[0] == 1  # 30 s cooldown and 15 s quiet
    # hysteresis band: 3 sessions on 2 replicas would use 75% of 1 replica > 50%: no scale-down,
    # and 3/8 = 37.5% < 75%: no scale-up either
    n, s2 = desired_replicas(loads(2, 1), 2, CFG, PolicyState(), 1000.0)
    assert n == 2 and s2.quiet_since is None


def test_quiet_period_restarts_when_load_returns_and_misses_block_scale_down() -> None:
    n, s = desired_replicas(loads(1, 0), 2, CFG, PolicyState(), 0.0)
    assert s.quiet_since == 0.0
    n, s = desired_replicas(loads(2, 1), 2, CFG, s, 5.0)  # load back: the quiet period restarts
    assert s.quiet_since is None
    n, s = desired_replicas(loads(1, 0), 2, CFG, s, 6.0)
    assert n == 2 and s.quiet_since == 6.0
    assert desired_replicas(loads(1, 0), 2, CFG, s, 15.9)[0] == 2
    assert desired_replicas(loads(1, 0), 2, CFG, s, 16.0)[0] == 1
    missing = [ReplicaLoad(1, 4, 0.05), ReplicaLoad(0, 4, 0.0)]  # 5% misses > miss_down 2%
    assert desired_replicas(missing, 2, CFG, PolicyState(quiet_since=0.0), 100.0)[0] == 2


def test_bounds_and_no_metrics() -> None:
    cfg = AutoscaleConfig(min_replicas=2, max_replicas=3)
    assert desired_replicas([], 1, cfg, PolicyState(), 0.0)[0] == 2  # below min: min
    assert desired_replicas([], 5, cfg, PolicyState(), 0.0)[0] == 3  # above max: max
    assert desired_replicas(loads(0, 0), 2, cfg, PolicyState(quiet_since=-1e9), 0.0)[0] == 2  # at min
    with pytest.raises(ScaleError) as e:
        AutoscaleConfig(scale_up_at=0.5, scale_down_at=0.5)
    assert e.value.code == "E_SCALE_CONFIG"
    with pytest.raises(ScaleError):
        AutoscaleConfig(min_replicas=3, max_replicas=2)


def test_serve_adapter_reads_serves_aggregated_metrics_and_keeps_its_state() -> None:
    policy = ServePolicy(min_replicas=1, max_replicas=3, up_cooldown_s=0, down_cooldown_s=0, down_after_s=1)
    metrics = {
        "slots_used": {"r1": 3.0, "r2": 0.0, "r3": 1.0},
        "slots_total": {"r1": 4.0, "r2": 4.0},  # r3 has not reported everything yet: ignored
        "deadline_miss_rate": {"r1": 0.0, "r2": 0.0, "r3": 0.5},
    }
    assert loads_from_metrics(metrics) == [ReplicaLoad(3, 4, 0.0), ReplicaLoad(0, 4, 0.0)]
    ctx = SimpleNamespace(
        aggregated_metrics=metrics, target_num_replicas=2, current_time=10.0, policy_state={}
    )
    n, state = policy(ctx)
    assert n == 2 and state == {"streamrt_last_change": -math.inf, "streamrt_quiet_since": None}
    ctx.aggregated_metrics = {**metrics, "slots_used": {"r1": 1.0, "r2": 0.0}}  # 1 session: quiet
    n, state = policy(ctx)
    assert n == 2 and state["streamrt_quiet_since"] == 10.0
    ctx.policy_state, ctx.current_time = state, 11.0
    n, state = policy(ctx)
    assert n == 1 and state["streamrt_last_change"] == 11.0


@pytest.mark.parametrize("value", ["3:1", "x", "2"])
def test_serve_ray_refuses_a_bad_autoscale_range_before_starting_anything(value, capsys) -> None:
    import argparse

    from streamrt.commands import serve
    from streamrt.scale.cli import serve_ray_from_args

    p = argparse.ArgumentParser()
    serve.add_arguments(p)
    args = p.parse_args(["--ray", "--autoscale", value])
    assert serve_ray_from_args(args) == 2
    assert "E_SCALE_CONFIG" in capsys.readouterr().err
