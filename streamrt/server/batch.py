"""Cross-session batching of generate-mode blocks: the denoise steps of several sessions in one forward.

Sessions of the sequential schedule that share the model, the frame size, the block size and the noise
schedule (steps, v2v strength) run their next block together: their start states are concatenated
along the batch axis ([B, b, 3, H, W]), every denoise step and the clean commit pass is one model call,
and attention is routed per session through `BatchedFrameContext` (row i of every tensor belongs to
session i and attends only to its own FrameCache). The prompt token states are concatenated the same
way; cross-attention K/V stay cached per session. What stays per session: the noise generator, the
cache, the v2v skip test and every counter, so a batched block is the block the session would have
produced alone (tests/server/test_batch.py checks it against solo `GenEngine` runs).

The per-session halves of a block (`plan_t2v`, `plan_v2v`, `finish_v2v`) follow `GenEngine.next_block`
and `GenEngine.transform` step for step; the engine has no public split of "start state" and
"denoise + commit", so this module reads its helpers `_noise` and `_ts` (see the server docs for the
engine change that would remove the duplication). Owns nothing between calls. Does not know sessions,
sockets or deadlines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from streamrt.cache.frame import FrameCache
from streamrt.gen.engine import NULL_PROMPT, GenEngine, _patch_change, advance
from streamrt.models.gen.flow import noise_to


class BatchedFrameContext:
    """The model's AttentionContext over B per-session FrameCaches of batch 1 (row i = cache i)."""

    def __init__(self, caches: Sequence[FrameCache]) -> None:
        self.caches = list(caches)

    def self_attention(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        # q, k, v: [B, H, N, D] -> [B, H, N, D]; each row writes and reads only its own cache
        return torch.cat(
            [
                c.self_attention(layer, q[i : i + 1], k[i : i + 1], v[i : i + 1])
                for i, c in enumerate(self.caches)
            ]
        )

    def cross_kv(self, layer: int, compute: Callable[[], tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """Per-session cached K/V ([1, H, L, D] each); sessions missing them get rows of one batched compute."""
        batched: tuple[Tensor, Tensor] | None = None

        def row(i: int) -> tuple[Tensor, Tensor]:
            nonlocal batched
            if batched is None:
                batched = compute()  # [B, H, L, D] each
            return batched[0][i : i + 1].clone(), batched[1][i : i + 1].clone()

        kvs = [c.cross_kv(layer, lambda i=i: row(i)) for i, c in enumerate(self.caches)]
        return torch.cat([k for k, _ in kvs]), torch.cat([v for _, v in kvs])


@dataclass(frozen=True, slots=True)
class BlockPlan:
    """The start of one session's block: what the fused denoise needs."""

    x: Tensor
    """[1, b, 3, H, W] start state (pure noise, or noised input frames)."""
    ts: Tensor
    """[steps + 1] descending noise levels."""
    frames: Tensor | None = None
    """Video to video: the input frames [1, b, 3, H, W] (the next skip test compares against them)."""


def group_key(eng: GenEngine, steps: int, strength: float) -> Hashable:
    """Blocks with equal keys can share a forward."""
    guidance = eng.guidance if eng.guiding() else 1.0
    return (
        id(eng.model),
        eng.h,
        eng.w,
        eng.dtype,
        eng.level.block_frames,
        steps,
        strength,
        eng.sampler,
        guidance,
    )


def t2v_key(eng: GenEngine) -> Hashable | None:
    """Text to video: the key of the next block (None: this engine cannot batch, e.g. pipelined)."""
    if eng.cfg.pipelined or eng.text is None:
        return None
    steps = eng.cfg.first_block_steps if eng.cache.committed == 0 else eng.level.steps
    return group_key(eng, steps, 1.0)


def v2v_key(eng: GenEngine) -> Hashable | None:
    if eng.cfg.pipelined or eng.text is None:
        return None
    return group_key(eng, eng.level.steps, eng.cfg.v2v_strength)


def plan_t2v(eng: GenEngine) -> BlockPlan:
    """`GenEngine.next_block` (sequential) up to the denoise loop."""
    eng.last_born = time.perf_counter()
    steps = eng.cfg.first_block_steps if eng.cache.committed == 0 else eng.level.steps
    return BlockPlan(eng._noise(eng.level.block_frames), eng._ts(steps))


def plan_v2v(eng: GenEngine, frames: Tensor) -> BlockPlan | Tensor:
    """`GenEngine.transform` up to the denoise loop: the plan, or the repeated last output (no model work)."""
    frames = frames.to(eng.dtype)  # [1, b, 3, H, W]
    eng._inputs += 1
    if eng._last_out is not None and eng._last_out.shape == frames.shape:
        if eng.level.input_stride > 1 and eng._inputs % eng.level.input_stride:
            eng.counters["v2v_strided"] += 1
            return eng._last_out
        assert eng._last_in is not None
        if _patch_change(frames, eng._last_in) < eng.cfg.v2v_similarity:  # host sync: one scalar
            eng.counters["v2v_skipped"] += 1
            return eng._last_out
    ts = eng._ts(eng.level.steps, eng.cfg.v2v_strength)
    x = noise_to(frames, eng._noise(frames.shape[1]), ts[0].expand(1, frames.shape[1]))
    return BlockPlan(x, ts, frames)


@dataclass(frozen=True, slots=True)
class SavedState:
    """What planning a block changes in an engine besides its cache's in-flight slots."""

    rng: Tensor
    inputs: int
    counters: dict[str, int]
    last_born: float


def save_state(eng: GenEngine) -> SavedState:
    return SavedState(eng.gen.get_state(), eng._inputs, dict(eng.counters), eng.last_born)


def restore_state(eng: GenEngine, s: SavedState) -> None:
    """Undo `plan_*` (a failed fused step). The cache needs nothing: its next pass overwrites the
    in-flight slots, and commits come last in `run_blocks`."""
    eng.gen.set_state(s.rng)
    eng._inputs, eng.counters, eng.last_born = s.inputs, dict(s.counters), s.last_born


def finish(eng: GenEngine, plan: BlockPlan, out: Tensor) -> None:
    """The bookkeeping after a block's commit (as the end of `next_block` / `transform`)."""
    if plan.frames is not None:
        eng._last_in, eng._last_out = plan.frames, out
    eng.emitted += out.shape[1]


@torch.no_grad()
def run_blocks(engines: Sequence[GenEngine], plans: Sequence[BlockPlan]) -> list[Tensor]:
    """Denoise and commit one block per engine in shared forwards; returns each engine's clean block
    [1, b, 3, H, W]. All engines must share `group_key` (same model, shape, block and schedule)."""
    if not engines:
        return []
    model, ts, shape = engines[0].model, plans[0].ts, plans[0].x.shape
    key = group_key(engines[0], 0, 0.0)
    if any(
        group_key(e, 0, 0.0) != key or p.x.shape != shape or not torch.equal(p.ts, ts)
        for e, p in zip(engines, plans, strict=True)
    ):
        raise ValueError(
            "run_blocks: engines of different models, shapes, samplers, guidance or noise schedules"
        )
    n, b = len(engines), plans[0].x.shape[1]
    ctx = BatchedFrameContext([e.cache for e in engines])
    text = torch.cat([e.text for e in engines if e.text is not None])  # [B, L, d]
    x = torch.cat([p.x for p in plans])  # [B, b, 3, H, W]
    w = engines[0].guidance if engines[0].guiding() else 1.0
    null = torch.cat([e.null_text() for e in engines]) if w != 1.0 else None  # [B, L, d]
    for i in range(len(ts) - 1):
        for e in engines:
            e.cache.begin_pass([b])
        t = ts[i].expand(n, b)
        if null is not None:  # classifier-free guidance, as GenEngine._guided
            for e in engines:
                e.cache.set_prompt(NULL_PROMPT)
            x0_null = model(x, t, null, ctx)
            for e in engines:
                e.cache.set_prompt(e.prompt)
            x0 = torch.lerp(x0_null, model(x, t, text, ctx), w)
        else:
            x0 = model(x, t, text, ctx)
        x = advance(
            engines[0].sampler, x, x0, ts[i], ts[i + 1], lambda b: torch.cat([e._noise(b) for e in engines])
        )
    x = x.clamp(-1, 1)
    for e in engines:  # the clean pass: its K/V are committed, pointers advance once
        e.cache.begin_pass([b], clean_frames=b)
    model.write_kv(x, torch.zeros(n, b, dtype=x.dtype), text, ctx)  # K/V only, as GenEngine._commit
    out = [x[i : i + 1] for i in range(n)]
    for e, o in zip(engines, out, strict=True):
        e.cache.commit(o)
    return out
