"""Autoscaling of the engine replicas on session slots in use and the deadline-miss rate.

`desired_replicas(loads, current, cfg, state, now)` is the policy: a pure function of each replica's
`ReplicaLoad` (slots used / total, deadline-miss rate of its outputs over the last window), the current
replica count, the config and the policy's own small state (when it last changed the count, since when
the cluster has been quiet). It answers the replica count wanted, within [min_replicas, max_replicas]:

- up when the slots in use reach `scale_up_at` of all slots (to the smallest count below that), or the
  miss rate reaches `miss_up` (one more replica; sessions are sticky, so the new replica takes the new
  sessions), at most once per `up_cooldown_s`;
- down by one replica when the sessions would fill at most `scale_down_at` of the slots of one replica
  fewer and the miss rate is at most `miss_down`, continuously for `down_after_s`, and the last change
  is `down_cooldown_s` old. `scale_down_at < scale_up_at` is the hysteresis band (no flapping).

Serve applies it through `ServePolicy`, a custom autoscaling policy of Ray Serve 2.60
(`AutoscalingConfig(policy=AutoscalingPolicy(policy_function=ServePolicy, policy_kwargs=...))`): each
replica reports `record_autoscaling_stats()` -> {"slots_used", "slots_total", "deadline_miss_rate"},
Serve averages them per replica over `look_back_s` and calls the policy in its controller; when it
lowers the count, Serve stops a replica gracefully, which drains it (`live.EngineReplica.__del__`).
Owns the policy and its config. Does not import Ray (Serve passes its context object in).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

from streamrt.scale.errors import ScaleError

log = logging.getLogger("ray.serve")  # the Serve controller's log

METRICS = ("slots_used", "slots_total", "deadline_miss_rate")
"""The custom autoscaling metrics each replica reports (`ReplicaLoad` as a dict)."""


@dataclass(frozen=True, slots=True)
class ReplicaLoad:
    """One replica's load over the last window."""

    used: float
    """Sessions open (a window average under Serve, so possibly fractional)."""
    slots: float
    """Session slots (the server's max_sessions)."""
    miss_rate: float
    """Share of outputs past their deadline in the window (0 without outputs)."""

    def to_metrics(self) -> dict[str, float]:
        return dict(zip(METRICS, (float(self.used), float(self.slots), float(self.miss_rate)), strict=True))


@dataclass(frozen=True, slots=True)
class AutoscaleConfig:
    """When to add and remove engine replicas (see module docstring)."""

    min_replicas: int = 1
    max_replicas: int = 4
    scale_up_at: float = 0.75
    """Slot use (used / all slots) at or above which replicas are added."""
    scale_down_at: float = 0.5
    """A replica is removed only if the sessions would use at most this share of one replica fewer."""
    miss_up: float = 0.1
    """Deadline-miss rate at or above which one replica is added."""
    miss_down: float = 0.02
    """A replica is removed only when the miss rate is at most this."""
    up_cooldown_s: float = 5.0
    """Minimum time since the last change before adding replicas."""
    down_cooldown_s: float = 30.0
    """Minimum time since the last change before removing one."""
    down_after_s: float = 10.0
    """The scale-down condition must hold this long."""
    metrics_interval_s: float = 0.5
    """How often replicas push their load to Serve's controller."""
    look_back_s: float = 2.0
    """Serve averages each replica's load over this window."""

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ScaleError("E_SCALE_CONFIG", f"need 1 <= min_replicas <= max_replicas, got {self}")
        if not 0 < self.scale_down_at < self.scale_up_at or not 0 <= self.miss_down < self.miss_up:
            raise ScaleError(
                "E_SCALE_CONFIG", "need 0 < scale_down_at < scale_up_at and 0 <= miss_down < miss_up"
            )


@dataclass(frozen=True, slots=True)
class PolicyState:
    last_change: float = -math.inf
    """Clock time of the last change of the replica count the policy asked for."""
    quiet_since: float | None = None
    """Since when the scale-down condition has held (None: it does not hold now)."""


