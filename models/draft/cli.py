"""`streamrt train draft`: distil a small draft model from a target for speculative decoding."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "draft model for speculative decoding, distilled from a target (default: the built-in VLM)"
DESCRIPTION = """\
Distil a 1-2 layer draft model (Qwen2 architecture, the target's vocabulary and tokenizer) from a
target model's own outputs: the target comments generated shapes-world streams (a VLM, default the
built-in model) or continues random prompts (a causal LM, --lm), and the draft learns its greedy
tokens (cross entropy) and full distributions (KL). The result is a Hugging Face folder with
draft.json (target, data, greedy agreement on held-out streams) that `streamrt bench spec` and
`streamrt.spec.ModelDrafter` use. Seeded. The shipped assets/draft/builtin was made with the defaults.

examples:
  streamrt train draft --out assets/draft/builtin
  streamrt train draft --out runs/draft --streams 8 --steps 100      # smoke run
  streamrt train draft --lm path/to/causal-lm --out runs/lm-draft   # any HF causal LM target
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from streamrt.models.draft.train import DistillConfig

    d = DistillConfig()
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--target", default="builtin", help="VLM target for load_adapter (default builtin)")
    p.add_argument("--lm", default=None, help="a causal LM path / hub id as the target instead of a VLM")
    p.add_argument("--layers", type=int, default=2, help="draft layers (default 2)")
    p.add_argument(
        "--streams", type=int, default=48, help="teacher streams (VLM) or prompts (LM) (default 48)"
    )
    p.add_argument("--chunks", type=int, default=40, help="chunks per teacher stream (default 40)")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    p.add_argument("--batch", type=int, default=d.batch, help=f"windows per step (default {d.batch})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of data and initialisation")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import hashlib

    import torch
    from streamrt.models.draft import (
        DistillConfig,
        collect_commentary,
        collect_lm,
        distill,
        draft_config,
        greedy_agreement,
        save_draft,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    held = max(2, args.streams // 8)
    info_extra: dict[str, object] = {}
    if args.lm:
        from transformers import AutoModelForCausalLM

        teacher = AutoModelForCausalLM.from_pretrained(args.lm).eval()
        g = torch.Generator().manual_seed(args.seed)
        vocab = teacher.config.get_text_config().vocab_size
        prompts = [torch.randint(0, vocab, (16,), generator=g).tolist() for _ in range(args.streams + held)]
        data = collect_lm(teacher, prompts, max_new_tokens=64, progress=True)
        config, target = teacher.config, args.lm
    else:
        from streamrt.models.vlm import load_adapter
        from streamrt.models.vlm.loader import resolve

        adapter = load_adapter(args.target)
        seeds = [args.seed * 100_000 + 1000 + i for i in range(args.streams + held)]
        data = collect_commentary(adapter, seeds, args.chunks, progress=True)
        config, target = adapter.model.config, args.target
        weights = Path(resolve(args.target)) / "model.safetensors"
        if weights.is_file():
            info_extra["target_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    train, test = data[held:], data[:held]
    cfg = dataclasses.replace(DistillConfig(), steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed)
    draft = distill(draft_config(config, layers=args.layers), train, cfg, progress=True)
    agreement = greedy_agreement(draft, test)
    info = {
        "target": target,
        "layers": args.layers,
        "teacher_samples": len(train),
        "held_out_samples": len(test),
        "chunks_per_stream": None if args.lm else args.chunks,
        "distill": dataclasses.asdict(cfg),
        "held_out_greedy_agreement": round(agreement, 4),
        **info_extra,
    }
    save_draft(draft, args.out, info)
    print(f"saved {args.out}: held-out greedy agreement {agreement:.3f}")
    return 0
