"""The client side of the two-step connect to a streamrt cluster (plain HTTP + the protocol v1 client).

1. `POST {cluster}/v1/sessions` with `{"mode": ..., "avoid": [...]}` (through Ray Serve's proxy: a few
   hundred bytes) returns a grant: the direct websocket URL of a replica with a free slot (a one-time
   ticket in its query string, valid `expires_in_s`) and the hello token. A full cluster answers 503
   with `Retry-After` and `{"code": "E_FULL", "retry_after_s": ...}`: `ScaleError("E_SCALE_FULL")`.
2. `AsyncClient(grant.url, mode, params, token=grant.token)`: media goes straight to the replica.

`open_session` does both, and when the granted replica cannot be reached (it died since its last
heartbeat) asks again, naming it in `avoid`. Its client does not reconnect by itself: the ticket is
spent and the session's state lived on that replica; open a new session instead.
Owns nothing. Does not need Ray.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Sequence

from streamrt.client import AsyncClient
from streamrt.client.client import ClientError
from streamrt.scale.errors import ScaleError
from streamrt.scale.slots import Grant
from streamrt.server.protocol import ParamValue


def request_session(
    cluster: str,
    mode: str,
    *,
    token: str | None = None,
    avoid: Sequence[str] = (),
    timeout_s: float = 10.0,
) -> Grant:
    """Step 1 (blocking): a grant from the cluster at `cluster` (http://host:port of Serve's proxy)."""
    body = json.dumps({"mode": mode, "avoid": list(avoid)}).encode()
    req = urllib.request.Request(
        cluster.rstrip("/") + "/v1/sessions", body, {"Content-Type": "application/json"}, method="POST"
    )
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            d = json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            d = json.loads(e.read())
        except ValueError:
            d = {}
        code = str(d.get("code", f"HTTP {e.code}"))
        msg = str(d.get("message", e.reason))
        if e.code == 503:
            retry = float(d.get("retry_after_s") or e.headers.get("Retry-After") or 1)
            raise ScaleError("E_SCALE_FULL", f"{cluster}: {msg}", retry_after_s=retry) from None
        raise ScaleError("E_SCALE_REFUSED", f"{cluster}: {code}: {msg}") from None
    except (OSError, ValueError) as e:
        raise ScaleError("E_SCALE_CONNECT", f"{cluster}: {e}") from None
    return Grant(str(d["url"]), str(d["token"]), str(d["replica"]), float(d["expires_in_s"]))


async def open_session(
    cluster: str,
    mode: str,
    params: dict[str, ParamValue] | None = None,
    *,
    token: str | None = None,
    attempts: int = 3,
    open_timeout_s: float = 10.0,
) -> tuple[AsyncClient, Grant]:
    """Steps 1 and 2: a connected `AsyncClient` (its `Ready` consumed) and the grant it used.
    Raises ScaleError E_SCALE_FULL (with `retry_after_s`) when no replica has a free slot."""
    avoid: list[str] = []
    for attempt in range(attempts):
        grant = await asyncio.to_thread(request_session, cluster, mode, token=token, avoid=avoid)
        client = AsyncClient(
            grant.url,
            mode,
            params,
            token=grant.token,
            reconnect=False,
            retries=0,
            open_timeout_s=open_timeout_s,
        )
        try:
            await client.connect()
            return client, grant
        except ClientError as e:
            if e.code != "E_CONNECT" or attempt == attempts - 1:
                raise
            avoid.append(grant.replica)  # died since its last heartbeat: the registry drops it
    raise AssertionError("unreachable")
