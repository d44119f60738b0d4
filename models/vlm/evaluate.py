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

When to speak after a chunk: with `policy=None` plain greedy decoding decides (the model speaks unless
silence is the argmax: the figures of the model card); with an engine `ResponsePolicy` the decision
is the engine's (`streamrt.engine.Session`): the policy reads P(silence), the scene change (from
the engine's own `ChunkEncoder`, which also applies the token drop when one is asked for) and the
time of the last commentary; a commentary starts from the greedy token with silence excluded, and a silent chunk
puts the silence token in the cache. Every chunk's signal and outcome is kept in `QualityReport.trace`
(`ChunkTrace`), so one run also gives the open-loop silence precision/recall of any threshold
(`threshold_table`).

Open loop (`follow=`): the run scores its own response after every chunk and question, compares it
with a reference run's (the same seeds and chunks, recorded in `QualityReport.responses`), then puts
the REFERENCE's response in the cache in place of its own (a cache snapshot is restored first), so
every chunk sees the reference's text history. The agreement figures then measure what one change
(e.g. the token drop) does to one chunk's output, without the divergence of two closed loops whose
histories part after one different word. The reference's tokens enter as one prefill instead of one
decode step each: the same positions and values, up to float rounding.

Seeds: `split="heldout"` (scoring) takes only seeds below `TRAIN_SEED_BASE`; `split="train"`
(calibrating a policy) only seeds at or above it, so a policy is never tuned on the held-out streams.

Owns `QualityReport`, `ChunkTrace` and the decoding loop; does not know the harness
(streamrt.bench.vlm_quality).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
from streamrt.cache import CacheSnapshot, HFStreamCache, RetentionPolicy, StreamCacheConfig
from streamrt.models.vlm.base import VLMAdapter
from streamrt.models.vlm.shapes_data import TRAIN_SEED_BASE, stream_chunks, world_config

from streamrt.synth import QTYPES, Mention, mention, mention_f1, parse

if TYPE_CHECKING:
    from streamrt.engine.policy import ResponsePolicy

MAX_NEW_TOKENS = 96

Split = Literal["heldout", "train"]


@dataclass(frozen=True, slots=True)
class ChunkTrace:
    """One chunk's response signal and outcome."""

    seed: int
    t: float
    """Stream time at the end of the chunk."""
    p_silence: float
    """P(silence token) after the chunk's prefill (1.0 / 0.0 for a model without one: stop argmax or not)."""
    change: float
    """Scene change as the engine's encoder measures it (`streamrt.engine.encoder.frame_change`)."""
    events: int
    """True events in the chunk."""
    spoke: bool
    """The model said something after the chunk."""


@dataclass(frozen=True, slots=True)
class Response:
    """One response: the ids said (before the closing token) and every id it put in the cache."""

    said: tuple[int, ...]
    written: tuple[int, ...]


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
    trace: list[ChunkTrace] = field(default_factory=list)
    """Every chunk's signal and outcome, in stream order."""
    responses: list[Response] = field(default_factory=list)
    """Every response in stream order (per chunk its commentary or silence, then per question its
    answer): what a `follow=` run replays as the history."""
    agreement: Counter[str] = field(default_factory=Counter)
    """Open-loop counts against the followed run (empty otherwise): reference mentions, how many of
    them this run said in the same chunk, chunks, same speak/silent decision, identical commentary,
    questions, identical answers."""

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
            "spoke_share": sum(c.spoke for c in self.trace) / len(self.trace) if self.trace else 0.0,
            "questions": float(sum(self.qa_total.values())),
        }
        for q in QTYPES:
            out[f"qa_{q}"] = self.qa_accuracy(q)
            out[f"qa_{q}_n"] = float(self.qa_total[q])
        a = self.agreement
        if a:
            out["events_unchanged_share"] = a["mentions_kept"] / a["mentions"] if a["mentions"] else 0.0
            out["reference_events"] = float(a["mentions"])
            out["decisions_agree_share"] = a["decisions_agree"] / a["chunks"]
            out["chunks_identical_share"] = a["chunks_identical"] / a["chunks"]
            out["answers_identical_share"] = a["answers_identical"] / a["answers"] if a["answers"] else 0.0
        return out


