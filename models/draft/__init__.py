"""streamrt.models.draft: small draft models for speculative decoding, distilled from a target.

    from streamrt.models.draft import draft_config, distill, collect_lm, load_draft
    cfg = draft_config(target.config, layers=2)             # same vocabulary (same tokenizer)
    data = collect_lm(target, prompts, max_new_tokens=64)   # the target's own greedy outputs
    draft = distill(cfg, data, DistillConfig(steps=400))    # sequence-level KD + KL to its logits

`streamrt train draft` runs it for the built-in VLM (`assets/draft/builtin`). Modules: `model`
(config, save/load), `data` (teacher samples from a causal LM or a VLM adapter's commentary),
`train` (the distillation loop), `cli` (the trainer command).
"""

from streamrt.models.draft.data import Sample, collect_commentary, collect_lm
from streamrt.models.draft.model import draft_config, load_draft, save_draft
from streamrt.models.draft.train import DistillConfig, distill, greedy_agreement

__all__ = [
    "DistillConfig",
    "Sample",
    "collect_commentary",
    "collect_lm",
    "distill",
    "draft_config",
    "greedy_agreement",
    "load_draft",
    "save_draft",
]
