"""StreamCache invariants under random append / evict / speculate-rollback sequences (hypothesis),
driven without a model: every token's K is a random vector rotated at its arrival position and its V
carries the token's id, so the oracle is bookkeeping we do independently of the cache.

Checked after every step: length <= capacity; storage contiguous; vision chunks whole and in order
(their V rows are the ones written); sink rows bit-identical to what was written; positions
contiguous (compact/master) or unchanged (gap); keys == the token's raw vector rotated at its current
position (1e-4; master: the arrival keys rotated once). Plus: rollback leaves the cache bitwise as
before the speculation; filling exactly to capacity evicts nothing; snapshot/restore round-trips.
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamrt.cache import (
    CacheError,
    CacheSpec,
    CompactPositions,
    GapPositions,
    MasterPositions,
    RetentionPolicy,
    StreamCache,
    StreamCacheConfig,
)
from streamrt.kernels.rope_shift import rope_shift_ref

D, H, LAYERS = 8, 2, 2
INV = 1.0 / (10000 ** (torch.arange(0, D, 2).float() / D))


def spec(mrope: bool) -> CacheSpec:
    return CacheSpec(LAYERS, H, D, INV, (1, 1, 2) if mrope else None)


class Driver:
    """Feeds a cache and keeps an independent record of every token written."""

    def __init__(self, cache: StreamCache, seed: int) -> None:
        self.cache = cache
        self.g = torch.Generator().manual_seed(seed)
        self.raw: dict[int, torch.Tensor] = {}  # token id -> raw K [L, B, H, D] (unrotated)
        self.seg_tokens: dict[int, list[int]] = {}  # segment id -> token ids
        self.sink_rows: dict[int, torch.Tensor] = {}  # segment id -> K rows as written
        self.next_tok = 0

    def _rotate(self, raw: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        # raw: [L, B, H, n, D], pos: [A, n] -> rotated at pos, as a model would cache it
        k = raw.flatten(0, 1).clone()
        return rope_shift_ref(k, pos, INV, self.cache.spec.mrope_section).view_as(raw)

    def append(
        self, kind: str, n: int | None = None, grid: tuple[int, int, int] | None = None, extend: bool = False
    ) -> None:
        c = self.cache
        if grid is not None:
            p, span = c.vision_positions_for(grid)
            pos = c.append("vision", positions=p, span=span)
        else:
            pos = c.append(kind, n, extend=extend)
        n = pos.shape[-1]
        pos_a = pos[:, 0] if pos.ndim == 3 else pos[:1]  # [A, n]
        ids = list(range(self.next_tok, self.next_tok + n))
        self.next_tok += n
        raw = torch.randn(LAYERS, 1, H, n, D, generator=self.g)
        k = self._rotate(raw, pos_a)
        v = torch.tensor(ids, dtype=torch.float32).view(1, 1, 1, n, 1).expand(LAYERS, 1, H, n, D)
        for i, t in enumerate(ids):
            self.raw[t] = raw[:, :, :, i]
        for layer in range(LAYERS):
            c.write(layer, k[layer], v[layer])
        seg = c.segments[-1]
        self.seg_tokens[seg.id] = self.seg_tokens.get(seg.id, [])[: seg.length - n] + ids
        if seg.pinned:
            self.sink_rows[seg.id] = c.k[:, :, :, seg.start : seg.end].clone()

    def check(self) -> None:
        c = self.cache
        assert c.length <= c.config.capacity
        segs = c.segments
        cursor = 0
        for s in segs:
            assert s.start == cursor
            cursor = s.end
            ids = self.seg_tokens[s.id][: s.length]
            if s.kind == "vision":
                assert s.length == len(self.seg_tokens[s.id])  # never split
            got_ids = c.v[0, 0, 0, s.start : s.end, 0].long().tolist()
            assert got_ids == ids
            if s.id in self.sink_rows:
                assert torch.equal(c.k[:, :, :, s.start : s.end], self.sink_rows[s.id][..., : s.length, :])
        pol = c.config.positions
        if not isinstance(pol, GapPositions) and segs:
            assert segs[0].pos_start == 0
            for a, b in zip(segs, segs[1:], strict=False):
                assert a.pos_end == b.pos_start
            assert c.next_position == segs[-1].pos_end
        if isinstance(pol, GapPositions):
            assert torch.equal(c.positions(), c.orig_pos[:, : c.length])
        if c.length:
            ids = c.v[0, 0, 0, : c.length, 0].long().tolist()
            raw = torch.stack([self.raw[t] for t in ids], dim=3)  # [L, B, H, n, D]
            want = self._rotate(raw, c.positions())
            assert (c.k[..., : c.length, :] - want).abs().max().item() <= 1e-4


OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("text"), st.sampled_from(["text", "user", "assistant"]), st.integers(1, 6), st.booleans()
        ),
        st.tuples(st.just("vision"), st.integers(1, 2), st.integers(1, 3), st.integers(1, 3)),
        st.tuples(st.just("evict")),
        st.tuples(st.just("spec"), st.integers(1, 5), st.integers(0, 5)),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=OPS,
    mrope=st.booleans(),
    policy=st.sampled_from([CompactPositions(), GapPositions(), MasterPositions()]),
    capacity=st.integers(24, 60),
    sink=st.integers(0, 6),
    text_window=st.integers(4, 30),
    vision_chunks=st.integers(1, 4),
)
def test_random_sequences_keep_invariants(ops, mrope, policy, capacity, sink, text_window, vision_chunks):
    retention = RetentionPolicy(sink_tokens=sink, text_window=text_window, vision_chunks=vision_chunks)
    cache = StreamCache(
        spec(mrope), StreamCacheConfig(capacity=capacity, retention=retention, positions=policy)
    )
    drv = Driver(cache, seed=len(ops))
    drv.append("system", 3)
    drv.check()
    for op in ops:
        try:
            if op[0] == "text":
                drv.append(op[1], op[2], extend=op[3])
            elif op[0] == "vision":
                drv.append("vision", grid=(op[1], op[2], op[3]))
            elif op[0] == "evict":
                cache.evict()
            else:
                mark = cache.begin_speculation()
                before = cache.snapshot()
                try:
                    drv.append("assistant", op[1], extend=True)
                finally:
                    cache.rollback(mark + min(op[2], op[1], cache.length - mark))
                if op[2] == 0:
                    after = cache.snapshot()
                    assert after.segments == before.segments and after.next_position == before.next_position
                    assert torch.equal(after.keys, before.keys) and torch.equal(after.values, before.values)
        except CacheError as e:
            assert e.code == "E_CACHE_FULL"  # only when pinned + the chunk cannot fit; nothing was reserved
        drv.check()


def test_filling_exactly_to_capacity_evicts_nothing():
    retention = RetentionPolicy(sink_tokens=0, text_window=10**6, vision_chunks=10**6)
    cache = StreamCache(spec(True), StreamCacheConfig(capacity=30, retention=retention))
    drv = Driver(cache, 0)
    for n in (7, 8, 10, 5):
        drv.append("text", n)
    assert cache.length == 30 and cache.evictions == 0
    drv.append("text", 1)
    assert cache.evictions == 1 and cache.evicted_tokens == 7 and cache.length == 24
    drv.check()


def test_rollback_is_a_pointer_move_and_bitwise():
    cache = StreamCache(spec(False), StreamCacheConfig(capacity=64))
    drv = Driver(cache, 1)
    drv.append("system", 5)
    drv.append("user", 6)
    k0, v0, p0 = cache.k.clone(), cache.v.clone(), cache.pos.clone()
    segs, nxt = cache.segments, cache.next_position
    mark = cache.begin_speculation()
    drv.append("assistant", 4)
    cache.rollback(mark)
    assert cache.segments == segs and cache.next_position == nxt
    n = cache.length
    assert torch.equal(cache.k[..., :n, :], k0[..., :n, :]) and torch.equal(
        cache.v[..., :n, :], v0[..., :n, :]
    )
    assert torch.equal(cache.pos[:, :n], p0[:, :n])


def test_no_eviction_during_speculation_and_no_split_vision():
    cache = StreamCache(
        spec(True), StreamCacheConfig(capacity=40, retention=RetentionPolicy(sink_tokens=0, vision_chunks=1))
    )
    drv = Driver(cache, 2)
    drv.append("vision", grid=(1, 2, 2))
    cache.begin_speculation()
    drv.append("vision", grid=(1, 2, 2))  # would evict the first chunk, but a speculation is open
    assert cache.evictions == 0
    try:
        cache.rollback(6)
    except CacheError as e:
        assert e.code == "E_CACHE_SPLIT"
    else:
        raise AssertionError("rollback split a vision chunk")
    cache.rollback(4)
    assert cache.length == 4


def test_snapshot_restore_round_trip():
    cache = StreamCache(
        spec(True), StreamCacheConfig(capacity=32, retention=RetentionPolicy(vision_chunks=1))
    )
    drv = Driver(cache, 3)
    drv.append("system", 4)
    drv.append("vision", grid=(1, 2, 3))
    snap = cache.snapshot()
    drv.append("vision", grid=(2, 2, 2))  # evicts the first vision chunk, rotates nothing (sinks only)
    drv.append("user", 3)
    cache.restore(snap)
    again = cache.snapshot()
    assert again.segments == snap.segments and torch.equal(again.keys, snap.keys)
    assert torch.equal(again.pos, snap.pos) and again.next_position == snap.next_position
