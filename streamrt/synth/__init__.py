"""streamrt.synth: the shapes world, a seeded procedural video world with a ground-truth timeline."""
