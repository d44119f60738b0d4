"""Live sessions on Ray Serve: engine replicas with session slots, a slot registry, the session gateway.

    client ── POST /v1/sessions ──► Serve proxy ─► Gateway ─► SlotRegistry (named Ray actor)
       │                                                        ▲ heartbeats: open tickets
       └──── websocket ws://replica:port/ws?ticket=... ────► EngineReplica (x R): a streamrt server

- `EngineReplica` (Serve app "streamrt-engines", no HTTP route): one engine process (one GPU, or a CPU
  worker) running the plain streamrt server (`replica.ReplicaHost`) with `slots` session slots; it
  registers its direct websocket URL and sends heartbeats with its open connections. Sessions are
  sticky by construction: the websocket, and the KV cache behind it, stay on that replica.
- `SlotRegistry` (actor "streamrt-slots", namespace "streamrt"): a `slots.SlotTable`; grants a slot
  on the replica with the most free ones and mints the one-time ticket; drops replicas whose heartbeat
  stopped (a killed replica's sessions see their connection close; new sessions go elsewhere).
- `Gateway` (Serve app "streamrt", route "/"): `POST /v1/sessions` (grant, or 503 + Retry-After when
  full), `GET /v1/replicas`, `GET /healthz`, `GET /metrics` (each replica's Prometheus metrics with a
  `replica` label, plus the slot gauges). Media never passes through Serve's proxy.

`serve_live(cfg)` starts all three on the current (or a new local) Ray cluster; `stop_live()` removes
them. Ray is imported inside functions only. Owns the deployments' wiring; the engines are the
server's (`streamrt.commands.serve.build_factories`), the slot logic is `slots`'.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from streamrt.scale.autoscale import AutoscaleConfig, serve_autoscaling_config
from streamrt.scale.errors import ScaleError, import_ray
from streamrt.scale.slots import SlotTable
from streamrt.scale.tickets import hello_token, new_secret

log = logging.getLogger(__name__)

NAMESPACE = "streamrt"
REGISTRY = "streamrt-slots"
ENGINES_APP = "streamrt-engines"
GATEWAY_APP = "streamrt"


@dataclass(frozen=True, slots=True)
class LiveConfig:
    """A live cluster: replicas, their slots and engines, the gateway's address."""

    replicas: int = 2
    """Engine replicas (Serve replicas of EngineReplica)."""
    slots: int = 4
    """Concurrent sessions per replica (the server's max_sessions)."""
    modes: tuple[str, ...] = ("generate",)
    gen_model: Path | None = None
    """Generator checkpoint (None: the built-in one)."""
    vlm_model: str = "builtin"
    cpus_per_replica: float = 1.0
    """Ray CPUs each replica reserves."""
    gpus_per_replica: float = 0.0
    threads: int = 1
    """torch threads in each replica."""
    replica_host: str = "127.0.0.1"
    """Address the replicas' servers bind; "auto": the node's IP (a cluster of several machines; the
    server then needs its hello token, which the grant carries)."""
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    """Serve's HTTP proxy (the gateway's address)."""
    token: str | None = None
    """Cluster token: POST /v1/sessions needs `Authorization: Bearer TOKEN` (None: open, loopback only)."""
    budget_ms: float = 250.0
    idle_timeout_s: float = 120.0
    ticket_ttl_s: float = 10.0
    heartbeat_s: float = 0.25
    dead_after_s: float = 2.0
    """A replica silent this long is dropped with its slots."""
    retry_after_s: int = 2
    """The retry hint of a full cluster and of a draining replica's `end`."""
    autoscale: AutoscaleConfig | None = None
    """Autoscale the replicas on slots in use and deadline misses (None: a fixed `replicas`)."""
    secret: str = field(default_factory=new_secret, repr=False)
    """Signs the tickets; shared by the registry and the replicas (never sent to clients)."""

    def __post_init__(self) -> None:
        if self.replicas < 1 or self.slots < 1 or not self.modes:
            raise ScaleError("E_SCALE_CONFIG", "need replicas >= 1, slots >= 1 and at least one mode")
        if self.http_host not in ("127.0.0.1", "localhost", "::1") and not self.token:
            raise ScaleError(
                "E_SCALE_CONFIG", f"the gateway on {self.http_host} is reachable from outside: set a token"
            )


