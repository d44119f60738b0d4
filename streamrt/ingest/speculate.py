"""Sampled decoding that starts before the packet index is complete, confirmed before delivery.

A sampled decode needs the whole index to know exactly which frames are wanted: `Uniform` (and the
count of `EveryFps`) times depend on the stream's duration, i.e. on its last packet, and "the frame
at or before t" needs every frame up to t. Indexing a 10-minute file takes about 0.1 s of a core,
during which the workers would idle. `SampledPlan` plans from the growing index with the duration
the container header declares: a GOP is planned once the index has passed two more keyframes (its
frames and the leading pictures of the next GOP are then indexed), and its interval is handed out
at once. When the index is complete, `confirm()` plans exactly (the same `pick` + `plan_wanted` as
without speculation) and checks that the speculative intervals are exactly the exact plan's first
ones. The decoder delivers no frame before that; on a mismatch (a header that lies, pts that go
backwards) it drops what was decoded and starts over from `exact`, so the result never depends on
the guess. Knows nothing about workers or delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from streamrt.ingest.errors import CorruptData, SourceTimeout
from streamrt.ingest.index import NOPTS, Interval, PacketIndex, plan_wanted

# wanted(frame_pts [F] sorted, end_pts, below) -> wanted pts [M]: the request's picks for a stream
# whose frames are `frame_pts` and which ends at `end_pts`, using only request times < `below` ticks
WantedFn = Callable[[np.ndarray, int, int | None], np.ndarray]


class Replan(Exception):
    """The speculative intervals differ from the exact plan: decode again from `SampledPlan.exact`."""


class SampledPlan:
    """Iterate over a sampled decode's intervals, speculative ones first (see the module doc).

    span_guess: the stream's duration in time-base ticks as its header says (None: no speculation).
    """

    def __init__(self, index: PacketIndex, wanted: WantedFn, span_guess: int | None, timeout: float):
        self.index = index
        self._wanted = wanted
        self._span = span_guess
        self.timeout = timeout
        self.speculated: list[Interval] = []  # handed out before the index was complete
        self.exact: list[Interval] = []  # the plan from the complete index (after confirm)
        self.frame_pts: np.ndarray | None = None  # sorted pts of every frame: [F] int64 (after confirm)
        self.matched: bool | None = None

    def __iter__(self) -> Iterator[Interval]:
        yield from self._speculate()
        if self.confirm():
            yield from self.exact[len(self.speculated) :]

    def confirm(self) -> bool:
        """Wait for the complete index, plan exactly; True when the speculative intervals are the
        exact plan's first ones (idempotent)."""
        if self.matched is None:
            self.index.wait_done(self.timeout)
            fp = self.index.frame_pts()
            if fp.size == 0:
                raise CorruptData(
                    f"{self.index.source}: the video stream holds no frames", source=self.index.source
                )
            self.frame_pts = fp
            self.exact = plan_wanted(self.index, self._wanted(fp, self.index.end_pts(), None))
            self.matched = self.exact[: len(self.speculated)] == self.speculated
        return self.matched

    def confirmed_frame_pts(self) -> np.ndarray:
        """Frame pts once the speculation is confirmed; raises Replan when it was wrong."""
        if not self.confirm():
            raise Replan
        assert self.frame_pts is not None
        return self.frame_pts

    def _speculate(self) -> Iterator[Interval]:
        if self._span is None:
            return
        index, want_keys = self.index, 4
        while True:
            if not index.wait_keys(want_keys, self.timeout):
                raise SourceTimeout(f"{index.source}: indexing stalled", source=index.source)
            if index.done:
                return  # the rest comes from the exact plan
            keys = list(index.keys)  # snapshot; published packets always reach the last key
            pts, _, discard = index.arrays()
            fp = np.sort(pts[(pts != NOPTS) & ~discard])
            want_keys = len(keys) + max(4, len(keys) // 2)  # re-plan after the index grew by half
            if fp.size == 0:
                continue
            # frames with pts < the pts of the second-to-last indexed keyframe are all indexed:
            # that GOP's leading pictures come before the last indexed keyframe in decode order
            below = int(pts[keys[-2]])
            wanted = self._wanted(fp, int(fp[0]) + self._span, below)
            last_key = self.speculated[-1].key if self.speculated else -1
            for iv in plan_wanted(index, wanted):
                if iv.key > last_key and iv.hi <= below:  # GOPs that hold no pts >= below: final
                    iv = replace(iv, seq=len(self.speculated))
                    self.speculated.append(iv)
                    yield iv
