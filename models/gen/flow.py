"""Flow matching with a timestep shift: the noising path, the training target and an Euler step.

Path: x_t = (1 - t) x_0 + t eps, t in [0, 1] (1 = pure noise); the model predicts v = eps - x_0.
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


def velocity_target(x0: Tensor, eps: Tensor) -> Tensor:
    return eps - x0


def timesteps(steps: int, shift: float, start: float = 1.0) -> Tensor:
    """Descending noise levels [steps + 1] from `start` (shifted) to 0, for `steps` Euler steps."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return shift_t(torch.linspace(start, 0.0, steps + 1, dtype=torch.float64), shift).float()


def euler(x: Tensor, v: Tensor, t_from: Tensor, t_to: Tensor) -> Tensor:
    """One Euler step of dx/dt = v from t_from to t_to (per frame: [B, F])."""
    return x + (t_to - t_from)[..., None, None, None].to(x.dtype) * v


def predict_x0(x: Tensor, v: Tensor, t: Tensor) -> Tensor:
    """The clean frame the velocity points at: x_0 = x_t - t v."""
    return x - t[..., None, None, None].to(x.dtype) * v
