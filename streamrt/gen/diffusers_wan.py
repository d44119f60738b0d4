"""Serve diffusers' `WanTransformer3DModel` / `SkyReelsV2Transformer3DModel` through a FrameCache, unforked.

Causal Wan-family checkpoints (Self-Forcing, CausVid, LongLive style) are plain `WanTransformer3DModel`
weights run block by block over a KV cache. This module installs two attention processors per block:
self-attention (attn1) writes the block's K/V into the FrameCache and attends to sink + window +
block with the model's own 3-D RoPE evaluated at the cache's frame positions; cross-attention (attn2)
takes its K/V from the cache's per-prompt store. `WanStreamer` owns the cache and the processors and
exposes the same block verbs as the built-in engine: a denoising pass (no pointer moves) and a clean
commit pass. Per-frame timesteps are passed as Wan 2.2's per-token timestep tensor, or to SkyReels-V2
with `enable_diffusion_forcing=True` (its native per-frame form).
What it does not know: samplers of particular checkpoints (timestep shift, step count), VAEs, text
encoders (the caller passes `encoder_hidden_states`). diffusers is imported lazily (optional extra).
"""

from __future__ import annotations

from collections.abc import Hashable

import torch
import torch.nn.functional as F
from torch import Tensor

from streamrt.cache.frame import FrameCache, FrameCacheConfig, PositionPolicy
from streamrt.models.gen.rope import apply_rope


class WanRotate:
    """The Wan model's own rotary table, evaluated at arbitrary frame positions (FrameCache `Rotate`)."""

    def __init__(self, rope: torch.nn.Module, grid_h: int, grid_w: int) -> None:
        t_dim, h_dim, w_dim = rope.t_dim, rope.h_dim, rope.w_dim
        cos_t, cos_h, cos_w = rope.freqs_cos.split([t_dim, h_dim, w_dim], dim=1)  # [max_seq, d] each
        sin_t, sin_h, sin_w = rope.freqs_sin.split([t_dim, h_dim, w_dim], dim=1)
        # Wan stores each angle twice (interleaved); one per channel pair is enough
        self.cos_t, self.sin_t = cos_t[:, 0::2], sin_t[:, 1::2]
        hw_cos = torch.cat(
            [
                cos_h[:grid_h, None, 0::2].expand(-1, grid_w, -1),
                cos_w[None, :grid_w, 0::2].expand(grid_h, -1, -1),
            ],
            -1,
        )
        hw_sin = torch.cat(
            [
                sin_h[:grid_h, None, 1::2].expand(-1, grid_w, -1),
                sin_w[None, :grid_w, 1::2].expand(grid_h, -1, -1),
            ],
            -1,
        )
        self.hw_cos, self.hw_sin = hw_cos.reshape(grid_h * grid_w, -1), hw_sin.reshape(grid_h * grid_w, -1)
        self.tokens_per_frame = grid_h * grid_w

    def __call__(self, x: Tensor, frame_pos: Tensor) -> Tensor:
        """x: [..., F*T, D] -> rotated like Wan's own rotary at frames `frame_pos`."""
        t = self.tokens_per_frame
        cos = torch.cat(
            [self.cos_t[frame_pos].repeat_interleave(t, 0), self.hw_cos.repeat(len(frame_pos), 1)], -1
        )
        sin = torch.cat(
            [self.sin_t[frame_pos].repeat_interleave(t, 0), self.hw_sin.repeat(len(frame_pos), 1)], -1
        )
        dt = torch.float64 if x.dtype == torch.float64 else torch.float32
        return apply_rope(x, cos.to(dtype=dt, device=x.device), sin.to(dtype=dt, device=x.device))


def _heads(x: Tensor, heads: int) -> Tensor:  # [B, N, H*D] -> [B, H, N, D]
    return x.unflatten(2, (heads, -1)).transpose(1, 2)


