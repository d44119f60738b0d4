"""RetentionPolicy decisions on hand-built segment tables (the StreamingVLM layout), and the typed
errors of misuse. Oracle: the expected ids written out by hand for each scenario."""

from __future__ import annotations

import pytest
import torch
from streamrt.cache import CacheError, CacheSpec, RetentionPolicy, Segment, StreamCache, StreamCacheConfig


def table(*rows: tuple[str, int, bool]) -> list[Segment]:
    out, start = [], 0
    for i, (kind, n, pinned) in enumerate(rows):
        out.append(Segment(i, kind, start, n, start, start + n, pinned))  # type: ignore[arg-type]
        start += n
    return out


def test_keeps_sinks_last_vision_chunks_and_recent_text():
    segs = table(
        ("system", 8, True),
        ("vision", 16, False),  # 1
        ("user", 4, False),  # 2
        ("vision", 16, False),  # 3
        ("memory", 6, False),  # 4
        ("vision", 16, False),  # 5
        ("user", 5, False),  # 6
    )
    pol = RetentionPolicy(sink_tokens=8, text_window=10, vision_chunks=2)
    # incoming vision chunk: keep 1 old chunk + it (1, 3 go); text 15 > 10 -> user 2 (11 left), memory 4
    assert pol.plan(segs, 16, "vision", capacity=1000) == [1, 2, 3, 4]
    # incoming text of 3: vision 3 > 2 -> chunk 1; text 15 + 3 -> evict 2 (11 left) then 4 (5 left)
    assert pol.plan(segs, 3, "user", capacity=1000) == [1, 2, 4]
    # capacity binds (windows wide): oldest unpinned go first, whole segments; 71 + 10 > 70 -> chunk 1
    wide = RetentionPolicy(sink_tokens=8, text_window=1000, vision_chunks=10)
    assert wide.plan(segs, 10, None, capacity=70) == [1]
    assert wide.plan(segs, 0, None, capacity=71) == []  # exactly full: nothing goes
    with pytest.raises(CacheError) as e:
        pol.plan(segs, 100, "vision", capacity=100)
    assert e.value.code == "E_CACHE_FULL"


def test_text_slack_evicts_down_to_a_low_water_mark():
    """One-token assistant segments (plain decoding's table) past a 10-token window: with no slack
    every new token evicts one; with a slack of 4 the first overflow evicts down to 6 tokens, and
    the next 4 tokens evict nothing (room for a speculation round)."""
    segs = table(("system", 4, True), *[("assistant", 1, False)] * 10)  # ids 1..10: 10 text tokens
    exact = RetentionPolicy(sink_tokens=4, text_window=10, vision_chunks=2)
    slack = RetentionPolicy(sink_tokens=4, text_window=10, vision_chunks=2, text_slack=4)
    assert exact.plan(segs, 0, None, 1000) == slack.plan(segs, 0, None, 1000) == []  # at the window
    assert exact.plan(segs, 1, "assistant", 1000) == [1]
    assert slack.plan(segs, 1, "assistant", 1000) == [1, 2, 3, 4, 5]  # 11 -> 6
    kept = [segs[0], *segs[6:]]  # after that eviction: 5 old tokens + the new one = 6
    kept.append(Segment(11, "assistant", 14, 1, 14, 15, False))
    for n in range(1, 5):  # 6 + n <= 10: nothing goes
        assert slack.plan(kept, n, "assistant", 1000) == []
    assert slack.plan(kept, 5, "assistant", 1000) == [6, 7, 8, 9, 10]  # 11 -> 6 again
    with pytest.raises(CacheError) as e:
        RetentionPolicy(text_window=8, text_slack=9)
    assert e.value.code == "E_CACHE_ARGS"


def test_pinning_and_assistant_to_memory():
    spec = CacheSpec(1, 1, 4, torch.ones(2))
    cache = StreamCache(spec, StreamCacheConfig(capacity=64, retention=RetentionPolicy(sink_tokens=6)))
    for kind, n in [("system", 4), ("user", 3), ("assistant", 2), ("vision", 5)]:
        cache.append(kind, n)
        for layer in range(1):
            cache.write(layer, torch.zeros(1, 1, n, 4), torch.zeros(1, 1, n, 4))
    kinds = [(s.kind, s.pinned) for s in cache.segments]
    # system pinned; user pinned too (4 < 6 sink tokens); then sinks are full
    assert kinds == [("system", True), ("user", True), ("memory", False), ("vision", False)]


def test_misuse_raises_typed_errors():
    spec = CacheSpec(2, 1, 4, torch.ones(2))
    cache = StreamCache(spec, StreamCacheConfig(capacity=8))
    with pytest.raises(CacheError) as e:
        cache.write(0, torch.zeros(1, 1, 1, 4), torch.zeros(1, 1, 1, 4))
    assert e.value.code == "E_CACHE_NOT_APPENDED"
    cache.append("text", 3)
    with pytest.raises(CacheError) as e:
        cache.append("text", 1)
    assert e.value.code == "E_CACHE_PENDING"
    with pytest.raises(CacheError) as e:
        cache.write(0, torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4))
    assert e.value.code == "E_CACHE_ARGS"
    with pytest.raises(CacheError) as e:
        cache.rollback(9)
    assert e.value.code == "E_CACHE_ROLLBACK"
    cache.rollback(cache.length)  # a failed forward: the pending chunk goes whatever the target
    assert cache.length == 0 and cache.next_position == 0
    stale = cache.positions_for(2)
    cache.append("text", 2)
    with pytest.raises(CacheError) as e:
        cache.write(0, torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4))
        cache.write(1, torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4))
        cache.append("text", positions=stale)
    assert e.value.code == "E_CACHE_ARGS"
    with pytest.raises(CacheError) as e:
        CacheSpec(1, 1, 8, torch.ones(4), (1, 1, 1))
    assert e.value.code == "E_CACHE_SPEC"


def test_split_tokens_builds_the_table_of_one_token_appends():
    """Appending 5 assistant tokens at once and splitting gives the segment table of 5 one-token
    appends (ids, rows, positions, pinning across the sink boundary); vision cannot be split."""
    spec = CacheSpec(1, 1, 4, torch.ones(2))
    cfg = StreamCacheConfig(capacity=64, retention=RetentionPolicy(sink_tokens=6))

    def cache_with(chunks: list[tuple[str, int]]) -> StreamCache:
        c = StreamCache(spec, cfg)
        for kind, n in chunks:
            c.append(kind, n)
            c.write(0, torch.zeros(1, 1, n, 4), torch.zeros(1, 1, n, 4))
        return c

    one_by_one = cache_with([("system", 4), *[("assistant", 1)] * 5])
    split = cache_with([("system", 4), ("assistant", 5)])
    split.split_tokens()
    assert split.segments == one_by_one.segments
    assert [s.pinned for s in split.segments] == [True, True, True, False, False, False]  # 6 sink tokens
    split.append("assistant", 1)  # ids continue where plain decoding's would
    one_by_one.append("assistant", 1)
    assert split.segments[-1].id == one_by_one.segments[-1].id
    with pytest.raises(CacheError) as e:
        split.split_tokens()  # a chunk is pending
    assert e.value.code == "E_CACHE_PENDING"
    vision = cache_with([("system", 4), ("vision", 3)])
    with pytest.raises(CacheError) as e:
        vision.split_tokens()
    assert e.value.code == "E_CACHE_ARGS"
