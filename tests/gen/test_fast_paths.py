"""The generator's speed-ups give bit-identical results to the plain formulations they replace.

Oracles: RoPE as the pairwise formula (a cos - b sin, a sin + b cos) stacked per pair; q/k RMSNorm by
the block's own `RMSNorm` modules on the separate q and k chunks; the clean commit pass as a full
forward (K/V in the cache and every later frame compared with `torch.equal`, fp32 and fp64).
"""

from __future__ import annotations

import pytest
import torch
from streamrt.models.gen.dit import DenseContext
from streamrt.models.gen.model import GenModel
from streamrt.models.gen.rope import Rope3D, apply_rope, rotate_pairs

from streamrt.gen.config import GenEngineConfig
from streamrt.gen.engine import GenEngine

from .conftest import make_tiny


def _pairwise(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    xp = x.to(cos.dtype).unflatten(-1, (-1, 2))
    a, b = xp[..., 0], xp[..., 1]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2).to(x.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rope_full_width_tables_equal_the_pairwise_formula(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    grid = Rope3D(24).for_grid(4, 3)
    pos = torch.tensor([0, 5, 9, 1000])
    x = torch.randn(2, 3, 4 * 12, 24, generator=g, dtype=dtype) * 3
    ang = torch.rand(4 * 12, 12, generator=g, dtype=torch.float64) * 100
    cos, sin = ang.cos().to(dtype), ang.sin().to(dtype)
    assert torch.equal(apply_rope(x, cos, sin), _pairwise(x, cos, sin))
    cos2, sin2 = grid.tables(pos, dtype, x.device)
    assert torch.equal(grid(x, pos), rotate_pairs(x, cos2, sin2))
    assert torch.equal(grid(x, pos), _pairwise(x, cos2[:, 0::2], sin2[:, 1::2]))
    assert torch.equal(sin2[:, 0::2], -sin2[:, 1::2])


class _Recorder:
    """An attention context that records what a block hands to self-attention (returns zeros)."""

    def __init__(self) -> None:
        self.seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def self_attention(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        self.seen.append((q, k, v))
        return torch.zeros_like(q)

    def cross_kv(self, layer, compute):  # noqa: ANN001, ANN201
        return compute()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_joint_qk_rmsnorm_equals_the_block_norm_modules(dtype: torch.dtype) -> None:
    model = make_tiny(dtype=dtype)
    blk, d = model.dit.blocks[0], model.spec.model.dim
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 4, d, generator=g, dtype=dtype)
    mod = torch.randn(1, 2, 6, d, generator=g, dtype=dtype)
    rec = _Recorder()
    with torch.no_grad():
        blk.attend(x, mod, rec)
        sh1, sc1 = (mod + blk.table)[:, :, 0, None], (mod + blk.table)[:, :, 1, None]
        h = torch.addcmul(sh1, blk.norm1(x), 1 + sc1).reshape(1, 8, d)
        q, k, v = blk.qkv(h).chunk(3, dim=-1)
        want = (blk._heads(blk.norm_q(q)), blk._heads(blk.norm_k(k)), blk._heads(v))
    for got, ref in zip(rec.seen[0], want, strict=True):
        assert torch.equal(got, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_write_kv_writes_what_a_full_forward_writes(dtype: torch.dtype) -> None:
    model = make_tiny(dtype=dtype)
    cfg = GenEngineConfig(steps=2, first_block_steps=2, block_frames=2, sink_frames=1, window_frames=3)
    fast, full = GenEngine(model, cfg, dtype=dtype), GenEngine(model, cfg, dtype=dtype)
    for eng in (fast, full):
        eng.set_prompt("a red circle")
    full.model = _FullForwardCommit(model)  # the previous implementation: commit by a full forward
    for _ in range(6):  # the window fills after 2 blocks, then rolls
        a, b = fast.next_block(), full.next_block()
        assert torch.equal(a, b)
        for name in ("k_buf", "v_buf", "k_master"):
            assert torch.equal(getattr(fast.cache, name), getattr(full.cache, name)), name


class _FullForwardCommit(torch.nn.Module):
    """The model with `write_kv` replaced by the whole forward (output discarded)."""

    def __init__(self, model: GenModel) -> None:
        super().__init__()
        self.inner, self.spec = model, model.spec

    def forward(self, *args: object) -> torch.Tensor:
        return self.inner(*args)

    def write_kv(self, *args: object) -> None:
        self.inner(*args)

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        return self.inner.encode_prompts(prompts)


def test_dense_context_uses_the_same_rotation() -> None:
    model = make_tiny()
    grid = model.dit.grid(8, 8)
    pos = torch.arange(3)
    ctx = DenseContext(grid, pos, None)
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 2, 3 * 4, 12, generator=g, dtype=torch.float64) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(grid(q, pos), grid(k, pos), v)
    assert torch.equal(ctx.self_attention(0, q, k, v), ref)
