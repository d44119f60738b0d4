"""The language-model side of one session: chunk prefill, the response decision, streamed decoding
under a deadline, questions at chunk boundaries, and the text memory.

`Session` owns the StreamCache (through the adapter's `new_cache`; sinks = the system prompt, a
recent text window, a window of whole vision chunks, evictions by the cache's retention policy), the
response counter, the stream time of the last commentary and a suspended response (deadline policy
"resume"). Per chunk (`process`): prefill the kept visual tokens (the adapter stamps the segment
with its time and kept mask) -> read P(silence) from the logits the prefill produced -> the response
policy decides -> either the silence token enters the history, or a commentary is decoded token by
token as `TextDelta`s and closed with the stop token (so it stays in the cache as text memory) ->
questions due by the chunk's end are answered as user turns. Greedy decoding throughout.

Decoding is speculative when `EngineConfig.spec` is set (the default): a `SpeculativeDecoder` over
the session's cache drafts with n-gram lookup in the session's own text and a small draft model,
and the target verifies each round in one forward. The text and the cache (rows, positions,
segment table) are those of plain greedy decoding, which runs when `spec` is None. The session
keeps the decoder's history equal to the text the model has seen (system prompt, vision markers,
silence, responses and their stop tokens, questions). Deadlines are checked between tokens (plain)
or rounds (speculative) and the deadline policy applied.

It does not know threads, queues, sources or clocks: callers pass the capture time and deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import torch

from streamrt.cache import CacheError, StreamCache
from streamrt.engine.config import EngineConfig, Speculation
from streamrt.engine.errors import EngineError
from streamrt.engine.policy import CutResponse, DeadlinePolicy, FinishResponse, ResumeResponse, Signal
from streamrt.engine.types import (
    ChunkDone,
    EncodedChunk,
    EndReason,
    Output,
    Question,
    ResponseEnd,
    ResponseKind,
    TextDelta,
)
from streamrt.models.vlm import VLMAdapter
from streamrt.spec import Drafter, ModelDrafter, NGramDrafter, SpeculativeDecoder, Target

BUILTIN_DRAFT = ("draft", "builtin")
"""Where the draft model of the built-in VLM is shipped, under `streamrt.assets`."""


@dataclass(slots=True)
class _Response:
    """A response being decoded (mutable while it runs)."""

    segment: int
    kind: ResponseKind
    t: float
    trigger: str
    capture: float
    next_token: int
    ids: list[int]
    text: str
    question: Question | None = None


class Session:
    """One stream's language-model state (see module docstring)."""

    def __init__(self, adapter: VLMAdapter, config: EngineConfig | None = None) -> None:
        self.adapter = adapter
        self.config = (config or EngineConfig()).for_model(adapter)  # the model's calibrated policy
        self.special = adapter.special
        self._turn_end = adapter.turn_end_ids()
        sid = self.special.silence_id
        self._ends = self.special.stop_ids | ({sid} if sid is not None else set())
        """Tokens that end a response: the stop ids and the silence token (it closes a turn alone)."""
        self._silent = frozenset({sid}) if sid is not None else self.special.stop_ids
        """Next tokens that mean "nothing to say" after a chunk."""
        self.cache = adapter.new_cache(self.config.cache)
        self._segments = 0
        self.last_spoke: float | None = None
        self._suspended: _Response | None = None
        self._waiting: list[Question] = []
        spec = self.config.spec
        self.decoder = (
            None
            if spec is None
            else SpeculativeDecoder(
                Target.for_adapter(adapter, self.cache), _drafters(adapter, spec), spec.decoder
            )
        )
        """The speculative decoder (None: plain greedy); its history is the text the model has seen."""
        tmpl = adapter.template
        self._marks = [*adapter.encode(tmpl.vision_prefix), *adapter.encode(tmpl.vision_suffix)]
        """The text of a vision chunk as drafters see it (its markers; vision tokens are not text)."""
        with torch.inference_mode():
            system = adapter.system_ids(self.config.system_prompt)
            adapter.prefill_text(self.cache, system, kind="system")
            self._observe(system)

    @property
    def store(self) -> StreamCache:
        """The StreamCache (segments, positions, memory report)."""
        return self.cache.store

    # ---- per chunk -----------------------------------------------------------------------------
    @torch.inference_mode()
    def process(
        self, enc: EncodedChunk, questions: list[Question], capture: float, deadline: float
    ) -> Iterator[Output]:
        """Prefill one encoded chunk, decide, respond, answer `questions` (due by the chunk's end)."""
        chunk = enc.chunk
        t0 = time.perf_counter()
        logits = self.adapter.prefill_vision(self.cache, enc.vision, enc.kept)  # [V] fp32
        prefill_s = time.perf_counter() - t0
        self._observe(self._marks)
        p_silence = self._p_silence(logits)
        self._waiting.extend(questions)
        reason = None
        if self._suspended is None:
            top = int(logits.argmax())  # host sync: one per chunk
            sig = Signal(chunk.t_end, p_silence, enc.change, self.last_spoke, top in self._silent)
            reason = self.config.response.decide(sig)
        first = self._first_token(logits) if reason is not None else None
        spoke = first is not None
        if not spoke and self._suspended is None:
            self._silence(chunk.t_end)
        now = time.monotonic()
        yield ChunkDone(
            chunk.index, chunk.t_start, chunk.t_end, enc.total_tokens, enc.kept_tokens, p_silence,
            spoke, capture, now, now <= deadline, enc.encode_s, prefill_s,
        )  # fmt: skip
        if self._suspended is not None:
            resp, self._suspended = self._suspended, None
            yield from self._decode(resp, deadline)
        elif first is not None and reason is not None:
            self.last_spoke = chunk.t_end
            resp = self._start("commentary", chunk.t_end, reason, capture, first)
            yield from self._decode(resp, deadline)
        yield from self._answer_waiting(chunk.t_end, capture, deadline)

    @torch.inference_mode()
    def finish(self, questions: list[Question], t: float, capture: float) -> Iterator[Output]:
        """End of stream: complete a suspended response, then answer every question still waiting
        and `questions` (asked for times past the end), at stream time `t`."""
        self._waiting.extend(questions)
        if self._suspended is not None:
            resp, self._suspended = self._suspended, None
            yield from self._decode(resp, float("inf"), end_of_stream=True)
        yield from self._answer_waiting(t, capture, float("inf"))

    # ---- helpers -------------------------------------------------------------------------------
    def _observe(self, ids: list[int]) -> None:
        """Text entered the cache: the drafters' history follows it."""
        if self.decoder is not None:
            self.decoder.observe(ids)

    def _p_silence(self, logits: torch.Tensor) -> float:
        sid = self.special.silence_id
        if sid is None:
            return 1.0 if int(logits.argmax()) in self.special.stop_ids else 0.0  # host sync
        return float(torch.softmax(logits.float(), -1)[sid])  # host sync: one scalar per chunk

    def _first_token(self, logits: torch.Tensor) -> int | None:
        """Greedy first token of a response with silence excluded; None if it would be a stop token."""
        if self.special.silence_id is not None:
            logits = logits.clone()
            logits[self.special.silence_id] = float("-inf")
        tok = int(logits.argmax())  # host sync
        return None if tok in self._ends else tok

    def _silence(self, t: float) -> None:
        if self.special.silence_id is not None:
            self.adapter.prefill_text(self.cache, [self.special.silence_id], kind="assistant", timestamp=t)
            self._observe([self.special.silence_id])

    def _start(
        self,
        kind: ResponseKind,
        t: float,
        trigger: str,
        capture: float,
        first: int,
        q: Question | None = None,
    ) -> _Response:
        self._segments += 1
        return _Response(self._segments, kind, t, trigger, capture, first, [], "", q)

    def _answer_waiting(self, t: float, capture: float, deadline: float) -> Iterator[Output]:
        while self._waiting and self._suspended is None:
            q = self._waiting.pop(0)
            ids = self.adapter.user_ids(q.text)
            logits = self.adapter.prefill_text(self.cache, ids, kind="user", timestamp=t)
            self._observe(ids)
            first = self._first_token(logits)
            resp = self._start(
                "answer", t, "question", capture, first if first is not None else self.special.eos_id, q
            )
            yield from self._decode(resp, deadline)

    def _decode(self, r: _Response, deadline: float, end_of_stream: bool = False) -> Iterator[Output]:
        """Greedy decode from `r.next_token` until a stop token, the length cap or the deadline,
        streaming the text as `TextDelta`s; then close the turn (or suspend it: deadline policy)."""
        cap = self.config.max_commentary_tokens if r.kind == "commentary" else self.config.max_answer_tokens
        policy = self.config.on_deadline
        steps = (
            self._plain(r, cap, deadline, policy)
            if self.decoder is None
            else self._spec(r, cap, deadline, policy)
        )
        while True:
            try:
                fed = next(steps)
            except StopIteration as done:
                reason: EndReason | None = done.value
                break
            for tok in fed:  # one delta per token, as plain decoding streams them
                r.ids.append(tok)
                text = self.adapter.decode(r.ids)
                if text.startswith(r.text) and len(text) > len(r.text):
                    now = time.monotonic()
                    yield TextDelta(
                        r.segment, r.kind, text[len(r.text) :], r.t, r.capture, now, now <= deadline,
                        r.question.id if r.question else None,
                    )  # fmt: skip
                    r.text = text
        if reason is None:
            self._suspended = r
            return
        stop = r.next_token if reason == "eos" else self.special.eos_id
        close = [stop] if stop == self.special.silence_id else [stop, *self._turn_end]
        self.adapter.prefill_text(self.cache, close, kind="assistant", timestamp=r.t)
        self._observe(close)
        now = time.monotonic()
        yield ResponseEnd(
            r.segment, r.kind, self.adapter.decode(r.ids).strip(), r.t, len(r.ids),
            "end_of_stream" if end_of_stream and reason == "deadline" else reason, r.trigger,
            r.capture, now, now <= deadline, r.question.id if r.question else None,
            r.question.text if r.question else None,
        )  # fmt: skip

    def _plain(self, r: _Response, cap: int, deadline: float, policy: DeadlinePolicy) -> Iterator[list[int]]:
        """One token per forward. Yields each token as it is fed to the cache (the caller adds it to
        `r.ids`); returns why the response ended, None when it is suspended (`r.next_token` unfed)."""
        produced = 0
        while True:
            tok = r.next_token
            if tok in self._ends:
                return "eos"
            if len(r.ids) >= cap:
                return "max_tokens"
            if time.monotonic() >= deadline:
                if isinstance(policy, CutResponse):
                    return "deadline"
                if isinstance(policy, ResumeResponse) and produced > 0:  # at least one token per turn
                    return None
            yield [tok]
            produced += 1
            logits = self.adapter.decode_step(self.cache, tok)  # [V]
            r.next_token = int(logits.argmax())  # host sync: one per generated token

    def _spec(self, r: _Response, cap: int, deadline: float, policy: DeadlinePolicy) -> Iterator[list[int]]:
        """Speculative rounds from `r.next_token` (chosen, not yet fed): the same tokens, cache and
        end reasons as `_plain`, several tokens per target forward. Yields the tokens each round fed."""
        dec = self.decoder
        assert dec is not None
        if isinstance(policy, ResumeResponse) and time.monotonic() >= deadline:
            # already late: plain decoding's one token of progress, then suspend, exactly as `_plain`
            steps = self._plain(r, cap, deadline, policy)
            while True:
                try:
                    fed = next(steps)
                except StopIteration as done:
                    return done.value
                self._observe(fed)
                yield fed
        emitted: list[int] = []  # r.next_token and everything after it; all but the last are fed
        rounds = dec.rounds(
            r.next_token,
            max_new_tokens=cap - len(r.ids) + 1,  # the fed tokens up to the cap, then the deciding one
            eos=self._ends,
            deadline=_deadline(deadline, policy, emitted),
        )
        while True:
            try:
                new = next(rounds)
            except StopIteration as done:
                res = done.value
                break
            fed = len(emitted) - 1 if emitted else 0
            emitted += new
            if len(emitted) - 1 > fed:
                yield emitted[fed:-1]
        r.next_token = dec.drop_pending()  # decided, not fed: the caller closes or resumes with it
        if res.stop == "capacity":
            raise CacheError(
                "E_CACHE_FULL", "no room in the cache for the response (every segment is pinned)"
            )
        if res.stop == "deadline":
            return "deadline" if isinstance(policy, CutResponse) else None
        return "eos" if res.stop == "eos" else "max_tokens"


