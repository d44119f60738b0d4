"""Shared by the Ray tests of tests/scale: a local Ray cluster (2 CPUs) started with start-up timeouts
long enough for a loaded 2-core machine (the defaults fail there while the GCS and raylet start)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

SLOW_MACHINE_ENV = {
    "RAY_raylet_start_wait_time_s": "300",
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "120",
    "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "120",
}


@pytest.fixture(scope="module")
def local_ray() -> Iterator[object]:
    """`ray.init(num_cpus=2, include_dashboard=False)` for one test module (skips it without Ray)."""
    ray = pytest.importorskip("ray")
    saved = {k: os.environ.get(k) for k in SLOW_MACHINE_ENV}
    os.environ.update(SLOW_MACHINE_ENV)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def free_port() -> int:
    """A loopback TCP port free at the time of the call."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
