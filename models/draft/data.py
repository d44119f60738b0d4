"""Teacher samples for draft distillation: text sequences the target produced itself, with the
target's log-probabilities at every position it generated.

`collect_lm`: a causal LM teacher continues prompts greedily; one teacher forward over each whole
sequence gives its log-probs. `collect_commentary`: a VLM adapter comments generated shapes-world
streams (the engine's protocol: system prompt, per chunk the vision tokens then silence or a response
and its stop token); the sample keeps the text view (vision tokens replaced by the template's vision
prefix/suffix ids, as the drafter sees the history) and the teacher's log-probs at each generated token.

Owns `Sample`; knows nothing about the draft model or the training loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm


@dataclass(frozen=True, slots=True)
class Sample:
    """One teacher sequence."""

    ids: torch.Tensor  # [n] int64
    supervised: torch.Tensor  # [n] bool: True where the teacher generated ids[i] (from ids[:i])
    logprobs: torch.Tensor  # [m, V] fp32 teacher log-probs at the m supervised positions


@torch.no_grad()
def collect_lm(
    teacher: torch.nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int, *, progress: bool = False
) -> list[Sample]:
    """Greedy continuations of `prompts` by a causal LM teacher, with its log-probs."""
    out = []
    for prompt in tqdm(prompts, desc="teacher", disable=not progress):
        ids = torch.tensor([list(prompt)])
        full = teacher.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)[0]  # [n]
        logits = teacher(full[None]).logits[0].float()  # [n, V]
        sup = torch.zeros(full.shape[0], dtype=torch.bool)
        sup[len(prompt) :] = True
        lp = logits[:-1].log_softmax(-1)[sup[1:]]  # row i-1 predicts token i
        out.append(Sample(full, sup, lp))
    return out


@torch.no_grad()
def collect_commentary(
    adapter: object, seeds: Sequence[int], chunks: int, *, max_new_tokens: int = 48, progress: bool = False
) -> list[Sample]:
    """One sample per seed: the adapter's plain greedy commentary of a generated stream."""
    from streamrt.spec.workloads import no_eviction
    from streamrt.synth import World, WorldConfig

    a = adapter
    settings, special, tmpl = a.settings, a.special, a.template  # type: ignore[attr-defined]
    h, w = settings.frame_size or (180, 320)
    marks = [*a.encode(tmpl.vision_prefix), *a.encode(tmpl.vision_suffix)]  # type: ignore[attr-defined]
    close = list(a.turn_end_ids())  # type: ignore[attr-defined]
    samples = []
    for seed in tqdm(seeds, desc="teacher streams", disable=not progress):
        world = World(
            WorldConfig.preset("demo", seed=seed, width=2 * w, height=2 * h, fps=float(settings.fps))
        )
        frames = world.frames()
        hf = a.new_cache(no_eviction(chunks * 128 + 256))  # type: ignore[attr-defined]
        ids = list(a.system_ids())  # type: ignore[attr-defined]
        a.prefill_text(hf, ids, kind="system")  # type: ignore[attr-defined]
        sup = [False] * len(ids)
        lps: list[torch.Tensor] = []
        for _ in range(chunks):
            batch = [next(frames) for _ in range(settings.frames_per_chunk)]
            chunk = a.encode_chunk(np.stack([f.pixels for f in batch]), [f.t for f in batch])  # type: ignore[attr-defined]
            logits = a.prefill_vision(hf, chunk)  # type: ignore[attr-defined]
            ids += marks
            sup += [False] * len(marks)
            for i in range(max_new_tokens):
                tok = int(logits.argmax())
                ids.append(tok)
                sup.append(True)
                lps.append(logits.float().log_softmax(-1))
                if tok in special.stop_ids or tok == special.silence_id or i + 1 == max_new_tokens:
                    break
                logits = a.decode_step(hf, tok)  # type: ignore[attr-defined]
            a.prefill_text(hf, [tok, *close], kind="assistant")  # type: ignore[attr-defined]
            ids += close
            sup += [False] * len(close)
        samples.append(Sample(torch.tensor(ids), torch.tensor(sup), torch.stack(lps)))
    return samples