class CachedSelfAttention:
    """attn1 processor: the block's self-attention through the FrameCache."""

    def __init__(self, cache: FrameCache, layer: int) -> None:
        self.cache, self.layer = cache, layer

    def __call__(
        self, attn, hidden_states: Tensor, encoder_hidden_states=None, attention_mask=None, rotary_emb=None
    ) -> Tensor:
        q = _heads(attn.norm_q(attn.to_q(hidden_states)), attn.heads)
        k = _heads(attn.norm_k(attn.to_k(hidden_states)), attn.heads)
        v = _heads(attn.to_v(hidden_states), attn.heads)
        out = self.cache.self_attention(self.layer, q, k, v).transpose(1, 2).flatten(2)  # [B, N, H*D]
        return attn.to_out[1](attn.to_out[0](out.type_as(hidden_states)))


class CachedCrossAttention:
    """attn2 processor: cross-attention with the prompt's K/V computed once per prompt."""

    def __init__(self, cache: FrameCache, layer: int) -> None:
        self.cache, self.layer = cache, layer

    def __call__(
        self, attn, hidden_states: Tensor, encoder_hidden_states=None, attention_mask=None, rotary_emb=None
    ) -> Tensor:
        def kv() -> tuple[Tensor, Tensor]:
            k = _heads(attn.norm_k(attn.to_k(encoder_hidden_states)), attn.heads)
            return k, _heads(attn.to_v(encoder_hidden_states), attn.heads)

        k, v = self.cache.cross_kv(self.layer, kv)
        q = _heads(attn.norm_q(attn.to_q(hidden_states)), attn.heads)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        return attn.to_out[1](attn.to_out[0](out.type_as(hidden_states)))


class WanStreamer:
    """A diffusers WanTransformer3DModel rolled out block by block over a FrameCache."""

    def __init__(
        self,
        model: torch.nn.Module,
        latent_h: int,
        latent_w: int,
        *,
        sink_frames: int,
        window_frames: int,
        block_frames: int,
        policy: PositionPolicy | None = None,
    ) -> None:
        cfg = model.config
        pt, ph, pw = cfg.patch_size
        if pt != 1:
            raise ValueError(f"frame-causal streaming needs temporal patch 1, got {pt}")
        self.model = model
        self.per_frame = type(model).__name__.startswith("SkyReelsV2")  # diffusion-forcing timesteps [B, F]
        self.gh, self.gw = latent_h // ph, latent_w // pw
        p = next(model.parameters())
        cc = FrameCacheConfig(
            len(model.blocks),
            cfg.num_attention_heads,
            cfg.attention_head_dim,
            self.gh * self.gw,
            sink_frames,
            window_frames,
            block_frames,
        )
        self.cache = FrameCache(
            cc, WanRotate(model.rope, self.gh, self.gw), policy=policy, dtype=p.dtype, device=p.device
        )
        for i, blk in enumerate(model.blocks):
            blk.attn1.set_processor(CachedSelfAttention(self.cache, i))
            blk.attn2.set_processor(CachedCrossAttention(self.cache, i))

    def set_prompt(self, key: Hashable) -> None:
        self.cache.set_prompt(key)

    def _run(self, latents: Tensor, timestep: Tensor, text: Tensor) -> Tensor:
        # latents: [B, C, F, H, W]; timestep: [B, F] (Wan's 0..1000 scale); text: [B, L, text_dim]
        if self.per_frame:
            return self.model(latents, timestep, text, enable_diffusion_forcing=True, return_dict=False)[0]
        per_token = timestep.repeat_interleave(self.gh * self.gw, dim=1)  # [B, F*h*w]
        return self.model(latents, per_token, text, return_dict=False)[0]

    def denoise(self, latents: Tensor, timestep: Tensor, text: Tensor) -> Tensor:
        """One denoising pass over the in-flight block (K/V written in place, nothing committed)."""
        self.cache.begin_pass([latents.shape[2]])
        return self._run(latents, timestep, text)

    def commit(self, clean: Tensor, text: Tensor) -> None:
        """Clean pass (t = 0) over the finished block; its K/V enter the sink / window."""
        f = clean.shape[2]
        self.cache.begin_pass([f], clean_frames=f)
        self._run(clean, torch.zeros(clean.shape[0], f, dtype=clean.dtype, device=clean.device), text)
        self.cache.commit(clean.transpose(1, 2))  # frames stored as [B, F, C, H, W]
