"""Flow matching with a timestep shift: the noising path, the training target and an Euler step.

Path: x_t = (1 - t) x_0 + t eps, t in [0, 1] (1 = pure noise). The model predicts the clean frame x_0
(x-prediction: a pixel-space patch of 8x8x3 = 192 values is wider than the tiny model's hidden width,
and clean frames live on a low-dimensional manifold while noise does not, so predicting x_0 passes
through the bottleneck where predicting v = eps - x_0 cannot). The sampler steps along the flow with
the velocity implied by x_0: from t to t' the state becomes x_0 + (t'/t)(x_t - x_0).
Shift s > 1 spends more of the schedule at high noise: t' = s t / (1 + (s - 1) t) (SD3 / Wan).
Math only: no model, no cache. Every function works per frame (t broadcasts over [B, F]).
"""

from __future__ import annotations

import torch
from torch import Tensor


def shift_t(t: Tensor, shift: float) -> Tensor:
    return shift * t / (1 + (shift - 1) * t)


def noise_to(x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
    """x0, eps: [B, F, C, H, W], t: [B, F] -> x_t."""
    tt = t[..., None, None, None].to(x0.dtype)
    return (1 - tt) * x0 + tt * eps


def timesteps(steps: int, shift: float, start: float = 1.0) -> Tensor:
    """Descending noise levels [steps + 1] from `start` (shifted) to 0, for `steps` Euler steps."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return shift_t(torch.linspace(start, 0.0, steps + 1, dtype=torch.float64), shift).float()


def step(x: Tensor, x0: Tensor, t_from: Tensor, t_to: Tensor) -> Tensor:
    """One Euler step from t_from > 0 to t_to along v = (x - x0) / t_from (t per frame: [B, F] or scalar)."""
    r = (t_to / t_from).to(x.dtype)
    r = r[..., None, None, None] if r.ndim else r
    return x0 + r * (x - x0)
