"""FrameCache exactness: streaming through the cache == dense full-sequence forwards (fp64).

Oracles: a tiny random causal video DiT run as one dense forward over all frames with the block-causal
(sink + window) frame mask (absolute positions), and an independent per-query-block dense attention
that places keys where the cache-relative policy says (written here, not using the cache).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from streamrt.cache.frame import Absolute, CacheRelative, FrameCache, FrameCacheConfig, FrameCacheError
from streamrt.models.gen.dit import CausalVideoDiT, DenseContext, GenModelConfig, block_causal_mask

B, S, W = 2, 2, 4  # block frames, sink frames, window frames


def _model() -> CausalVideoDiT:
    torch.manual_seed(0)
    m = CausalVideoDiT(GenModelConfig(channels=3, patch=4, dim=24, heads=2, layers=2)).double().eval()
    with torch.no_grad():  # adaLN-zero init makes blocks identity: randomise so every path matters
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return m


def _cache(m: CausalVideoDiT, policy: object, inflight: int = B) -> FrameCache:
    c = m.cfg
    cfg = FrameCacheConfig(c.layers, c.heads, c.head_dim, 4, S, W, inflight)
    return FrameCache(cfg, m.grid(8, 8), policy=policy, dtype=torch.float64)  # type: ignore[arg-type]


def _clean_pass(m: CausalVideoDiT, cache: FrameCache, x: torch.Tensor, text: torch.Tensor) -> None:
    cache.begin_pass([x.shape[1]], clean_frames=x.shape[1])
    m(x, torch.zeros(1, x.shape[1], dtype=torch.float64), text, cache)
    cache.commit(x)


def _frames(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, n, 3, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("n_blocks", [8])
def test_absolute_streaming_equals_full_sequence_block_causal(n_blocks: int) -> None:
    m = _model()
    cache = _cache(m, Absolute())
    text = torch.randn(1, 5, 24, dtype=torch.float64)
    cache.set_prompt("p")
    clean = _frames(n_blocks * B)
    grid = m.grid(8, 8)
    with torch.no_grad():
        for n in range(n_blocks):
            s = n * B
            noisy = torch.randn(1, B, 3, 8, 8, dtype=torch.float64)
            t_noisy = torch.full((1, B), 0.6, dtype=torch.float64)
            cache.begin_pass([B])
            out = m(noisy, t_noisy, text, cache)
            xs = torch.cat([clean[:, :s], noisy], dim=1)
            ts = torch.cat([torch.zeros(1, s, dtype=torch.float64), t_noisy], dim=1)
            mask = block_causal_mask([B] * (n + 1), sink=S, window=W)
            ref = m(xs, ts, text, DenseContext(grid, torch.arange(s + B), mask))[:, s:]
            assert (out - ref).abs().max() < 1e-10, f"block {n}"
            _clean_pass(m, cache, clean[:, s : s + B], text)
    assert cache.n_win == W and cache.committed == n_blocks * B  # the window filled and rolled


class _CacheRelativeOracle:
    """Dense attention where each query block sees keys at cache-relative positions (sink, window, block)."""

    def __init__(self, grid, n_frames: int) -> None:
        self.grid, self.n = grid, n_frames

    def self_attention(self, layer, q, k, v):
        t = self.grid.tokens_per_frame
        outs = []
        for s in range(0, self.n, B):
            ctx = [j for j in range(s) if j < S or j >= max(S, s - W)]
            keys = ctx + list(range(s, s + B))
            idx = torch.tensor([j * t + i for j in keys for i in range(t)])
            kpos = torch.arange(len(keys))  # kept frames re-indexed contiguously
            qpos = kpos[-B:]
            qb = self.grid(q[:, :, s * t : (s + B) * t], qpos)
            kb = self.grid(k[:, :, idx], kpos)
            outs.append(F.scaled_dot_product_attention(qb, kb, v[:, :, idx]))
        return torch.cat(outs, dim=2)

    def cross_kv(self, layer, compute):
        return compute()


def test_cache_relative_streaming_equals_per_block_oracle() -> None:
    m = _model()
    cache = _cache(m, CacheRelative())
    text = torch.randn(1, 5, 24, dtype=torch.float64)
    cache.set_prompt("p")
    n_blocks = 7
    clean = _frames(n_blocks * B, seed=3)
    with torch.no_grad():
        for n in range(n_blocks):
            s = n * B
            noisy = torch.randn(1, B, 3, 8, 8, dtype=torch.float64)
            t_noisy = torch.full((1, B), 0.3, dtype=torch.float64)
            cache.begin_pass([B])
            out = m(noisy, t_noisy, text, cache)
            xs = torch.cat([clean[:, :s], noisy], dim=1)
            ts = torch.cat([torch.zeros(1, s, dtype=torch.float64), t_noisy], dim=1)
            ref = m(xs, ts, text, _CacheRelativeOracle(m.grid(8, 8), s + B))[:, s:]
            assert (out - ref).abs().max() < 1e-10, f"block {n}"
            _clean_pass(m, cache, clean[:, s : s + B], text)
    assert max(cache.policy.inflight(cache.n_sink, cache.n_win, cache.committed, B).tolist()) == S + W + B - 1


def test_noisy_writes_never_survive_a_commit() -> None:
    m = _model()
    text = torch.randn(1, 5, 24, dtype=torch.float64)
    clean = _frames(6 * B, seed=5)
    a, b = _cache(m, CacheRelative()), _cache(m, CacheRelative())
    a.set_prompt("p")
    b.set_prompt("p")
    with torch.no_grad():
        for n in range(6):
            blk = clean[:, n * B : (n + 1) * B]
            for step in range(3):  # noisy denoise passes write into the same in-flight slots
                a.begin_pass([B])
                m(torch.randn_like(blk), torch.full((1, B), 0.9 - 0.3 * step, dtype=torch.float64), text, a)
            _clean_pass(m, a, blk, text)
            _clean_pass(m, b, blk, text)
            ctx = (S + W) * 4
            assert torch.equal(a.k_buf[:, :, :, :ctx], b.k_buf[:, :, :, :ctx])
            assert torch.equal(a.v_buf[:, :, :, :ctx], b.v_buf[:, :, :, :ctx])
        with pytest.raises(FrameCacheError) as e:  # a noisy pass cannot be committed
            a.begin_pass([B])
            m(clean[:, :B], torch.full((1, B), 0.5, dtype=torch.float64), text, a)
            a.commit(clean[:, :B])
        assert e.value.code == "E_FRAMECACHE_NOT_CLEAN"
        a.begin_pass([B], clean_frames=B)  # nor a clean pass that did not reach every layer
        with pytest.raises(FrameCacheError) as e:
            a.commit(clean[:, :B])
        assert e.value.code == "E_FRAMECACHE_INCOMPLETE"


def test_recache_equals_rebuild_from_scratch() -> None:
    """After recache under prompt B, the next block == a dense forward over the kept frames under B."""
    m = _model()
    cache = _cache(m, CacheRelative())
    ta, tb = torch.randn(1, 5, 24, dtype=torch.float64), torch.randn(1, 5, 24, dtype=torch.float64)
    clean = _frames(9 * B, seed=7)
    with torch.no_grad():
        cache.set_prompt("a")
        for n in range(9):
            _clean_pass(m, cache, clean[:, n * B : (n + 1) * B], ta)
        kept = cache.kept_frames()
        expect = torch.cat([clean[:, :S], clean[:, 9 * B - W : 9 * B]], dim=1)
        assert torch.equal(kept, expect)
        cache.reset()
        cache.set_prompt("b")
        for s in range(0, kept.shape[1], B):
            _clean_pass(m, cache, kept[:, s : s + B], tb)
        noisy = torch.randn(1, B, 3, 8, 8, dtype=torch.float64)
        t_noisy = torch.full((1, B), 0.5, dtype=torch.float64)
        cache.begin_pass([B])
        out = m(noisy, t_noisy, tb, cache)
        n_kept = kept.shape[1]
        xs = torch.cat([kept, noisy], dim=1)
        ts = torch.cat([torch.zeros(1, n_kept, dtype=torch.float64), t_noisy], dim=1)
        mask = block_causal_mask([B] * (n_kept // B + 1))
        ref = m(xs, ts, tb, DenseContext(m.grid(8, 8), torch.arange(n_kept + B), mask))[:, n_kept:]
        assert (out - ref).abs().max() < 1e-10


def test_sink_bit_identical_and_pointers_advance_once_per_block() -> None:
    m = _model()
    cache = _cache(m, CacheRelative())
    text = torch.randn(1, 5, 24, dtype=torch.float64)
    cache.set_prompt("p")
    before = cache.stats().kv_bytes
    with torch.no_grad():
        _clean_pass(m, cache, _frames(B, seed=0), text)
        sink_k = cache.k_buf[:, :, :, : S * 4].clone()
        sink_v = cache.v_buf[:, :, :, : S * 4].clone()
        for n in range(1, 40):
            blk = _frames(B, seed=n)
            state = (cache.committed, cache.n_win, cache.ring_head)
            cache.begin_pass([B])
            m(blk, torch.full((1, B), 0.5, dtype=torch.float64), text, cache)
            assert (cache.committed, cache.n_win, cache.ring_head) == state  # a noisy pass moves nothing
            _clean_pass(m, cache, blk, text)
            assert cache.committed == state[0] + B
            if state[1] == W:
                assert cache.ring_head == (state[2] + B) % W
    assert torch.equal(cache.k_buf[:, :, :, : S * 4], sink_k)
    assert torch.equal(cache.v_buf[:, :, :, : S * 4], sink_v)
    assert cache.stats().kv_bytes == before


def test_cross_kv_computed_once_per_prompt_and_bounded() -> None:
    m = _model()
    cache = _cache(m, CacheRelative())
    calls = []

    def compute() -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(1)
        return torch.zeros(1), torch.zeros(1)

    for key in ["a", "a", "b", "c", "d", "e"]:
        cache.set_prompt(key)
        cache.cross_kv(0, compute)
        cache.cross_kv(0, compute)
    assert len(calls) == 5 and cache.stats().prompts_cached == 4 and cache.prompts_evicted == 1
    with pytest.raises(FrameCacheError) as e:
        cache.begin_pass([B + 1])
    assert e.value.code == "E_FRAMECACHE_BLOCK"
