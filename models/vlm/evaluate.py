"""Score a streaming VLM adapter on held-out shapes-world streams (the oracle is the world itself).

For each held-out seed, the stream is rendered at the world's own size and fed chunk by chunk
through the adapter exactly as the engine does (system prompt, then per chunk: encode, prefill,
greedy decode until a stop or the silence token, which enter the cache too; questions at chunk
boundaries as user turns), with a StreamCache that evicts by the given retention policy. Scores:

- event F1: precision/recall/F1 of `parse()`d commentary mentions against `mention()` of the true
  events, pooled over all chunks; "aligned" counts a mention only in the chunk where it happened,
  "stream" ignores timing (`mention_f1` over the whole stream, as the grammar intends).
- QA accuracy per question type: the normalised answer equals the truth (for "what just happened?"
  also an equal multiset of mentions).
- silence precision / recall: of the chunks the model kept silent, how many had no event; of the
  event-free chunks, how many it kept silent.

Owns `QualityReport` and the greedy loop; does not know the harness (streamrt.bench.vlm_quality).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from streamrt.cache import HFStreamCache, RetentionPolicy, StreamCacheConfig
from streamrt.models.vlm.base import VLMAdapter
from streamrt.models.vlm.shapes_data import TRAIN_SEED_BASE, stream_chunks, world_config

from streamrt.synth import QTYPES, Mention, mention, mention_f1, parse

MAX_NEW_TOKENS = 96


@dataclass(slots=True)
class QualityReport:
    """Counts accumulated over held-out streams; properties give the scores."""

    chunks: int = 0
    true_mentions: list[Mention] = field(default_factory=list)
    said_mentions: list[Mention] = field(default_factory=list)
    aligned_hits: int = 0
    silent_pred: int = 0
    silent_true: int = 0
    silent_both: int = 0
    qa_total: Counter[str] = field(default_factory=Counter)
    qa_right: Counter[str] = field(default_factory=Counter)
    examples: list[tuple[float, str, str]] = field(default_factory=list)
    """(time, said, truth) of the first chunks, for the model card."""

    @property
    def event_f1_stream(self) -> tuple[float, float, float]:
        return mention_f1(self.said_mentions, self.true_mentions)

    @property
    def event_f1_aligned(self) -> tuple[float, float, float]:
        p = self.aligned_hits / len(self.said_mentions) if self.said_mentions else 0.0
        r = self.aligned_hits / len(self.true_mentions) if self.true_mentions else 0.0
        return p, r, 2 * p * r / (p + r) if p + r else 0.0

    @property
    def silence_precision(self) -> float:
        return self.silent_both / self.silent_pred if self.silent_pred else 0.0

    @property
    def silence_recall(self) -> float:
        return self.silent_both / self.silent_true if self.silent_true else 0.0

    def qa_accuracy(self, qtype: str | None = None) -> float:
        if qtype is None:
            total, right = sum(self.qa_total.values()), sum(self.qa_right.values())
        else:
            total, right = self.qa_total[qtype], self.qa_right[qtype]
        return right / total if total else 0.0

    def figures(self) -> dict[str, float]:
        """Flat figures for the benchmark harness / JSON."""
        ps, rs, fs = self.event_f1_stream
        pa, ra, fa = self.event_f1_aligned
        out = {
            "event_f1": fa,
            "event_precision": pa,
            "event_recall": ra,
            "event_f1_stream": fs,
            "event_precision_stream": ps,
            "event_recall_stream": rs,
            "silence_precision": self.silence_precision,
            "silence_recall": self.silence_recall,
            "qa_accuracy": self.qa_accuracy(),
            "chunks": float(self.chunks),
            "questions": float(sum(self.qa_total.values())),
        }
        for q in QTYPES:
            out[f"qa_{q}"] = self.qa_accuracy(q)
            out[f"qa_{q}_n"] = float(self.qa_total[q])
        return out


def greedy(adapter: VLMAdapter, cache: HFStreamCache, logits: torch.Tensor, t: float) -> list[int]:
    """Greedy-decode from `logits` until a stop id or the silence token (max MAX_NEW_TOKENS); the
    generated ids and the closing token all enter the cache. Returns the ids before the closing one."""
    sp = adapter.special
    ends = set(sp.stop_ids) | ({sp.silence_id} if sp.silence_id is not None else set())
    out: list[int] = []
    tok = int(logits.argmax())  # host sync: one per generated token
    while tok not in ends and len(out) < MAX_NEW_TOKENS:
        out.append(tok)
        tok = int(adapter.decode_step(cache, tok, timestamp=t).argmax())
    close = [tok if tok in ends else sp.eos_id] + (adapter.turn_end_ids() if tok != sp.silence_id else [])
    adapter.prefill_text(cache, close, kind="assistant", timestamp=t)
    return out


def normalise_answer(text: str) -> str:
    return " ".join(text.lower().replace("?", " ").split()).strip(" .")


def answer_correct(said: str, truth: str, qtype: str) -> bool:
    if normalise_answer(said) == normalise_answer(truth):
        return True
    return qtype == "last_event" and bool(parse(truth)) and Counter(parse(said)) == Counter(parse(truth))


def evaluate(
    adapter: VLMAdapter,
    seeds: list[int],
    chunks_per_stream: int,
    *,
    question_rate: float = 0.5,
    retention: RetentionPolicy | None = None,
    capacity: int = 2048,
    progress: bool = False,
) -> QualityReport:
    """Run the adapter over `chunks_per_stream` chunks of each held-out seed and score it."""
    if any(s >= TRAIN_SEED_BASE for s in seeds):
        raise ValueError(f"held-out seeds must be below {TRAIN_SEED_BASE} (training seeds)")
    from tqdm import tqdm

    retention = retention or RetentionPolicy(sink_tokens=0, text_window=256, vision_chunks=8)
    rep = QualityReport()
    bar = tqdm(total=len(seeds) * chunks_per_stream, desc="vlm-quality", unit="chunk", disable=not progress)
    for seed in seeds:
        cfg = world_config(seed)
        cache = adapter.new_cache(StreamCacheConfig(capacity=capacity, retention=retention))
        adapter.prefill_text(cache, adapter.system_ids(), kind="system", timestamp=0.0)
        stream = stream_chunks(
            cfg,
            fps=adapter.fps,
            frames_per_chunk=adapter.frames_per_chunk,
            render_size=(cfg.height, cfg.width),
            question_rate=question_rate,
            qa_seed=seed + 17,
        )
        for _ in range(chunks_per_stream):
            s = next(stream)
            t = s.times[-1]
            logits = adapter.prefill_vision(cache, adapter.encode_chunk(s.frames, s.times))
            said = adapter.decode(greedy(adapter, cache, logits, t))
            pred, truth = parse(said), [mention(e) for e in s.events]
            rep.chunks += 1
            rep.said_mentions += pred
            rep.true_mentions += truth
            rep.aligned_hits += sum((Counter(pred) & Counter(truth)).values())
            silent, quiet = not said.strip(), not s.events
            rep.silent_pred += silent
            rep.silent_true += quiet
            rep.silent_both += silent and quiet
            if len(rep.examples) < 12 and (s.events or said):
                rep.examples.append((t, said, s.commentary or ""))
            for qa in s.qas:
                logits = adapter.prefill_text(cache, adapter.user_ids(qa.question), kind="user", timestamp=t)
                got = adapter.decode(greedy(adapter, cache, logits, t))
                rep.qa_total[qa.qtype] += 1
                rep.qa_right[qa.qtype] += answer_correct(got, qa.answer, qa.qtype)
            bar.update(1)
    bar.close()
    return rep
