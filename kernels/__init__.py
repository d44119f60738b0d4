"""streamrt.kernels: Triton kernels, each with a plain-PyTorch reference beside it and one dispatch
point that picks Triton on CUDA and the reference elsewhere.

- `rope_shift_(k, delta, inv_freq, sections)`: rotate cached keys in place by position deltas (1-D
  RoPE and M-RoPE sections), fp32 math. Used by `StreamCache` eviction.
- `sink_ring_attention(q, k_buf, v_buf, sink_len=, ring_start=, ring_len=, causal=)`: attention over
  sink rows + a ring-buffer window read in place, GQA, causal or block mask.
- `token_drop(tokens, prev, threshold=, budget=)`: differential token drop -> kept indices.
"""

from streamrt.kernels.rope_shift import rope_shift_
from streamrt.kernels.sink_attention import sink_ring_attention
from streamrt.kernels.token_drop import token_drop

__all__ = ["rope_shift_", "sink_ring_attention", "token_drop"]
