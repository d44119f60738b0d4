"""Training of the built-in generator: the object-weighted loss mask, prompt-switch clips and
continued training.

Oracles: the object mask is checked against a frame whose object pixels are known (a square drawn
on a flat background); a prompt-switch clip's prompted part is judged by the colour-segmentation
detector (which scores >= 95% on plain renders) and its context frames are clean; a continued run
starts from exactly the given checkpoint's weights (a run of zero learning rate keeps them bit for
bit) and records where it came from.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from streamrt.models.gen.data import ClipConfig, ClipSampler, to_pixels
from streamrt.models.gen.dit import GenModelConfig
from streamrt.models.gen.model import GenCheckpointError, GenModel
from streamrt.models.gen.train import GenTrainConfig, noise_levels, object_weights, train

from streamrt.gen.quality import score


def test_object_weights_cover_the_object_and_a_two_pixel_margin() -> None:
    x0 = torch.full((1, 1, 3, 16, 16), -0.8)  # flat background
    x0[..., 5:9, 6:10] = torch.tensor([0.9, -0.7, -0.7])[:, None, None]  # a red 4x4 square
    w = object_weights(x0, 5.0)[0, 0, 0]  # [16, 16]
    near = torch.zeros(16, 16, dtype=torch.bool)
    near[3:11, 4:12] = True  # the square dilated by 2 pixels (5x5 max-pool)
    assert torch.equal(w == 5.0, near) and torch.equal(w == 1.0, ~near)
    assert torch.equal(object_weights(x0, 1.0), torch.ones(1, 1, 1, 16, 16))


def _tiny_cfg(**changes: object) -> GenTrainConfig:
    cfg = GenTrainConfig(
        steps=2,
        batch=2,
        warmup=1,
        ckpt_every=2,
        model=GenModelConfig(patch=8, dim=24, heads=2, layers=1, ffn_mult=2),
        clips=ClipConfig(frames=4, size=16, max_start=4),
    )
    return dataclasses.replace(cfg, **changes)


def test_continued_training_starts_from_the_checkpoint(tmp_path) -> None:
    first = train(_tiny_cfg(), tmp_path / "a", progress=False)
    cont = train(
        _tiny_cfg(init=str(tmp_path / "a"), lr=0.0, object_weight=5.0), tmp_path / "b", progress=False
    )
    for (name, p), q in zip(first.state_dict().items(), cont.state_dict().values(), strict=True):
        assert torch.equal(p, q), name  # lr 0: the continued weights are the starting weights
    saved = GenModel.load(tmp_path / "b")
    assert saved.spec.train["init_train"]["steps_done"] == 2
    assert saved.spec.train["config"]["object_weight"] == 5.0


def test_continued_training_refuses_another_frame_size(tmp_path) -> None:
    train(_tiny_cfg(), tmp_path / "a", progress=False)
    other = _tiny_cfg(init=str(tmp_path / "a"), clips=ClipConfig(frames=4, size=24, max_start=4))
    with pytest.raises(GenCheckpointError, match="frame size"):
        train(other, tmp_path / "b", progress=False)


def test_prompt_dropout_trains_the_empty_prompt_and_guidance_round_trips(tmp_path) -> None:
    """With every prompt dropped the loss never depends on a prompt word: the word embeddings receive
    no gradient and move only by weight decay (a common factor), while the padding row learns."""
    start = train(_tiny_cfg(steps=1, lr=0.0), tmp_path / "a", progress=False)
    emb0 = start.text.embed.weight.detach().clone()  # [V, d]
    model = train(
        _tiny_cfg(init=str(tmp_path / "a"), prompt_dropout=1.0, ema=0.0), tmp_path / "b", progress=False
    )
    emb = model.text.embed.weight.detach()
    words = emb0[2:].flatten()
    ratio = emb[2:].flatten() / words
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-5)  # decay only
    assert not torch.allclose(emb[0] / emb0[0], ratio[0].expand_as(emb[0]), rtol=1e-3)  # the pad row learned
    assert GenModel.load(tmp_path / "b").spec.train["config"]["prompt_dropout"] == 1.0
    null = model.encode_null()  # [1, L, d]
    assert null.shape == (1, model.spec.model.text_len, model.spec.model.dim)
    assert not torch.allclose(null, model.encode_prompts(["a red circle"]))
    guided = GenModel(dataclasses.replace(model.spec, guidance=3.5))
    guided.load_state_dict(model.state_dict())
    guided.save(tmp_path / "c")
    assert GenModel.load(tmp_path / "c").spec.guidance == 3.5
    assert GenModel.load(tmp_path / "b").spec.guidance == 1.0


def test_prompt_switch_clips_show_the_prompt_only_after_their_context() -> None:
    cfg = ClipConfig(frames=8, sink_gap_p=0.0, switch_p=1.0)
    sampler = ClipSampler(cfg, seed=5)
    after = before = n = 0.0
    for _ in range(40):
        clip = sampler.sample()
        assert clip.context in (2, 4, 6) and clip.frames.shape == (8, 3, 64, 64)
        _, colour, shape, *_ = clip.prompt.split()
        rep = score(list(to_pixels(clip.frames[clip.context :])), colour, shape)
        after += rep.shape_rate  # colour and shape
        old = score(list(to_pixels(clip.frames[: clip.context])), colour, shape)
        before += old.shape_rate
        n += 1
    assert after / n >= 0.9  # the prompt describes the frames after the switch
    assert before / n <= 0.3  # and, but for chance, not the other world's before it
    plain = ClipSampler(dataclasses.replace(cfg, switch_p=0.0), seed=5)
    assert all(plain.sample().context == 0 for _ in range(10))


def test_switch_context_frames_are_clean_and_carry_no_loss() -> None:
    g = torch.Generator().manual_seed(0)
    context = torch.tensor([0, 2, 4, 6])
    t = noise_levels(4, 2, 4, 0.0, 3.0, g, context)  # [4, 8], independent levels per block
    for b, c in enumerate(context.tolist()):
        assert torch.all(t[b, :c] == 0) and torch.all(t[b, c:] > 0)  # the loss covers frames with t > 0
    g = torch.Generator().manual_seed(0)
    assert torch.equal(noise_levels(4, 2, 4, 0.0, 3.0, g)[1:, 6:], t[1:, 6:])  # later frames unchanged


def test_switch_training_runs_and_is_recorded(tmp_path) -> None:
    cfg = _tiny_cfg(clips=ClipConfig(frames=4, size=16, max_start=4, switch_p=0.5))
    train(cfg, tmp_path / "a", progress=False)
    assert GenModel.load(tmp_path / "a").spec.train["config"]["clips"]["switch_p"] == 0.5
