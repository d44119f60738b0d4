"""`EngineConfig`: everything that shapes one understanding session, one frozen dataclass with presets,
and `Speculation`, how responses are decoded speculatively.

Owns no state. The model's own stream settings (frames per chunk, frame size; fps unless overridden
here) come from the adapter; cache sizes and retention come from `streamrt.cache`. The default
response policy is the model's own calibrated one (`ModelDefault`, resolved by `for_model` from the
"response_policy" entry of the model directory's streamrt.json), else the generic P(silence) < 0.5.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from streamrt.cache import RetentionPolicy, StreamCacheConfig
from streamrt.engine.errors import EngineError
from streamrt.engine.policy import (
    AllOf,
    AnyOf,
    CutResponse,
    DeadlinePolicy,
    FinishResponse,
    ModelDefault,
    ResponsePolicy,
    policy_from_metadata,
)
from streamrt.spec.types import SpecConfig

if TYPE_CHECKING:
    from streamrt.models.vlm import VLMAdapter

PRESETS = ("default", "exact")

DrafterName = Literal["ngram", "draft"]


@dataclass(frozen=True, slots=True)
class Speculation:
    """Speculative decoding of commentary and answers (`streamrt.spec`). Lossless: the text is plain
    greedy decoding's, only faster; rounds never span a cache eviction and stop at the chunk deadline."""

    drafters: tuple[DrafterName, ...] = ("ngram", "draft")
    """Drafters combined per round by expected gain: "ngram" (lookup in the session's own text:
    commentary repeats itself) and "draft" (a small draft model; skipped when there is none)."""
    draft_model: str | None = None
    """Directory of a draft model with the target's vocabulary; None: the one shipped for the built-in
    model (`assets/draft/builtin`) when the model is the built-in one, else no draft model."""
    decoder: SpecConfig = field(default_factory=SpecConfig)
    """Draft lengths and their adaptation (measured acceptance and verify-cost curve)."""


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How a session samples, drops tokens, caches, decides to speak and meets deadlines."""

    fps: float | None = None
    """Frames per second fed to the model (None: the adapter's)."""
    drop_threshold: float | None = 0.9
    """Differential token drop: a visual token whose cosine similarity to the same (h, w) token of the
    previous frame exceeds this is dropped. None: no drop at all (every token kept)."""
    token_budget: int | None = None
    """At most this many visual tokens kept per chunk (least similar first); None: no cap."""
    cache: StreamCacheConfig = field(
        default_factory=lambda: StreamCacheConfig(
            capacity=4096,
            retention=RetentionPolicy(sink_tokens=16, text_window=256, text_slack=32, vision_chunks=8),
        )
    )
    """StreamCache size, retention (sinks, text window and its low-water slack, vision chunks) and
    position policy. The slack lets speculative rounds run once the text window is full (see
    `RetentionPolicy.text_slack`): 60 s of commentary took 0.65 model forwards per token with no
    slack, 0.43-0.49 with 32."""
    response: ResponsePolicy = field(default_factory=ModelDefault)
    """When to comment (questions are always answered). `ModelDefault`: the model's calibrated policy
    once `for_model` resolved it (else P(silence) < 0.5)."""
    on_deadline: DeadlinePolicy = field(default_factory=CutResponse)
    """What a response does when it reaches the current chunk's deadline."""
    deadline_s: float | None = None
    """Budget per chunk, from the moment it is ready to its outputs (None: the chunk's duration, i.e.
    keep up with real time)."""
    max_commentary_tokens: int = 40
    """Longest commentary (tokens, stop token excluded)."""
    max_answer_tokens: int = 40
    """Longest answer."""
    system_prompt: str | None = None
    """System prompt (None: the model template's default)."""
    chunk_queue: int = 4
    """Bound of the queue of sampled chunks waiting for the vision encoder."""
    encoded_queue: int = 2
    """Bound of the queue of encoded chunks waiting for the language model."""
    max_pending_questions: int = 256
    """Questions waiting for a chunk boundary (more are refused with E_ENGINE_ASK_FULL)."""
    spec: Speculation | None = field(default_factory=Speculation)
    """Speculative decoding of responses (same text, faster); None: plain greedy, one token per forward."""

    def __post_init__(self) -> None:
        bad = []
        if self.fps is not None and self.fps <= 0:
            bad.append(f"fps {self.fps} <= 0")
        if self.token_budget is not None and self.token_budget < 1:
            bad.append(f"token_budget {self.token_budget} < 1")
        if self.deadline_s is not None and self.deadline_s <= 0:
            bad.append(f"deadline_s {self.deadline_s} <= 0")
        if min(self.max_commentary_tokens, self.max_answer_tokens) < 1:
            bad.append("max tokens < 1")
        if min(self.chunk_queue, self.encoded_queue, self.max_pending_questions) < 1:
            bad.append("queue bounds < 1")
        if bad:
            raise EngineError("E_ENGINE_CONFIG", "bad EngineConfig: " + "; ".join(bad))

    def replace(self, **changes: object) -> EngineConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def for_model(self, adapter: VLMAdapter) -> EngineConfig:
        """This config with every `ModelDefault` in its response policy (also inside `AnyOf` /
        `AllOf`) replaced by `adapter`'s calibrated one (`model_response_policy`), or by its fallback
        when the model has none. Other policies stay."""

        def resolve(p: ResponsePolicy) -> ResponsePolicy:
            if isinstance(p, ModelDefault):
                return model_response_policy(adapter) or p.fallback
            if isinstance(p, AnyOf | AllOf):
                return type(p)(tuple(resolve(q) for q in p.policies))
            return p

        resolved = resolve(self.response)
        return self if resolved is self.response else self.replace(response=resolved)

    @staticmethod
    def preset(name: str, model: VLMAdapter | None = None, **overrides: object) -> EngineConfig:
        """- "default": token drop at 0.9, the model's calibrated response policy (P(silence) < 0.5
          for a model without one), responses cut at the deadline.
        - "exact": the same, with reproducible output whatever the machine's speed: deadlines never
          stop decoding.
        With `model`, the model's response policy is resolved at once (`for_model`)."""
        if name == "default":
            base = EngineConfig()
        elif name == "exact":
            base = EngineConfig(on_deadline=FinishResponse())
        else:
            raise EngineError(
                "E_ENGINE_CONFIG", f"unknown engine preset {name!r}; known: {', '.join(PRESETS)}"
            )
        base = base.replace(**overrides) if overrides else base
        return base.for_model(model) if model is not None else base


def model_response_policy(adapter: VLMAdapter) -> ResponsePolicy | None:
    """The response policy calibrated for this model: the "response_policy" entry of the streamrt.json
    in its local model directory (the built-in model's asset folder for "builtin"); None when there is
    none (a hub id, or a directory without the entry). A malformed entry is E_ENGINE_POLICY."""
    from streamrt.models.vlm.loader import SETTINGS_FILE, read_settings, resolve

    path = resolve(adapter.name)
    meta = read_settings(path).get("response_policy")
    if meta is None:
        return None
    where = f"{path}/{SETTINGS_FILE}"
    if not isinstance(meta, dict):
        raise EngineError("E_ENGINE_POLICY", f"{where}: response_policy must be an object, got {meta!r}")
    return policy_from_metadata(meta, where)
