"""streamrt.scale: scale-out on Ray (optional extra `streamrt[ray]`).

The engine, the server and the client know nothing of Ray; everything Ray lives here and imports
`ray` lazily, so `import streamrt.scale` works without it (a Ray-only call then raises
`ScaleError("E_SCALE_NO_RAY")`).

- `batch`: offline replay of many videos as Ray tasks (`run_batch`), resumable, one output per video.
- `live`: live sessions on Ray Serve: replicas each running one streamrt server with N session
  slots, a slot registry, and the `POST /v1/sessions` gateway (two-step connect; media never passes
  through Serve's proxy).
- `connect`: the client side of the two-step connect (plain HTTP, no Ray needed).
- `cli`: argument wiring for `streamrt replay --ray` and `streamrt serve --ray`.
"""

from streamrt.scale.errors import ScaleError

__all__ = ["ScaleError"]
