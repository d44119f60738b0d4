"""streamrt.spec: lossless speculative decoding for text responses over a StreamCache.

    from streamrt.spec import SpeculativeDecoder, Target, NGramDrafter, SelfSpecDrafter, ModelDrafter
    target = Target(model, cache, hf)                 # the cache already holds the prompt / stream
    dec = SpeculativeDecoder(target, [NGramDrafter(), SelfSpecDrafter(model, cache, layers=1)])
    dec.observe(prompt_ids)                           # history the n-gram drafter searches
    res = dec.generate(last_logits, max_new_tokens=64, eos=eos_id, deadline=time.monotonic() + 0.2)
    res.tokens, res.stop, res.stats.mean_accepted

One verification core (`verify`) for every drafter: greedy longest-prefix + one target token, or
rejection sampling with the drafter's exact q. `batch_invariant` makes a model's forward independent
of how many tokens it processes at once (for bitwise oracles in tests).
"""

from streamrt.spec.adaptive import Planner
from streamrt.spec.decode import Deadline, SpeculativeDecoder
from streamrt.spec.drafter import Drafter, History
from streamrt.spec.model_draft import ModelDrafter
from streamrt.spec.ngram import NGramDrafter
from streamrt.spec.sampling import choose, process
from streamrt.spec.selfspec import SelfSpecDrafter
from streamrt.spec.target import Target
from streamrt.spec.types import DecodeResult, Proposal, RoundStats, SamplingParams, SpecConfig, SpecError
from streamrt.spec.verify import Verdict, verify

__all__ = [
    "Deadline",
    "DecodeResult",
    "Drafter",
    "History",
    "ModelDrafter",
    "NGramDrafter",
    "Planner",
    "Proposal",
    "RoundStats",
    "SamplingParams",
    "SelfSpecDrafter",
    "SpecConfig",
    "SpecError",
    "SpeculativeDecoder",
    "Target",
    "Verdict",
    "choose",
    "process",
    "verify",
]
