"""Whether Triton can run here, and the rule every dispatch point follows.

Triton is optional (`pip install 'streamrt[triton]'`). The dispatch rule: Triton on CUDA tensors when
Triton imports, the plain-PyTorch reference otherwise. Tests run the Triton kernels on CPU tensors
with `TRITON_INTERPRET=1` set before Triton is imported (the interpreter is chosen when a kernel is
decorated). This module owns no kernels; it only answers the question.
"""

from __future__ import annotations

import importlib.util

import torch

HAVE_TRITON: bool = importlib.util.find_spec("triton") is not None


def use_triton(t: torch.Tensor) -> bool:
    """True when the Triton kernel should run for a tensor on this device."""
    return HAVE_TRITON and t.is_cuda