class SlotRegistry:
    """The Ray actor around a SlotTable (methods run one at a time)."""

    def __init__(self, secret: str, ticket_ttl_s: float, dead_after_s: float) -> None:
        self.table = SlotTable(secret, ticket_ttl_s=ticket_ttl_s, dead_after_s=dead_after_s)

    def register(self, replica: str, url: str, slots: int, modes: list[str], pid: int, node: str) -> None:
        self.table.register(replica, url, slots, modes, pid, node)

    def heartbeat(self, replica: str, open_nonces: list[str]) -> bool:
        return self.table.heartbeat(replica, open_nonces)

    def unregister(self, replica: str) -> None:
        self.table.unregister(replica)

    def drain(self, replica: str) -> bool:
        return self.table.drain(replica)

    def reserve(self, mode: str, avoid: list[str]) -> dict[str, object] | None:
        g = self.table.reserve(mode, avoid)
        return None if g is None else g.to_json()

    def snapshot(self) -> dict[str, object]:
        return {
            "replicas": self.table.snapshot(),
            "refused": self.table.refused,
            "dropped": self.table.dropped_replicas,
        }


def registry_handle(cfg: LiveConfig | None = None):
    """The registry actor (created from `cfg` when it does not exist yet)."""
    ray = import_ray()
    if cfg is None:
        return ray.get_actor(REGISTRY, namespace=NAMESPACE)
    actor = ray.remote(SlotRegistry).options(
        name=REGISTRY, namespace=NAMESPACE, get_if_exists=True, lifetime="detached", num_cpus=0
    )
    return actor.remote(cfg.secret, cfg.ticket_ttl_s, cfg.dead_after_s)


class EngineReplica:
    """A Serve replica: one streamrt server with `cfg.slots` slots (see module docstring)."""

    def __init__(self, cfg: LiveConfig) -> None:
        import ray
        import torch

        from streamrt.commands.serve import build_factories
        from streamrt.scale.replica import ReplicaHost
        from streamrt.server import ServerConfig
        from streamrt.server.security import is_loopback

        torch.set_num_threads(cfg.threads)
        self.id = f"{uuid.uuid4().hex[:10]}-{os.getpid()}"
        host = ray.util.get_node_ip_address() if cfg.replica_host == "auto" else cfg.replica_host
        server_cfg = ServerConfig(
            host=host,
            port=0,
            token=None if is_loopback(host) else hello_token(cfg.secret, self.id),
            max_sessions=cfg.slots,
            budget_ms=cfg.budget_ms,
            idle_timeout_s=cfg.idle_timeout_s,
            retry_after_s=cfg.retry_after_s,
        )
        registry = registry_handle()
        node = ray.get_runtime_context().get_node_id()
        modes = list(cfg.modes)
        self.host = ReplicaHost(
            server_cfg,
            build_factories(modes, cfg.gen_model, cfg.vlm_model),
            replica=self.id,
            secret=cfg.secret,
            register=lambda url: ray.get(
                registry.register.remote(self.id, url, cfg.slots, modes, os.getpid(), node)
            ),
            report=lambda nonces: ray.get(registry.heartbeat.remote(self.id, nonces)),
            heartbeat_s=cfg.heartbeat_s,
        )
        self._registry = registry
        self.retry_after_s = cfg.retry_after_s

    def info(self) -> dict[str, object]:
        return {"replica": self.id, "url": self.host.server.url, "sessions": len(self.host.server.sessions)}

    def check_health(self) -> None:
        if self.host is None or not self.host.alive():
            raise RuntimeError(f"replica {self.id}: server thread or heartbeat stopped")

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's custom autoscaling metrics (see `autoscale`): slots used/total, deadline-miss rate."""
        return {} if self.host is None else self.host.load().to_metrics()  # None: drained

    def __del__(self) -> None:
        """Serve's graceful shutdown of a replica (scale-down, redeploy, delete): drain it. The registry
        stops granting its slots first, then every session gets `end{reason:"draining",
        retry_after_s}` (a new session lands on another replica), then it leaves the registry."""
        import ray

        host = getattr(self, "host", None)
        if host is None:
            return
        self.host = None  # once: Serve calls this, and Python may again when the object is collected
        try:
            ray.get(self._registry.drain.remote(self.id), timeout=5)
        except Exception:  # noqa: BLE001 - registry gone (cluster stopping): drain the sessions anyway
            log.warning("replica %s: could not mark it draining in the registry", self.id)
        host.stop("draining", self.retry_after_s)
        self._registry.unregister.remote(self.id)


