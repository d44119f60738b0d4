"""streamrt.bench: the benchmark harness and its registry.

A benchmark is a function registered with `@register(NAME, help)` in a module of this package
(discovered automatically, so adding a benchmark never edits a shared file). It declares cases on a
`Bench` (a baseline and one or more candidates); the harness runs them interleaved, repeat after
repeat, so a comparison holds while the machine's speed drifts, and reports median and spread,
the ratio against the baseline, peak memory and the machine. See `streamrt.bench.harness`.
"""

from streamrt.bench.harness import Bench, BenchResult, CaseResult, register, registry

__all__ = ["Bench", "BenchResult", "CaseResult", "register", "registry"]
