"""streamrt.models.gen: the causal video diffusion transformer, its prompt encoder, flow matching and training."""
