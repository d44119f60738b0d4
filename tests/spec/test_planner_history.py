"""Unit checks of the pieces around verification: the n-gram history's vote index against a
brute-force count, the adaptive planner's choices from acceptance and a cost curve, the eviction guard
(`Target.room`) against the retention policy, and the measured verify-cost curve."""

from __future__ import annotations

import random

from streamrt.spec import History, Planner, SpecConfig

from .conftest import build, cache_config, prefilled


def _brute(tokens: list[int], k: int, min_n: int, max_n: int) -> tuple[int, ...]:
    """The vote by scanning: each draft token is, for the longest suffix n-gram of tokens + drafts
    that occurred in `tokens` with a follower, the follower seen most often after it (ties: the most
    recent occurrence's)."""
    out: list[int] = []
    while len(out) < k:
        seq = tokens + out
        found = None
        for n in range(min(max_n, len(seq)), min_n - 1, -1):
            suffix = seq[len(seq) - n :]
            votes: dict[int, tuple[int, int]] = {}  # follower -> (count, most recent end)
            for end in range(n, len(tokens)):  # the follower tokens[end] must exist
                if tokens[end - n : end] == suffix:
                    votes[tokens[end]] = (votes.get(tokens[end], (0, 0))[0] + 1, end)
            if votes:
                found = max(votes, key=lambda t: votes[t])
                break
        if found is None:
            break
        out.append(found)
    return tuple(out)


def test_history_continuation_matches_brute_force() -> None:
    rng = random.Random(0)
    for trial in range(200):
        h = History(min_n=1 + trial % 2, max_n=4)
        tokens: list[int] = []
        for _ in range(rng.randint(1, 6)):
            chunk = [rng.randint(0, 5) for _ in range(rng.randint(1, 8))]
            tokens += chunk
            h.extend(chunk)
            assert h.continuation(5) == _brute(tokens, 5, h.min_n, h.max_n), tokens
            if rng.random() < 0.3:  # a dropped pending token withdraws its votes
                tokens.pop()
                h.drop_last()
                assert h.continuation(5) == _brute(tokens, 5, h.min_n, h.max_n), tokens


def test_history_vote_prefers_the_common_filler() -> None:
    """Commentary: the same sentence shape with one slot's filler varying; the vote drafts the
    filler said most often (the most recent one on a tie), then the rest of the shape."""
    a, red, blue, star, enters = 1, 2, 3, 4, 5
    h = History()
    for colour in (red, red, red, blue):
        h.extend([a, colour, star, enters, 0])
    h.extend([a])
    assert h.continuation(4) == (red, star, enters, 0)  # red 2 : blue 1 after "star enters 0 a"
    h.extend([blue, star, enters, 0, a])  # 2 : 2 now, blue the most recent
    assert h.continuation(1) == (blue,)


def test_planner_adapts_to_acceptance_and_cost() -> None:
    flat = lambda n: 1.0 + 0.02 * (n - 1)  # noqa: E731 - verify cost nearly independent of n
    steep = lambda n: float(n)  # noqa: E731 - verify cost proportional to n: speculation cannot pay
    cfg = SpecConfig(max_draft=12)
    p = Planner(cfg, flat)
    rng = random.Random(0)
    for _ in range(60):
        p.observe("good", 8, 8)
        p.observe("bad", 8, 0)
        p.observe("mid", 8, 3)
        p.observe("run", 8, 8 if rng.random() < 0.4 else 0)  # misses at once, or copies a whole run
        accepted = 0
        while accepted < 8 and rng.random() < 0.7:  # each draft accepted with probability 0.7
            accepted += 1
        p.observe("geo", 8, accepted)
    assert p.plan("good", 0.0, 16).k >= 8
    assert p.plan("bad", 0.0, 16).k == 0  # plain decoding beats a drafter that is always wrong
    assert p.plan("good", 0.0, 3).k == 3  # capped by the room before an eviction
    assert p.plan("mid", 0.0, 16).k == 3  # the 4th draft is always rejected: never pay for it
    assert p.plan("run", 0.0, 16).k >= 8  # a first-token rate of 0.4, then runs: draft long
    assert 0 < p.plan("geo", 0.3, 16).k < p.plan("geo", 0.0, 16).k  # an expensive drafter drafts less
    assert Planner(cfg, steep).plan("good", 0.0, 16).k == 0
    fixed = Planner(SpecConfig(adaptive=False, fixed_draft=5), flat)
    assert fixed.plan("bad", 0.0, 16).k == 5 and fixed.plan("bad", 0.0, 2).k == 2
    for _ in range(200):  # written off, then idle: drifts back to the prior and gets tried again
        p.skip("bad")
    assert p.plan("bad", 0.0, 16).k > 0


def test_room_is_what_plain_decoding_appends_before_an_eviction() -> None:
    model = build("llama", seed=0)
    cfg = cache_config(capacity=64, text_window=20)
    target, _ = prefilled(model, [[1, 2, 3, 4], [5, 6, 7, 8, 9, 10], [11, 12, 13]], cfg)
    room = target.room()
    assert room == 20 - 9
    for _ in range(room):
        target.forward([1])
    assert target.cache.evicted_tokens == 0
    target.forward([1])
    assert target.cache.evicted_tokens == 6  # the next token evicts the oldest user turn


def test_measure_costs_leaves_cache_unchanged() -> None:
    model = build("llama", seed=0)
    target, _ = prefilled(model, [[1, 2, 3], [4, 5]])
    before = (target.cache.length, target.cache.next_position, target.cache.segments)
    curve = target.measure_costs(6, repeats=1)
    assert sorted(curve) == list(range(1, 7)) and all(v > 0 for v in curve.values())
    assert (target.cache.length, target.cache.next_position, target.cache.segments) == before


def test_costs_on_cpu_are_thread_cpu_time() -> None:
    """A forward that waits (for a shared core, the GIL) costs no more: the planner's curve is CPU
    time, so load elsewhere on the machine does not make drafting look expensive."""
    import time

    from streamrt.spec import Target

    model = build("llama", seed=0)
    plain, _ = prefilled(model, [[1, 2, 3]])
    waits = Target(plain.model, plain.cache, plain.hf)
    inner = waits.forward

    def slow_forward(tokens):
        time.sleep(0.05)  # wall time passes, this thread's CPU time does not
        return inner(tokens)

    waits.forward = slow_forward  # type: ignore[method-assign]
    curve = waits.measure_costs(3, repeats=1)
    assert max(curve.values()) < 0.05
