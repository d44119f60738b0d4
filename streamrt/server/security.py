"""Security rules of the server: bind policy, tokens, Origin check, session ids, the server's config.

- Binds 127.0.0.1 by default; binding any other address needs a token (`ServerConfigError` otherwise).
- With a token set, `hello.token` must match (constant-time compare) or the socket closes with 1008.
- Browsers send `Origin`: it must name this server (scheme http/https, netloc equal to the request's
  Host header) or be listed in `origins`; clients without Origin (native) pass.
- Session ids are 144-bit random (secrets.token_urlsafe), never derived from anything guessable.
- Size limits (frame, control message, websocket message) and timeouts (HTTP handshake, hello, idle)
  live in `ServerConfig`.
Owns the config dataclass and these checks. Does not know sessions or engines.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


class ServerConfigError(ValueError):
    """A server configuration that is unsafe or cannot work (`code` E_SERVER_CONFIG)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"E_SERVER_CONFIG: {message}")
        self.code = "E_SERVER_CONFIG"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything `streamrt serve` can set."""

    host: str = "127.0.0.1"
    """Address to bind. Anything but a loopback address needs `token`."""
    port: int = 8765
    """TCP port (0: pick a free one; `Server.port` tells which)."""
    token: str | None = None
    """Shared secret clients send in hello."""
    origins: tuple[str, ...] = ()
    """Extra browser origins allowed (e.g. "https://demo.example"); pages served by this server always are."""
    max_sessions: int = 4
    """Admission control: more concurrent sessions are refused at connect (HTTP 503 + Retry-After)."""
    retry_after_s: int = 2
    """The retry hint a refused client gets."""
    max_frame_bytes: int = 2 * 2**20
    """Largest binary frame (header + payload) accepted; larger ones get E_TOO_LARGE and are skipped."""
    max_frame_pixels: int = 3840 * 2160
    """Largest decoded input frame (width x height, read from the image header before decoding)."""
    max_control_bytes: int = 64 * 2**10
    """Largest JSON control message."""
    max_message_bytes: int = 4 * 2**20
    """Hard websocket limit: anything larger closes the socket with 1009 (must be >= max_frame_bytes)."""
    handshake_timeout_s: float = 10.0
    """The HTTP upgrade must complete within this."""
    hello_timeout_s: float = 10.0
    """A valid hello must arrive within this after the upgrade."""
    idle_timeout_s: float = 120.0
    """A session with no message from its client for this long ends (clients ping at a third of it)."""
    ping_interval_s: float | None = 20.0
    """Websocket-level pings (a vanished peer is detected within ping_interval + ping_timeout)."""
    budget_ms: float = 250.0
    """Default per-frame latency budget of a session (hello params may set `budget_ms`)."""
    input_buffer: int = 2
    """Drop-oldest input buffer per session."""
    output_frames: int = 2
    """Drop-oldest output frame buffer per session (a slow reader loses frames, not time)."""
    stats_interval_s: float = 1.0
    workers: int = 1
    """Worker threads running model work (one per device)."""
    max_batch: int = 8
    """Most jobs of different sessions run together in one cross-session batch (1: no batching)."""
    static_dir: Path | None = None
    """Static files served on plain HTTP GETs (the web demo); None: apps/web if it exists."""
    shutdown_grace_s: float = 5.0
    """Graceful stop: how long sessions get to flush their output and their `end` before being closed."""

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise ServerConfigError(
                f"binding {self.host} exposes the server beyond this machine: set a token"
            )
        if self.token is not None and len(self.token) < 8:
            raise ServerConfigError("token shorter than 8 characters")
        if self.max_frame_pixels < 1:
            raise ServerConfigError("max_frame_pixels must be >= 1")
        if self.max_message_bytes < self.max_frame_bytes or self.max_frame_bytes < 64:
            raise ServerConfigError("need 64 <= max_frame_bytes <= max_message_bytes")
        if min(self.max_sessions, self.input_buffer, self.output_frames, self.workers, self.max_batch) < 1:
            raise ServerConfigError(
                "max_sessions, input_buffer, output_frames, workers and max_batch must be >= 1"
            )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_session_id() -> str:
    return secrets.token_urlsafe(18)


def token_ok(given: str | None, expected: str | None) -> bool:
    if expected is None:
        return True
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def origin_allowed(origin: str | None, host_header: str | None, allowed: tuple[str, ...]) -> bool:
    """Native clients send no Origin; browsers must come from this host or a listed origin."""
    if origin is None:
        return True
    if origin in allowed:
        return True
    o = urlsplit(origin)
    if o.scheme not in ("http", "https") or not o.hostname:
        return False
    return host_header is not None and o.netloc.lower() == host_header.lower()
