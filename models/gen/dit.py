"""A small causal video diffusion transformer shaped like Wan: the math only.

Frames [B, F, C, H, W] are cut into p x p patches (tokens, T = (H/p)(W/p) per frame). Each block:
per-frame adaLN modulation from the frame's own timestep (shift/scale/gate, diffusion forcing: every
frame may sit at a different noise level), self-attention with q/k RMSNorm and 3-D RoPE over
(t, h, w), cross-attention to the prompt's token states, and a GELU MLP. The output is the predicted
clean frame (x-prediction, see flow.py).

Attention routing is not the model's business: every self-attention call goes through an
`AttentionContext` (`self_attention(layer, q, k, v)` with normalised, un-rotated q/k, and
`cross_kv(layer, compute)`). `DenseContext` here runs a full-sequence forward under any frame mask
(training, oracles); a FrameCache (streamrt.cache.frame) satisfies the same protocol for streaming.
What it does not know: caches, schedules, samplers, prompts as text (see `text.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from streamrt.models.gen.rope import GridRope, Rope3D, rotate_pairs
from torch import Tensor, nn


@dataclass(frozen=True, slots=True)
class GenModelConfig:
    """Hyper-parameters of the causal video DiT."""

    channels: int = 3
    """Channels of a frame (RGB pixels in [-1, 1])."""
    patch: int = 8
    """Square patch side in pixels (64x64 frames -> 8x8 = 64 tokens per frame)."""
    dim: int = 128
    """Hidden width."""
    heads: int = 4
    """Attention heads (head_dim = dim / heads)."""
    layers: int = 4
    """Transformer blocks."""
    ffn_mult: int = 4
    """MLP width multiple."""
    text_len: int = 8
    """Prompt tokens (padded / truncated)."""
    vocab_size: int = 64
    """Prompt vocabulary size (word level, see text.py)."""
    text_layers: int = 1
    """Transformer layers of the prompt encoder."""
    rope_theta: float = 10000.0
    eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class AttentionContext(Protocol):
    """Where a self-attention reads and writes its keys, and where cross-attention K/V come from."""

    def self_attention(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """q, k, v: [B, H, N, D] (q/k normalised, not rotated) -> [B, H, N, D]."""
        ...

    def cross_kv(self, layer: int, compute: Callable[[], tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]: ...


def block_causal_mask(
    sub_blocks: Sequence[int], sink: int | None = None, window: int | None = None
) -> Tensor:
    """Frame mask [F, F] (query, key): a frame sees its own block and earlier blocks.

    With `window`, of the frames before its block a query sees only the first `sink` frames and the
    last `window` frames before the block start (the sink + rolling window of a FrameCache).
    """
    starts = torch.tensor([0, *list(torch.tensor(list(sub_blocks)).cumsum(0)[:-1].tolist())])
    blk = torch.repeat_interleave(torch.arange(len(sub_blocks)), torch.tensor(list(sub_blocks)))
    start = starts[blk]  # [F] start frame of each frame's block
    j = torch.arange(len(blk))
    same = blk[None, :] == blk[:, None]
    before = j[None, :] < start[:, None]
    if window is not None:
        s = sink or 0
        before = before & ((j[None, :] < s) | (j[None, :] >= (start[:, None] - window).clamp(min=s)))
    return same | before


class DenseContext:
    """Full-sequence attention under a frame mask, frames at the given positions (no cache)."""

    def __init__(self, rope: GridRope, frame_pos: Tensor, frame_mask: Tensor | None) -> None:
        self.rope, self.pos = rope, frame_pos
        t = rope.tokens_per_frame
        self.mask = None if frame_mask is None else frame_mask.repeat_interleave(t, 0).repeat_interleave(t, 1)

    def self_attention(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        cdt = torch.float64 if q.dtype == torch.float64 else torch.float32
        cos2, sin2 = self.rope.tables(self.pos, cdt, q.device)  # [N, D] each, memoised
        mask = None if self.mask is None else self.mask.to(q.device)
        return F.scaled_dot_product_attention(
            rotate_pairs(q, cos2, sin2), rotate_pairs(k, cos2, sin2), v, attn_mask=mask
        )

    def cross_kv(self, layer: int, compute: Callable[[], tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        return compute()


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000 like Wan): [...] -> [..., dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=t.dtype, device=t.device) / half)
    ang = (t * 1000.0)[..., None] * freqs
    return torch.cat([ang.cos(), ang.sin()], dim=-1)


class Block(nn.Module):
    """One Wan-style block: modulated self-attention, cross-attention, modulated MLP."""

    def __init__(self, cfg: GenModelConfig, index: int) -> None:
        super().__init__()
        d, self.index, self.heads = cfg.dim, index, cfg.heads
        self.norm1 = nn.LayerNorm(d, cfg.eps, elementwise_affine=False)
        self.qkv = nn.Linear(d, 3 * d)
        self.norm_q, self.norm_k = RMSNorm(d, cfg.eps), RMSNorm(d, cfg.eps)
        self.proj = nn.Linear(d, d)
        self.norm3 = nn.LayerNorm(d, cfg.eps)
        self.cq, self.ckv = nn.Linear(d, d), nn.Linear(d, 2 * d)
        self.cnorm_q, self.cnorm_k = RMSNorm(d, cfg.eps), RMSNorm(d, cfg.eps)
        self.cproj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(
            nn.Linear(d, cfg.ffn_mult * d), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_mult * d, d)
        )
        self.table = nn.Parameter(torch.randn(6, d) / d**0.5)  # per-block offset of the shared modulation

    def _heads(self, x: Tensor) -> Tensor:  # [B, N, d] -> [B, H, N, d/H]
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def attend(self, x: Tensor, mod: Tensor, ctx: AttentionContext) -> tuple[Tensor, Tensor]:
        """The self-attention half: x [B, F, T, d] -> (x with the attention residual, its modulation [B, F, 6, 1, d])."""
        b, f, t, d = x.shape
        m = (mod + self.table).unsqueeze(3)  # [B, F, 6, 1, d]: shift, scale, gate (attention), same (MLP)
        sh1, sc1, g1 = m[:, :, 0], m[:, :, 1], m[:, :, 2]
        h = torch.addcmul(sh1, self.norm1(x), 1 + sc1).reshape(b, f * t, d)
        qkv = self.qkv(h)  # [B, N, 3d]
        # q and k RMSNorm in one call (each over its own d channels): rms_norm(x) * w == rms_norm(x, w)
        w = torch.stack([self.norm_q.weight, self.norm_k.weight])  # [2, d]
        qk = F.rms_norm(qkv[..., : 2 * d].unflatten(-1, (2, d)), (d,), None, self.norm_q.eps) * w
        q, k, v = qk[..., 0, :], qk[..., 1, :], qkv[..., 2 * d :]
        a = ctx.self_attention(self.index, self._heads(q), self._heads(k), self._heads(v))
        x = torch.addcmul(x, g1, self.proj(a.transpose(1, 2).reshape(b, f * t, d)).reshape(b, f, t, d))
        return x, m

    def finish(self, x: Tensor, m: Tensor, text: Tensor, ctx: AttentionContext) -> Tensor:
        """The cross-attention and MLP half: x [B, F, T, d], m from `attend`, text [B, L, d] -> x."""
        b, f, t, d = x.shape
        sh2, sc2, g2 = m[:, :, 3], m[:, :, 4], m[:, :, 5]

        def text_kv() -> tuple[Tensor, Tensor]:
            ck, cv = self.ckv(text).chunk(2, dim=-1)
            return self._heads(self.cnorm_k(ck)), self._heads(cv)  # [B, H, L, d/H] each

        ck, cv = ctx.cross_kv(self.index, text_kv)
        cq = self._heads(self.cnorm_q(self.cq(self.norm3(x).reshape(b, f * t, d))))
        c = F.scaled_dot_product_attention(cq, ck, cv)
        x = x + self.cproj(c.transpose(1, 2).reshape(b, f * t, d)).reshape(b, f, t, d)
        return torch.addcmul(x, g2, self.ffn(torch.addcmul(sh2, self.norm2(x), 1 + sc2)))

    def forward(self, x: Tensor, mod: Tensor, text: Tensor, ctx: AttentionContext) -> Tensor:
        # x: [B, F, T, d]; mod: [B, F, 6, d]; text: [B, L, d]
        x, m = self.attend(x, mod, ctx)
        return self.finish(x, m, text, ctx)


class CausalVideoDiT(nn.Module):
    """Clean-frame model x0(x_t, t, prompt) over frames; per-frame t; attention routed through a context."""

    def __init__(self, cfg: GenModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, p = cfg.dim, cfg.patch
        self.patch_in = nn.Linear(cfg.channels * p * p, d)
        self.t_embed = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.t_mod = nn.Linear(d, 6 * d)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.layers))
        self.norm_out = nn.LayerNorm(d, cfg.eps, elementwise_affine=False)
        self.out_table = nn.Parameter(torch.randn(2, d) / d**0.5)
        self.out_mod = nn.Linear(d, 2 * d)
        self.head = nn.Linear(d, cfg.channels * p * p)
        self.rope = Rope3D(cfg.head_dim, cfg.rope_theta)
        for m in (self.t_mod, self.out_mod, self.head):  # adaLN-zero: blocks start as identity
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def grid(self, height: int, width: int) -> GridRope:
        p = self.cfg.patch
        if height % p or width % p:
            raise ValueError(f"frame size {height}x{width} is not a multiple of the patch {p}")
        return self.rope.for_grid(height // p, width // p)

    def _embed(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x: [B, F, C, H, W], t: [B, F] -> tokens [B, F, T, d], timestep embedding [B, F, d], modulation [B, F, 6, d]."""
        b, f, c, hh, ww = x.shape
        p = self.cfg.patch
        gh, gw = hh // p, ww // p
        tok = x.reshape(b, f, c, gh, p, gw, p).permute(0, 1, 3, 5, 2, 4, 6).reshape(b, f, gh * gw, c * p * p)
        h = self.patch_in(tok)  # [B, F, T, d]
        temb = self.t_embed(timestep_embedding(t.to(h.dtype), self.cfg.dim))  # [B, F, d]
        return h, temb, self.t_mod(F.silu(temb)).unflatten(-1, (6, -1))

    def forward(self, x: Tensor, t: Tensor, text: Tensor, ctx: AttentionContext) -> Tensor:
        """x: [B, F, C, H, W] noisy frames, t: [B, F] noise levels, text: [B, L, d] -> predicted x0 like x."""
        b, f, c, hh, ww = x.shape
        p = self.cfg.patch
        h, temb, mod = self._embed(x, t)
        for blk in self.blocks:
            h = blk(h, mod, text, ctx)
        sh, sc = (self.out_mod(F.silu(temb)).unflatten(-1, (2, -1)) + self.out_table).unsqueeze(3).unbind(2)
        out = self.head(torch.addcmul(sh, self.norm_out(h), 1 + sc))  # [B, F, T, C*p*p]
        return (
            out.reshape(b, f, hh // p, ww // p, c, p, p).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, f, c, hh, ww)
        )

    def write_kv(self, x: Tensor, t: Tensor, text: Tensor, ctx: AttentionContext) -> None:
        """The forward for its side effect only: every layer's self-attention K/V reach `ctx`.

        A clean commit pass needs nothing else, so the last block stops after its self-attention and
        no output is made (its cross-attention, MLP and the output head are skipped). The K/V written
        are exactly those of `forward` on the same input.
        """
        h, _, mod = self._embed(x, t)
        for blk in self.blocks[:-1]:
            h = blk(h, mod, text, ctx)
        self.blocks[-1].attend(h, mod, ctx)