def desired_replicas(
    loads: Sequence[ReplicaLoad], current: int, cfg: AutoscaleConfig, state: PolicyState, now: float
) -> tuple[int, PolicyState]:
    """The replica count wanted and the policy's next state (pure; see module docstring)."""
    bounded = min(max(current, cfg.min_replicas), cfg.max_replicas)
    if not loads or current < 1:
        return bounded, state
    used = sum(r.used for r in loads)
    per = sum(r.slots for r in loads) / len(loads)  # slots per replica
    miss = sum(r.miss_rate * r.used for r in loads) / used if used > 0 else 0.0  # weighted by sessions
    since_change = now - state.last_change
    want = bounded
    if used >= cfg.scale_up_at * per * current or miss >= cfg.miss_up:
        by_slots = math.floor(used / (cfg.scale_up_at * per)) + 1  # smallest count below scale_up_at
        want = max(current + 1, by_slots) if miss >= cfg.miss_up else by_slots
        want = min(max(want, bounded), cfg.max_replicas)
        if want > current and since_change >= cfg.up_cooldown_s:
            return want, PolicyState(now, None)
        return bounded, replace(state, quiet_since=None)
    quiet = current > cfg.min_replicas and used <= cfg.scale_down_at * per * (current - 1)
    quiet = quiet and miss <= cfg.miss_down
    if not quiet:
        return bounded, replace(state, quiet_since=None)
    quiet_since = now if state.quiet_since is None else state.quiet_since
    if now - quiet_since >= cfg.down_after_s and since_change >= cfg.down_cooldown_s:
        return max(current - 1, cfg.min_replicas), PolicyState(now, None)
    return bounded, PolicyState(state.last_change, quiet_since)


def loads_from_metrics(metrics: Mapping[str, Mapping[object, float]]) -> list[ReplicaLoad]:
    """Serve's aggregated custom metrics ({metric: {replica id: value}}) -> one load per replica that
    reported all three."""
    ids = set.intersection(*(set(metrics.get(m, {})) for m in METRICS))
    return [
        ReplicaLoad(*(float(metrics[m][rid]) for m in METRICS))
        for rid in sorted(ids, key=str)  # type: ignore[arg-type]
    ]


class ServePolicy:
    """Ray Serve's custom autoscaling policy (a class: Serve builds it once with `policy_kwargs`, the
    fields of an AutoscaleConfig, and calls it with its AutoscalingContext on every control tick)."""

    def __init__(self, **config: float) -> None:
        self.cfg = AutoscaleConfig(**config)  # type: ignore[arg-type]

    def __call__(self, ctx) -> tuple[int, dict[str, object]]:
        saved = ctx.policy_state or {}
        state = PolicyState(saved.get("streamrt_last_change", -math.inf), saved.get("streamrt_quiet_since"))
        loads = loads_from_metrics(ctx.aggregated_metrics or {})
        now = ctx.current_time if ctx.current_time is not None else time.time()
        want, state = desired_replicas(loads, ctx.target_num_replicas, self.cfg, state, now)
        if want != ctx.target_num_replicas:
            log.info("replicas %d -> %d; loads %s", ctx.target_num_replicas, want, loads)
        return want, {"streamrt_last_change": state.last_change, "streamrt_quiet_since": state.quiet_since}


def serve_autoscaling_config(cfg: AutoscaleConfig, initial: int) -> dict[str, object]:
    """The deployment's `autoscaling_config`: our policy does the cooldowns, so Serve's delays are 0."""
    from ray.serve.config import AutoscalingPolicy

    kwargs = {k: v for k, v in asdict(cfg).items() if k not in ("metrics_interval_s", "look_back_s")}
    return {
        "min_replicas": cfg.min_replicas,
        "max_replicas": cfg.max_replicas,
        "initial_replicas": min(max(initial, cfg.min_replicas), cfg.max_replicas),
        "metrics_interval_s": cfg.metrics_interval_s,
        "look_back_period_s": cfg.look_back_s,
        "upscale_delay_s": 0.0,
        "downscale_delay_s": 0.0,
        "policy": AutoscalingPolicy(policy_function=ServePolicy, policy_kwargs=kwargs),
    }
