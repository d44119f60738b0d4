"""streamrt.soak: long mixed load against a real `streamrt serve` over loopback, with a verdict.

`actors` simulates users (both modes, joins and leaves, questions, prompt switches, slow readers,
abrupt disconnects, malformed messages at a set rate); `monitor` samples the server process (RSS,
open file descriptors), scrapes /metrics and fits trends; `run` starts the server, drives it, and
builds the JSON report whose `ok` is the verdict. The command is `streamrt soak`.
"""

from streamrt.soak.actors import MALFORMED, LoadConfig, Tally
from streamrt.soak.monitor import Trend, theil_sen, trend
from streamrt.soak.run import SoakConfig, soak, write_report

__all__ = [
    "MALFORMED",
    "LoadConfig",
    "SoakConfig",
    "Tally",
    "Trend",
    "soak",
    "theil_sen",
    "trend",
    "write_report",
]
