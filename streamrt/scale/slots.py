"""The slot table: which replica has free session slots, and who holds them (pure Python, no Ray).

Replicas register (id, websocket URL, slots, modes) and send heartbeats listing the tickets of their
open connections. `reserve(mode)` picks the live replica serving `mode` with the most free slots
(ties: the one granted least recently), holds one slot for the ticket's lifetime, and returns a grant;
a slot is free again when its connection closes (heartbeat) or its ticket expires unused. A replica
whose heartbeat is older than `dead_after_s`, or that the caller reports unreachable, is dropped with
its slots. A draining replica (being removed: `drain`) stays listed but gets no new grants. The Ray actor in `registry` wraps one SlotTable; tests drive it directly with a fake clock.

Owns the table. Does not know sockets, Serve or how tickets are checked (it only mints them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from streamrt.scale.tickets import hello_token, mint


@dataclass(slots=True)
class ReplicaSlots:
    """What the table knows about one replica."""

    replica: str
    url: str
    """The replica's direct websocket URL (ws://host:port/ws)."""
    slots: int
    modes: tuple[str, ...]
    pid: int
    node: str
    seen: float
    """Clock time of the last register/heartbeat."""
    open: set[str] = field(default_factory=set)
    """Nonces of the tickets whose connections are open (from the last heartbeat)."""
    held: dict[str, float] = field(default_factory=dict)
    """Nonce -> expiry of granted tickets not yet seen open."""
    granted: int = 0
    last_grant: float = 0.0
    draining: bool = False
    """Being removed: gets no new grants; its sessions are told to reconnect elsewhere."""

    def used(self) -> int:
        return len(self.open) + len(self.held)


@dataclass(frozen=True, slots=True)
class Grant:
    """A slot on one replica: connect to `url` (ticket included) and say `token` in hello."""

    url: str
    token: str
    replica: str
    expires_in_s: float

    def to_json(self) -> dict[str, object]:
        return {
            "url": self.url,
            "token": self.token,
            "replica": self.replica,
            "expires_in_s": self.expires_in_s,
        }


class SlotTable:
    def __init__(
        self,
        secret: str,
        *,
        ticket_ttl_s: float = 10.0,
        dead_after_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secret = secret
        self.ticket_ttl_s = ticket_ttl_s
        self.dead_after_s = dead_after_s
        self.clock = clock
        self.replicas: dict[str, ReplicaSlots] = {}
        self.refused = 0
        self.dropped_replicas = 0

    # ---- replicas ----------------------------------------------------------------------------------
    def register(self, replica: str, url: str, slots: int, modes: Sequence[str], pid: int, node: str) -> None:
        self.replicas[replica] = ReplicaSlots(replica, url, slots, tuple(modes), pid, node, self.clock())

    def heartbeat(self, replica: str, open_nonces: Sequence[str]) -> bool:
        """A replica's state; False if it is unknown (dropped as dead: it must register again)."""
        r = self.replicas.get(replica)
        if r is None:
            return False
        r.seen = self.clock()
        r.open = set(open_nonces)
        for n in r.open:
            r.held.pop(n, None)
        return True

    def drain(self, replica: str) -> bool:
        """Stop granting slots on `replica` (it is being removed); False if it is unknown."""
        r = self.replicas.get(replica)
        if r is not None:
            r.draining = True
        return r is not None

    def unregister(self, replica: str) -> None:
        if self.replicas.pop(replica, None) is not None:
            self.dropped_replicas += 1

    def _expire(self) -> None:
        now = self.clock()
        for rid in [rid for rid, r in self.replicas.items() if now - r.seen > self.dead_after_s]:
            self.unregister(rid)
        for r in self.replicas.values():
            for n in [n for n, e in r.held.items() if e < now]:
                del r.held[n]

    # ---- sessions ----------------------------------------------------------------------------------
    def reserve(self, mode: str, avoid: Sequence[str] = ()) -> Grant | None:
        """A slot on the live replica serving `mode` with the most free slots, or None (cluster full).
        `avoid`: replicas the client could not reach (they are dropped from the table)."""
        for rid in avoid:
            self.unregister(rid)
        self._expire()
        free = [
            r for r in self.replicas.values() if mode in r.modes and r.used() < r.slots and not r.draining
        ]
        if not free:
            self.refused += 1
            return None
        r = max(free, key=lambda r: (r.slots - r.used(), -r.last_grant))
        text, ticket = mint(self.secret, r.replica, self.ticket_ttl_s, self.clock())
        r.held[ticket.nonce] = ticket.expires
        r.granted += 1
        r.last_grant = self.clock()
        sep = "&" if "?" in r.url else "?"
        return Grant(
            f"{r.url}{sep}ticket={text}", hello_token(self.secret, r.replica), r.replica, self.ticket_ttl_s
        )

    def modes(self) -> set[str]:
        return {m for r in self.replicas.values() for m in r.modes}

    def snapshot(self) -> list[dict[str, object]]:
        """Per live replica: id, url, node, pid, slots, open, held, granted, draining (/v1/replicas, /metrics)."""
        self._expire()
        return [
            {
                "replica": r.replica,
                "url": r.url,
                "node": r.node,
                "pid": r.pid,
                "modes": list(r.modes),
                "slots": r.slots,
                "open": len(r.open),
                "held": len(r.held),
                "granted": r.granted,
                "draining": r.draining,
                "heartbeat_age_s": round(self.clock() - r.seen, 3),
            }
            for r in sorted(self.replicas.values(), key=lambda r: r.replica)
        ]
