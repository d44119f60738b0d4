"""streamrt.models: model adapters (Hugging Face VLMs, video diffusion), the tiny built-in models,
draft models and training scripts. Model files hold the math only; caches and kernels are applied
from outside."""
