"""streamrt.kernels: Triton kernels, each with a plain-PyTorch reference beside it and one dispatch
point that picks Triton on CUDA and the reference elsewhere."""