def greedy(adapter: VLMAdapter, cache: HFStreamCache, logits: torch.Tensor, t: float) -> Response:
    """Greedy-decode from `logits` until a stop id or the silence token (max MAX_NEW_TOKENS); the
    generated ids and the closing tokens all enter the cache."""
    sp = adapter.special
    ends = set(sp.stop_ids) | ({sp.silence_id} if sp.silence_id is not None else set())
    out: list[int] = []
    tok = int(logits.argmax())  # host sync: one per generated token
    while tok not in ends and len(out) < MAX_NEW_TOKENS:
        out.append(tok)
        tok = int(adapter.decode_step(cache, tok, timestamp=t).argmax())
    end = tok if tok in ends else sp.eos_id
    close = [end] + (adapter.turn_end_ids() if end != sp.silence_id else [])
    adapter.prefill_text(cache, close, kind="assistant", timestamp=t)
    return Response(tuple(out), tuple(out + close))


def respond(
    adapter: VLMAdapter, cache: HFStreamCache, logits: torch.Tensor, t: float, speak: bool
) -> Response:
    """The engine's response after a chunk once its policy decided (`Session.process`): when `speak`,
    greedy decoding from the best token other than silence (silent after all if that is a stop
    token); when silent, the silence token enters the cache (nothing, for a model without one)."""
    sp = adapter.special
    if speak:
        if sp.silence_id is not None:
            logits = logits.clone()
            logits[sp.silence_id] = float("-inf")
        speak = int(logits.argmax()) not in sp.stop_ids  # host sync
    if speak:
        return greedy(adapter, cache, logits, t)
    if sp.silence_id is not None:
        adapter.prefill_text(cache, [sp.silence_id], kind="assistant", timestamp=t)
        return Response((), (sp.silence_id,))
    return Response((), ())


def p_silence(adapter: VLMAdapter, logits: torch.Tensor) -> tuple[float, bool]:
    """(P(silence), whether silence is the argmax) from a chunk's next-token logits `[V]`, as the
    engine reads them; a model without a silence token: (1.0, True) when a stop token is the argmax."""
    sp = adapter.special
    top = int(logits.argmax())  # host sync
    if sp.silence_id is None:
        quiet = top in sp.stop_ids
        return (1.0 if quiet else 0.0), quiet
    return float(torch.softmax(logits.float(), -1)[sp.silence_id]), top == sp.silence_id


def threshold_table(trace: Sequence[ChunkTrace], thresholds: Sequence[float]) -> list[dict[str, float]]:
    """Open-loop silence figures of "speak when P(silence) < threshold" over recorded chunks (the
    history stays the one the trace was recorded under): per threshold the share of chunks spoken,
    silence precision (silent chunks without events) and recall (event-free chunks kept silent), and
    event-chunk recall (chunks with events spoken)."""
    quiet = [c.events == 0 for c in trace]
    rows = []
    for thr in thresholds:
        silent = [c.p_silence >= thr for c in trace]
        both = sum(s and q for s, q in zip(silent, quiet, strict=True))
        spoke_ev = sum(not s and not q for s, q in zip(silent, quiet, strict=True))
        n_sil, n_quiet, n_ev = sum(silent), sum(quiet), len(trace) - sum(quiet)
        rows.append(
            {
                "threshold": thr,
                "spoke_share": (len(trace) - n_sil) / len(trace) if trace else 0.0,
                "silence_precision": both / n_sil if n_sil else 0.0,
                "silence_recall": both / n_quiet if n_quiet else 0.0,
                "event_chunk_recall": spoke_ev / n_ev if n_ev else 0.0,
            }
        )
    return rows


