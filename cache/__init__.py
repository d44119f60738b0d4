"""streamrt.cache: streaming KV caches (sink + text window + vision window for VLMs, sink + rolling
frame window for video diffusion) and their position (RoPE) policies."""
