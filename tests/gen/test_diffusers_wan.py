"""diffusers' Wan / SkyReels-V2 transformers streamed through a FrameCache == their own full forward.

Oracle: the unmodified model run over all frames with diffusers' own attention processor and rotary
embedding, the self-attention given the block-causal (sink + window) token mask. fp32 (diffusers runs
its norms in fp32), tolerance 1e-5.
"""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffusers import SkyReelsV2Transformer3DModel, WanTransformer3DModel  # noqa: E402
from diffusers.models.transformers.transformer_skyreels_v2 import SkyReelsV2AttnProcessor  # noqa: E402
from diffusers.models.transformers.transformer_wan import WanAttnProcessor  # noqa: E402
from streamrt.cache.frame import Absolute  # noqa: E402
from streamrt.models.gen.dit import block_causal_mask  # noqa: E402

from streamrt.gen.diffusers_wan import WanStreamer  # noqa: E402

B, S, W = 2, 2, 4  # block, sink, window frames


def _tiny(cls: type) -> torch.nn.Module:
    torch.manual_seed(0)
    m = cls(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=4,
        out_channels=4,
        text_dim=16,
        freq_dim=32,
        ffn_dim=32,
        num_layers=2,
        rope_max_seq_len=64,
    ).eval()
    with torch.no_grad():  # some projections start at zero: randomise so every path matters
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m


def _masked(base: type, mask: torch.Tensor):
    """diffusers' own processor with a fixed attention mask (the oracle)."""

    class Masked(base):
        def __call__(
            self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None
        ):
            return super().__call__(attn, hidden_states, encoder_hidden_states, mask, rotary_emb)

    return Masked()


@pytest.mark.parametrize(
    ("cls", "proc"),
    [(WanTransformer3DModel, WanAttnProcessor), (SkyReelsV2Transformer3DModel, SkyReelsV2AttnProcessor)],
)
def test_streamed_through_framecache_equals_full_forward(cls: type, proc: type) -> None:
    ref_model, model = _tiny(cls), _tiny(cls)
    n_blocks, tokens = 4, 4 * 4  # latents 8x8, patch 2 -> 4x4 tokens per frame
    g = torch.Generator().manual_seed(1)
    clean = torch.randn(1, 4, n_blocks * B, 8, 8, generator=g)
    text = torch.randn(1, 7, 16, generator=g)
    streamer = WanStreamer(model, 8, 8, sink_frames=S, window_frames=W, block_frames=B, policy=Absolute())
    streamer.set_prompt("p")
    with torch.no_grad():
        for n in range(n_blocks):
            s = n * B
            noisy = torch.randn(1, 4, B, 8, 8, generator=g)
            t_noisy = torch.full((1, B), 700.0)
            out = streamer.denoise(noisy, t_noisy, text)
            xs = torch.cat([clean[:, :, :s], noisy], dim=2)
            ts = torch.cat([torch.zeros(1, s), t_noisy], dim=1)
            fm = block_causal_mask([B] * (n + 1), sink=S, window=W)
            mask = fm.repeat_interleave(tokens, 0).repeat_interleave(tokens, 1)
            for blk in ref_model.blocks:
                blk.attn1.set_processor(_masked(proc, mask))
            if cls is WanTransformer3DModel:  # Wan 2.2 form: one timestep per token
                ref = ref_model(xs, ts.repeat_interleave(tokens, dim=1), text, return_dict=False)[0]
            else:  # SkyReels-V2: one timestep per frame (diffusion forcing)
                ref = ref_model(xs, ts, text, enable_diffusion_forcing=True, return_dict=False)[0]
            ref = ref[:, :, s:]
            assert (out - ref).abs().max() < 1e-5, f"block {n}: {(out - ref).abs().max()}"
            streamer.commit(clean[:, :, s : s + B], text)
    assert streamer.cache.n_win == W and streamer.cache.committed == n_blocks * B
