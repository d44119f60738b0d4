"""Distillation of a draft model from teacher samples: sequence-level knowledge distillation (cross
entropy on the teacher's own greedy tokens, which is what greedy verification accepts) plus the KL
divergence to the teacher's full distribution at the same positions (what sampling verification
accepts). Random windows of the samples, AdamW with warm-up and cosine decay, seeded.

Owns `DistillConfig` and the loop; knows nothing about where samples come from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from streamrt.models.draft.data import Sample
from tqdm import tqdm
from transformers import AutoModelForCausalLM, PretrainedConfig


@dataclass(frozen=True, slots=True)
class DistillConfig:
    steps: int = 600
    """Optimizer steps."""
    batch: int = 8
    """Windows per step."""
    window: int = 256
    """Tokens per window (samples shorter than this are used whole)."""
    lr: float = 3e-3
    """Peak learning rate."""
    kl_weight: float = 1.0
    """Weight of KL(teacher || draft) next to the cross entropy on teacher tokens."""
    seed: int = 0


def _window(s: Sample, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random window: ids [w], supervised mask [w], teacher log-probs [m_w, V]."""
    start = int(torch.randint(0, max(1, s.ids.shape[0] - n + 1), (1,), generator=g))
    end = min(start + n, s.ids.shape[0])
    sup = s.supervised[start:end].clone()
    sup[0] = False  # the first token of a window has no context
    rows = s.supervised.cumsum(0)[sup.nonzero().squeeze(1) + start] - 1  # rows of s.logprobs
    lp = s.logprobs[rows]
    return s.ids[start:end], sup, lp


def distill(
    config: PretrainedConfig, samples: Sequence[Sample], cfg: DistillConfig, *, progress: bool = False
) -> torch.nn.Module:
    """Train a draft of `config` on `samples`; returns it in eval mode."""
    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_config(config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    warm = max(1, cfg.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s / cfg.steps, 1.0)))
    )
    g = torch.Generator().manual_seed(cfg.seed)
    bar = tqdm(range(cfg.steps), desc="distill", disable=not progress)
    for _ in bar:
        loss_sum = torch.zeros(())
        for _ in range(cfg.batch):
            s = samples[int(torch.randint(0, len(samples), (1,), generator=g))]
            ids, sup, lp = _window(s, cfg.window, g)
            if not sup.any():
                continue
            logits = model(ids[None]).logits[0, :-1]  # [w-1, V]: row i-1 predicts token i
            pred = logits[sup[1:]].log_softmax(-1)  # [m, V]
            ce = torch.nn.functional.nll_loss(pred, ids[1:][sup[1:]])
            kl = (lp.exp() * (lp - pred)).sum(-1).mean()
            loss_sum = loss_sum + ce + cfg.kl_weight * kl
        loss = loss_sum / cfg.batch
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    return model.eval()


@torch.no_grad()
def greedy_agreement(draft: torch.nn.Module, samples: Sequence[Sample]) -> float:
    """Fraction of the teacher's generated tokens the draft predicts greedily from the same prefix
    (the per-token acceptance of greedy verification when drafting one token)."""
    hit = total = 0
    for s in samples:
        logits = draft(s.ids[None]).logits[0, :-1]
        sup = s.supervised[1:]
        hit += int((logits[sup].argmax(-1) == s.ids[1:][sup]).sum())
        total += int(sup.sum())
    return hit / max(total, 1)