class Gateway:
    """The HTTP ingress (see module docstring)."""

    def __init__(self, cfg: LiveConfig) -> None:
        self.cfg = cfg
        self.registry = registry_handle()
        self.requests = 0
        self.body_bytes = 0
        """Request bodies this gateway replica received (the bench checks no media passes here)."""

    async def __call__(self, request):
        from starlette.responses import JSONResponse, PlainTextResponse

        path, method = request.url.path.rstrip("/") or "/", request.method
        self.requests += 1
        size = len(await request.body())  # read first: `+=` across an await would lose concurrent updates
        self.body_bytes += size
        if path == "/v1/sessions" and method == "POST":
            if self.cfg.token and request.headers.get("authorization") != f"Bearer {self.cfg.token}":
                return JSONResponse({"code": "E_AUTH", "message": "missing or wrong cluster token"}, 401)
            try:
                body = json.loads(await request.body() or b"{}")
                mode = str(body.get("mode", self.cfg.modes[0]))
                avoid = [str(a) for a in body.get("avoid", [])]
            except (ValueError, AttributeError, TypeError):
                return JSONResponse(
                    {"code": "E_BAD_JSON", "message": 'body: {"mode": ..., "avoid": [...]}'}, 400
                )
            if mode not in self.cfg.modes:
                msg = f"mode {mode!r} not served; modes: {', '.join(self.cfg.modes)}"
                return JSONResponse({"code": "E_MODE", "message": msg}, 400)
            grant = await self.registry.reserve.remote(mode, avoid)
            if grant is None:
                retry = self.cfg.retry_after_s
                return JSONResponse(
                    {"code": "E_FULL", "message": "every replica's slots are in use", "retry_after_s": retry},
                    503,
                    headers={"Retry-After": str(retry)},
                )
            return JSONResponse(grant)
        if method != "GET":
            return JSONResponse({"code": "E_METHOD", "message": f"{method} {path}"}, 405)
        snap = await self.registry.snapshot.remote()
        if path == "/v1/replicas":
            return JSONResponse(snap)
        if path == "/healthz":
            reps = snap["replicas"]
            return JSONResponse(
                {
                    "status": "ok" if reps else "no replicas",
                    "replicas": len(reps),
                    "slots": sum(r["slots"] for r in reps),
                    "open": sum(r["open"] for r in reps),
                    "draining": sum(bool(r["draining"]) for r in reps),
                    "modes": list(self.cfg.modes),
                    "gateway": {"pid": os.getpid(), "requests": self.requests, "body_bytes": self.body_bytes},
                }
            )
        if path == "/metrics":
            return PlainTextResponse(
                await _cluster_metrics(snap["replicas"]), media_type="text/plain; version=0.0.4"
            )
        return JSONResponse({"code": "E_NOT_FOUND", "message": f"{path}: try POST /v1/sessions"}, 404)


