"""Short-lived, single-use session tickets of the two-step connect (no Ray needed).

The slot registry mints a ticket when it grants a slot on a replica; the client presents it in the
websocket URL (`ws://replica/ws?ticket=...`); the replica checks it before the upgrade. A ticket is
`base64url(json {"r": replica id, "n": nonce, "e": expiry unix s}) "." hex HMAC-SHA256` under the
cluster's secret, so a replica verifies it alone, without a call to the registry. Single use is
enforced by the replica (it remembers the nonces it admitted until they expire).

Owns the format and the checks. Does not know sockets, slots or Ray.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

TICKET_PARAM = "ticket"
"""The query parameter of the websocket URL that carries the ticket."""


@dataclass(frozen=True, slots=True)
class Ticket:
    replica: str
    nonce: str
    expires: float
    """Unix time (s) after which the replica refuses it."""


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def mint(secret: str, replica: str, ttl_s: float, now: float | None = None) -> tuple[str, Ticket]:
    """A new ticket for `replica`, valid `ttl_s` seconds: (its text, the parsed ticket)."""
    t = Ticket(replica, secrets.token_urlsafe(12), (time.time() if now is None else now) + ttl_s)
    body = base64.urlsafe_b64encode(json.dumps({"r": t.replica, "n": t.nonce, "e": t.expires}).encode())
    return f"{body.decode()}.{_sign(secret, body)}", t


def verify(secret: str, text: str | None, replica: str, now: float | None = None) -> Ticket | str:
    """The ticket if `text` is a valid, unexpired ticket for `replica`; else the reason (a str)."""
    if not text:
        return "no ticket"
    body, _, sig = text.partition(".")
    if not hmac.compare_digest(sig.encode(), _sign(secret, body.encode()).encode()):
        return "bad ticket signature"
    try:
        d = json.loads(base64.urlsafe_b64decode(body.encode()))
        t = Ticket(str(d["r"]), str(d["n"]), float(d["e"]))
    except (ValueError, KeyError, TypeError):
        return "malformed ticket"
    if t.replica != replica:
        return "ticket is for another replica"
    if t.expires < (time.time() if now is None else now):
        return "ticket expired"
    return t


def hello_token(secret: str, replica: str) -> str:
    """The replica's hello token (the server needs one to bind a non-loopback address): derived from the
    cluster secret, handed out with every grant; the ticket is what admits a client."""
    return _sign(secret, f"hello:{replica}".encode())[:32]