def _deadline(deadline: float, policy: DeadlinePolicy, emitted: list[int]) -> Callable[[], bool] | None:
    """The speculative decoder's deadline under `policy`, like `_plain`'s check: cut at it; resume only
    after at least one token was fed this turn (`emitted` holds the fed tokens plus the next one);
    finish: never."""
    if isinstance(policy, FinishResponse):
        return None
    if isinstance(policy, ResumeResponse):
        return lambda: len(emitted) > 1 and time.monotonic() >= deadline
    return lambda: time.monotonic() >= deadline


def _drafters(adapter: VLMAdapter, spec: Speculation) -> list[Drafter]:
    """The engine's drafters: n-gram lookup and the draft model (`Speculation.draft_model`, else the
    built-in model's shipped draft, used only when it shares the target's vocabulary)."""
    out: list[Drafter] = [NGramDrafter()] if "ngram" in spec.drafters else []
    if "draft" not in spec.drafters:
        return out
    vocab = adapter.model.config.get_text_config().vocab_size
    if spec.draft_model is not None:
        path = Path(spec.draft_model)
        if not (path / "config.json").is_file():
            raise EngineError("E_ENGINE_CONFIG", f"draft model {path}: no config.json there")
        model = _load_draft(str(path))
        if model.config.vocab_size != vocab:
            raise EngineError(
                "E_ENGINE_CONFIG",
                f"draft model {path}: vocabulary of {model.config.vocab_size}, the target's has {vocab}",
            )
    elif adapter.name == "builtin":
        model = _load_draft(str(resources.files("streamrt.assets").joinpath(*BUILTIN_DRAFT)))
        if model.config.vocab_size != vocab:
            return out
    else:
        return out
    return [*out, ModelDrafter(model, capacity=1024)]


@lru_cache(maxsize=4)
def _load_draft(path: str) -> torch.nn.Module:
    """A draft model, loaded once per process and shared by sessions (each has its own draft cache)."""
    from streamrt.models.draft import load_draft

    return load_draft(path)
