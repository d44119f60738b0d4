"""The `understand` mode: a `SessionEngine` over streamrt.engine's per-session pieces (one StreamCache each).

Input frames are placed on the model's time grid by their capture time (`capture_us`, relative to the
session's first frame) and grouped into chunks (`Chunker`); a completed chunk is vision-encoded with
the differential token drop (`ChunkEncoder`) and handed to the language side (`engine.Session`), which
decides whether to comment and answers the questions asked so far. Its `TextDelta`s become text
segments (the text so far, replaced until the `ResponseEnd` makes it final); the segment's `ref_seq` is
the input seq that completed the chunk. `end_input` flushes the partial chunk and answers what is left.

Degrade ladder (this adapter's, from `observe` and the scheduler's `degrade`): each rung drops more
visual tokens (lower similarity threshold) and shortens commentary. Owns the chunker, encoder, language
session, the pending questions and the ladder position. The cache capacity (`kv_tokens`) comes from the
server (sized from its memory budget); retention evicts older chunks and text sooner in a smaller cache. Does not know sockets or the scheduler.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Mapping

from streamrt.engine import ChunkDone, EngineConfig, Question, ResponseEnd, Session, TextDelta
from streamrt.engine.chunker import Chunker
from streamrt.engine.encoder import ChunkEncoder
from streamrt.models.vlm import VLMAdapter
from streamrt.server.engine import InputFrame, SessionEngine, StepResult, TextSegment, param_error
from streamrt.server.protocol import ParamValue, ProtocolError

LADDER: tuple[tuple[float, int], ...] = ((0.9, 40), (0.8, 24), (0.7, 12), (0.5, 6))
"""Rungs: (token-drop similarity threshold, longest commentary in tokens); rung 0 = the configured."""
HELLO_ONLY = ("system_prompt", "degrade")
MAX_OPEN_QUESTIONS = 16
"""Questions waiting for the next chunk boundary; one more is refused with E_STATE (never dropped).
Each is also bounded in tokens (`max_question_tokens`, E_TOO_LARGE)."""


class UnderstandEngine(SessionEngine):
    """See module docstring."""

    wants_input = True

    def __init__(
        self, adapter: VLMAdapter, params: Mapping[str, ParamValue], kv_tokens: int | None = None
    ) -> None:
        p = self._check(params, initial=True)
        self.adapter = adapter
        self.cfg = EngineConfig(system_prompt=p.get("system_prompt"))  # type: ignore[arg-type]
        if kv_tokens is not None:  # the server sized the cache from its memory budget
            self.cfg = self.cfg.replace(cache=dataclasses.replace(self.cfg.cache, capacity=kv_tokens))
        self.fps = adapter.fps
        self.chunker = Chunker(self.fps, adapter.frames_per_chunk, budget_s=0.0)  # deadlines come from frames
        self.encoder = ChunkEncoder(adapter, self.cfg.drop_threshold, self.cfg.token_budget)
        self.session = Session(adapter, self.cfg)
        self.ladder_on = bool(p.get("degrade", True))
        self.level = 0
        self._top = (self.cfg.drop_threshold or LADDER[0][0], self.cfg.max_commentary_tokens)
        self._misses = self._easy = 0
        self._questions: deque[tuple[str, str]] = deque()  # (id, text), from the event loop; bounded in ask
        self._lock = threading.Lock()
        self._first_us: int | None = None
        self._last_t = 0.0
        self._last_seq = -1
        self._texts: dict[int, str] = {}
        self.apply({k: v for k, v in p.items() if k not in HELLO_ONLY})

    # ---- parameters ------------------------------------------------------------------------------------
    @staticmethod
    def _check(params: Mapping[str, ParamValue], *, initial: bool) -> dict[str, ParamValue]:
        out: dict[str, ParamValue] = {}
        for k, v in params.items():
            if k in HELLO_ONLY and not initial:
                raise param_error(k, "can only be set in hello")
            num = isinstance(v, int | float) and not isinstance(v, bool)
            if k == "drop_threshold":
                ok = num and 0 < v <= 1  # type: ignore[operator]
            elif k in ("max_tokens", "max_answer_tokens"):
                ok = isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 256
            elif k == "system_prompt":
                ok = isinstance(v, str)
            elif k == "degrade":
                ok = isinstance(v, bool)
            else:
                raise param_error(
                    k,
                    "unknown parameter of mode understand (drop_threshold, max_tokens, max_answer_tokens, system_prompt, degrade)",
                )
            if not ok:
                raise param_error(k, f"invalid value {v!r}")
            out[k] = v
        return out

    def validate(self, params: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
        return self._check(params, initial=False)

    def apply(self, params: Mapping[str, ParamValue]) -> None:
        thr, tokens = self._top
        if "drop_threshold" in params:
            thr = float(params["drop_threshold"])
        if "max_tokens" in params:
            tokens = int(params["max_tokens"])
        self._top = (thr, tokens)
        if "max_answer_tokens" in params:
            self.session.config = self.session.config.replace(
                max_answer_tokens=int(params["max_answer_tokens"])
            )
        self._set_level(self.level)

    def _set_level(self, level: int) -> None:
        self.level = level
        thr, tokens = self._top
        if level > 0:
            thr, tokens = min(thr, LADDER[level][0]), min(tokens, LADDER[level][1])
        self.encoder.threshold = thr
        self.session.config = self.session.config.replace(max_commentary_tokens=tokens)

    # ---- questions ---------------------------------------------------------------------------------------
    @property
    def max_question_tokens(self) -> int:
        """Longest question (template tokens included): a quarter of the cache, at most 512."""
        return min(512, self.cfg.cache.capacity // 4)

    def ask(self, question_id: str, text: str) -> None:
        n = len(self.adapter.user_ids(text))
        if n > self.max_question_tokens:  # it would crowd the cache (or not fit at all)
            raise ProtocolError(
                "E_TOO_LARGE", f"question of {n} tokens; at most {self.max_question_tokens} here"
            )
        with self._lock:  # called on the event loop; taken by the next step on the worker
            if len(self._questions) >= MAX_OPEN_QUESTIONS:
                raise ProtocolError(
                    "E_STATE", f"{MAX_OPEN_QUESTIONS} questions already wait for the next chunk"
                )
            self._questions.append((question_id, text))

    def _take_questions(self, t: float) -> list[Question]:
        with self._lock:
            qs = [Question(t, text, qid) for qid, text in self._questions]
            self._questions.clear()
        return qs

    # ---- work ------------------------------------------------------------------------------------------
    def step(self, frame: InputFrame | None) -> StepResult:
        assert frame is not None, "understand is driven by input frames"
        if self._first_us is None:
            self._first_us = frame.capture_us
        t = max(0.0, (frame.capture_us - self._first_us) / 1e6)
        self._last_t, self._last_seq = t, frame.seq
        chunk = self.chunker.push(frame.pixels, t, frame.arrived)
        if chunk is None:
            return StepResult((), self.level, finished_unit=False)
        enc = self.encoder.encode(chunk)
        outs = self.session.process(enc, self._take_questions(chunk.t_end), frame.arrived, frame.deadline)
        return StepResult(self._segments(outs, frame.seq), self.level)

    def finish(self) -> StepResult:
        outs: list[TextSegment] = []
        chunk = self.chunker.flush()
        now = time.monotonic()
        if chunk is not None:
            enc = self.encoder.encode(chunk)
            outs += self._segments(self.session.process(enc, [], now, float("inf")), self._last_seq)
        end_t = chunk.t_end if chunk is not None else self._last_t
        outs += self._segments(self.session.finish(self._take_questions(end_t), end_t, now), self._last_seq)
        return StepResult(tuple(outs), self.level)

    def _segments(self, outputs, ref_seq: int) -> tuple[TextSegment, ...]:
        """TextDelta / ResponseEnd -> text segments; only the newest version of each segment is kept."""
        latest: dict[int, TextSegment] = {}
        for o in outputs:
            if isinstance(o, TextDelta):
                self._texts[o.segment] = self._texts.get(o.segment, "") + o.text
                latest[o.segment] = TextSegment(o.segment, self._texts[o.segment], False, ref_seq, o.question)
            elif isinstance(o, ResponseEnd):
                self._texts.pop(o.segment, None)
                latest[o.segment] = TextSegment(o.segment, o.text, True, ref_seq, o.question)
            else:
                assert isinstance(o, ChunkDone)
        return tuple(latest.values())

    def observe(self, seconds: float, budget_s: float) -> None:
        if not self.ladder_on:
            return
        self._misses = self._misses + 1 if seconds > budget_s else 0
        self._easy = self._easy + 1 if seconds < 0.5 * budget_s else 0
        if self._misses >= 3 and self.level + 1 < len(LADDER):
            self._set_level(self.level + 1)
            self._misses = 0
        elif self._easy >= 16 and self.level > 0:
            self._set_level(self.level - 1)
            self._easy = 0

    def degrade(self) -> bool:
        if not self.ladder_on or self.level + 1 >= len(LADDER):
            return False
        self._set_level(self.level + 1)
        return True

    def cache_bytes(self, used: bool = False) -> int:
        mem = self.session.store.memory()
        return mem.used_bytes if used else mem.allocated_bytes

    def close(self) -> None:
        self._texts.clear()  # the cache goes with the session object


@dataclasses.dataclass(frozen=True, slots=True)
class UnderstandFactory:
    """An EngineFactory sharing one adapter (read-only weights) between sessions; each owns its cache of
    `kv_tokens` rows (None: EngineConfig's default capacity)."""

    adapter: VLMAdapter
    kv_tokens: int | None = None

    def __call__(self, params: Mapping[str, ParamValue]) -> SessionEngine:
        return UnderstandEngine(self.adapter, params, self.kv_tokens)


def understand_factory(adapter: VLMAdapter, kv_tokens: int | None = None) -> UnderstandFactory:
    return UnderstandFactory(adapter, kv_tokens)