def separation_auc(trace: Sequence[ChunkTrace]) -> dict[str, float]:
    """How well each signal tells chunks with events from event-free ones (ROC AUC: the probability
    that a random event chunk scores above a random quiet one, ties half; 0.5 is chance): "p_speak"
    scores 1 - P(silence), "change" the scene change. NaN without both kinds of chunk."""
    pos = [c for c in trace if c.events]
    neg = [c for c in trace if not c.events]
    out = {}
    for name, score in (("p_speak", lambda c: 1.0 - c.p_silence), ("change", lambda c: c.change)):
        if not pos or not neg:
            out[name] = float("nan")
            continue
        wins = sum((score(a) > score(b)) + 0.5 * (score(a) == score(b)) for a in pos for b in neg)
        out[name] = wins / (len(pos) * len(neg))
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
    policy: ResponsePolicy | None = None,
    split: Split = "heldout",
    drop_threshold: float | None = None,
    follow: QualityReport | None = None,
) -> QualityReport:
    """Run the adapter over `chunks_per_stream` chunks of each seed and score it. `policy`: when to
    comment (None: greedy argmax; else the engine's rule, see module docstring). `split`: which side
    of `TRAIN_SEED_BASE` the seeds must be on ("heldout" below, "train" at or above).
    `drop_threshold`: the engine's differential token drop at that threshold, as its encoder applies
    it (None: every visual token kept). `follow`: a reference run's report over the same seeds and
    chunks; this run then keeps the reference's history and counts its agreement (module docstring)."""
    if split == "heldout" and any(s >= TRAIN_SEED_BASE for s in seeds):
        raise ValueError(f"held-out seeds must be below {TRAIN_SEED_BASE} (training seeds)")
    if split == "train" and any(s < TRAIN_SEED_BASE for s in seeds):
        raise ValueError(f"calibration seeds must be >= {TRAIN_SEED_BASE} (never the held-out ones)")
    from tqdm import tqdm

    from streamrt.engine.encoder import ChunkEncoder
    from streamrt.engine.policy import Signal
    from streamrt.engine.types import Chunk, SampledFrame

    retention = retention or RetentionPolicy(sink_tokens=0, text_window=256, vision_chunks=8)
    rep = QualityReport()
    history = iter(follow.responses) if follow is not None else None
    bar = tqdm(total=len(seeds) * chunks_per_stream, desc="vlm-quality", unit="chunk", disable=not progress)
    for seed in seeds:
        encoder = ChunkEncoder(adapter, drop_threshold, None)  # the engine's: scene change and token drop
        last_spoke: float | None = None
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
            frames = tuple(
                SampledFrame(f, ft, 0.0, i) for i, (f, ft) in enumerate(zip(s.frames, s.times, strict=True))
            )
            enc = encoder.encode(Chunk(rep.chunks, frames, s.times[0], t, 0.0, float("inf")))  # no clock
            change = enc.change
            logits = adapter.prefill_vision(cache, enc.vision, enc.kept)  # [V]
            p_sil, sil_top = p_silence(adapter, logits)
            before = cache.store.snapshot() if history is not None else None
            if policy is None:
                r = greedy(adapter, cache, logits, t)
            else:
                speak = policy.decide(Signal(t, p_sil, change, last_spoke, sil_top)) is not None
                r = respond(adapter, cache, logits, t, speak)
            said = adapter.decode(list(r.said))
            if history is not None:
                r = _follow(adapter, cache, before, next(history), r, t, rep.agreement, chunk=True)
            rep.responses.append(r)
            history_said = said if history is None else adapter.decode(list(r.said))  # what later chunks see
            last_spoke = t if history_said.strip() else last_spoke
            rep.trace.append(ChunkTrace(seed, t, p_sil, change, len(s.events), bool(said.strip())))
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
                before = cache.store.snapshot() if history is not None else None
                r = greedy(adapter, cache, logits, t)
                got = adapter.decode(list(r.said))
                if history is not None:
                    r = _follow(adapter, cache, before, next(history), r, t, rep.agreement, chunk=False)
                rep.responses.append(r)
                rep.qa_total[qa.qtype] += 1
                rep.qa_right[qa.qtype] += answer_correct(got, qa.answer, qa.qtype)
            bar.update(1)
    bar.close()
    if history is not None and next(history, None) is not None:
        raise ValueError("follow: the reference run covered more chunks or questions than this one")
    return rep


def _follow(
    adapter: VLMAdapter,
    cache: HFStreamCache,
    before: CacheSnapshot,
    ref: Response,
    own: Response,
    t: float,
    counts: Counter[str],
    chunk: bool,
) -> Response:
    """Count how `own` agrees with the reference response `ref`, then rewind the cache to `before` and
    put `ref` there instead; returns `ref`, now this run's history."""
    if chunk:
        theirs, mine = (
            Counter(parse(adapter.decode(list(ref.said)))),
            Counter(parse(adapter.decode(list(own.said)))),
        )
        counts["mentions"] += sum(theirs.values())
        counts["mentions_kept"] += sum((theirs & mine).values())
        counts["chunks"] += 1
        counts["decisions_agree"] += bool(ref.said) == bool(own.said)
        counts["chunks_identical"] += ref == own
    else:
        counts["answers"] += 1
        counts["answers_identical"] += ref.said == own.said
    cache.store.restore(before)
    if ref.written:
        adapter.prefill_text(cache, list(ref.written), kind="assistant", timestamp=t)
    return ref