async def _cluster_metrics(replicas: list[dict]) -> str:
    """Every replica's /metrics with a `replica` label added to each sample, plus slot gauges."""
    import asyncio

    def fetch(url: str) -> str:
        http = url.replace("ws://", "http://", 1).rsplit("/ws", 1)[0] + "/metrics"
        try:
            with urllib.request.urlopen(http, timeout=2) as r:
                return r.read().decode()
        except OSError:
            return ""

    texts = await asyncio.gather(*(asyncio.to_thread(fetch, r["url"]) for r in replicas))
    out = [
        "# HELP streamrt_cluster_slots Session slots per replica.",
        "# TYPE streamrt_cluster_slots gauge",
        *(f'streamrt_cluster_slots{{replica="{r["replica"]}"}} {r["slots"]}' for r in replicas),
        "# HELP streamrt_cluster_slots_open Open sessions per replica.",
        "# TYPE streamrt_cluster_slots_open gauge",
        *(f'streamrt_cluster_slots_open{{replica="{r["replica"]}"}} {r["open"]}' for r in replicas),
    ]
    seen_meta: set[str] = set()
    for r, text in zip(replicas, texts, strict=True):
        for line in text.splitlines():
            if line.startswith("#"):
                if line not in seen_meta:  # HELP/TYPE once for all replicas
                    seen_meta.add(line)
                    out.append(line)
            elif line.strip():
                name, _, rest = line.partition(" ")
                label = f'replica="{r["replica"]}"'
                name = f"{name[:-1]},{label}}}" if name.endswith("}") else f"{name}{{{label}}}"
                out.append(f"{name} {rest}")
    return "\n".join(out) + "\n"


@dataclass(frozen=True, slots=True)
class LiveCluster:
    """What `serve_live` started: the gateway's address (give it to `connect.open_session`)."""

    url: str
    replicas: int


def serve_live(cfg: LiveConfig, *, address: str | None = None, timeout_s: float = 180.0) -> LiveCluster:
    """Start the registry, the engine replicas and the gateway; return once every replica registered.
    Joins the Ray cluster at `address` when Ray is not initialised yet (None: a local one)."""
    ray = import_ray()
    from ray import serve

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False)
    serve.start(http_options={"host": cfg.http_host, "port": cfg.http_port})
    registry = registry_handle(cfg)
    scaling: dict[str, object] = (
        {"num_replicas": cfg.replicas}
        if cfg.autoscale is None
        else {"autoscaling_config": serve_autoscaling_config(cfg.autoscale, cfg.replicas)}
    )
    engines = serve.deployment(
        EngineReplica,
        name="EngineReplica",
        ray_actor_options={"num_cpus": cfg.cpus_per_replica, "num_gpus": cfg.gpus_per_replica},
        health_check_period_s=2,
        graceful_shutdown_timeout_s=10,
        **scaling,
    )
    serve.run(engines.bind(cfg), name=ENGINES_APP, route_prefix=None)
    gateway = serve.deployment(
        Gateway, name="Gateway", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64
    )
    serve.run(gateway.bind(cfg), name=GATEWAY_APP, route_prefix="/")
    deadline = time.monotonic() + timeout_s
    initial = cfg.replicas
    if cfg.autoscale is not None:
        initial = min(max(initial, cfg.autoscale.min_replicas), cfg.autoscale.max_replicas)
    while len(ray.get(registry.snapshot.remote())["replicas"]) < initial:
        if time.monotonic() > deadline:
            raise ScaleError("E_SCALE_START", f"{initial} replicas did not register within {timeout_s:.0f} s")
        time.sleep(0.2)
    return LiveCluster(f"http://{cfg.http_host}:{cfg.http_port}", initial)


def stop_live() -> None:
    """Remove the gateway and the engines (their sessions are drained: `end{reason:"draining"}`) and
    the registry."""
    ray = import_ray()
    from ray import serve

    for app in (GATEWAY_APP, ENGINES_APP):
        serve.delete(app)
    try:
        ray.kill(ray.get_actor(REGISTRY, namespace=NAMESPACE))
    except ValueError:
        pass
