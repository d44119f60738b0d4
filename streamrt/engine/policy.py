"""Policies of the understanding engine, as classes: when to speak, and what a response that runs
into the next frame deadline does.

Response policies see one `Signal` per chunk (after its prefill) and return the reason to speak, or
None to stay silent:
- `SilenceThreshold`: speak when the probability of the silence token, read from the next-token
  distribution the chunk's prefill already produced, is below a threshold (VideoLLM-online).
- `SilenceArgmax`: speak unless silence is the most likely token (what plain greedy decoding does).
- `Schedule`: speak every `every_s` seconds of stream time.
- `SceneChange`: speak when the chunk's frames differ from the previous frame by more than `min_change`.
- `AnyOf`: the first of several that fires.
- `AllOf`: speak only when every one of several fires (e.g. a scene change gate and P(silence)).
- `ModelDefault`: the model's own calibrated policy, read from its metadata (`streamrt.json`, key
  "response_policy", parsed by `policy_from_metadata`) when `EngineConfig.for_model` resolves it;
  `fallback` (the generic P(silence) < 0.5) for a model without one or before it is resolved.

Deadline policies (what happens when decoding reaches the current chunk's deadline):
- `CutResponse`: close the response there (the turn ends with the stop token; reason "deadline").
- `ResumeResponse`: suspend it; the next chunk is prefilled, then decoding resumes from where it
  stopped (StreamingVLM-style interleaving; the next chunk's own decision is skipped).
- `FinishResponse`: ignore the deadline (deterministic output; misses are still recorded).

Policies hold thresholds only; they do not touch models or caches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from streamrt.engine.errors import EngineError

GENERIC_SILENCE_THRESHOLD = 0.5
"""P(silence) below which a model without a calibrated policy speaks."""


@dataclass(frozen=True, slots=True)
class Signal:
    """What a response policy may read about a chunk, right after its prefill."""

    t: float
    """Stream time at the end of the chunk."""
    p_silence: float
    """Probability of the silence token after the chunk (1.0 when the model has no silence token
    and the argmax is a stop token; 0.0 when it has none and would speak)."""
    change: float
    """Scene change: 1 - the lowest cosine similarity between consecutive frames' mean visual
    features across the chunk (its first frame against the previous chunk's last); 0 for the first chunk."""
    last_spoke: float | None
    """Stream time of the last commentary, None before the first."""
    silence_is_argmax: bool = True
    """The silence token (or, without one, a stop token) is the most likely next token."""


@dataclass(frozen=True, slots=True)
class SilenceThreshold:
    """Speak when P(silence) < threshold."""

    threshold: float = GENERIC_SILENCE_THRESHOLD

    def decide(self, s: Signal) -> str | None:
        return "model" if s.p_silence < self.threshold else None


@dataclass(frozen=True, slots=True)
class SilenceArgmax:
    """Speak unless silence is the most likely next token (plain greedy decoding, VideoLLM-online's rule)."""

    def decide(self, s: Signal) -> str | None:
        return None if s.silence_is_argmax else "model"


@dataclass(frozen=True, slots=True)
class Schedule:
    """Speak every `every_s` seconds of stream time (the first chunk included)."""

    every_s: float = 5.0

    def decide(self, s: Signal) -> str | None:
        due = s.last_spoke is None or s.t - s.last_spoke >= self.every_s - 1e-9
        return "schedule" if due else None


@dataclass(frozen=True, slots=True)
class SceneChange:
    """Speak when the chunk's scene change exceeds `min_change` (a cut, a big entrance)."""

    min_change: float = 0.2

    def decide(self, s: Signal) -> str | None:
        return "scene_change" if s.change > self.min_change else None


@dataclass(frozen=True, slots=True)
class AnyOf:
    """The first of `policies` that fires."""

    policies: tuple[ResponsePolicy, ...]

    def decide(self, s: Signal) -> str | None:
        for p in self.policies:
            reason = p.decide(s)
            if reason is not None:
                return reason
        return None


@dataclass(frozen=True, slots=True)
class AllOf:
    """Speak only when every one of `policies` fires; the reason is the last one's."""

    policies: tuple[SilenceThreshold | SilenceArgmax | Schedule | SceneChange, ...]

    def decide(self, s: Signal) -> str | None:
        reason = None
        for p in self.policies:
            reason = p.decide(s)
            if reason is None:
                return None
        return reason


@dataclass(frozen=True, slots=True)
class ModelDefault:
    """The model's calibrated policy, put in place by `EngineConfig.for_model`; until then, and for a
    model whose metadata has none, `fallback` decides."""

    fallback: SilenceThreshold = field(default_factory=SilenceThreshold)

    def decide(self, s: Signal) -> str | None:
        return self.fallback.decide(s)


ResponsePolicy = SilenceThreshold | SilenceArgmax | Schedule | SceneChange | AnyOf | AllOf | ModelDefault

METADATA_KEYS = ("min_change", "silence_threshold", "calibration")
"""Keys of a model's "response_policy" entry: the two thresholds (either or both) and a free-text
note on how they were calibrated."""


def policy_from_metadata(meta: Mapping[str, object], where: str) -> SilenceThreshold | SceneChange | AllOf:
    """A model's calibrated response policy from its metadata entry (`where` names the file in
    errors): {"min_change": c} speaks on a scene change above c, {"silence_threshold": t} when
    P(silence) < t, both: only when both hold. E_ENGINE_POLICY for anything else."""

    def bad(msg: str) -> EngineError:
        return EngineError("E_ENGINE_POLICY", f"{where}: response_policy {msg}")

    unknown = sorted(set(meta) - set(METADATA_KEYS))
    if unknown:
        raise bad(f"has unknown keys {unknown}; known: {', '.join(METADATA_KEYS)}")
    parts: list[SilenceThreshold | SceneChange] = []
    for key, lo, cls in (("min_change", 0.0, SceneChange), ("silence_threshold", 0.0, SilenceThreshold)):
        v = meta.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= 1.0:
            raise bad(f"{key} must be a number in [{lo:g}, 1], got {v!r}")
        parts.append(cls(float(v)))
    if not parts:
        raise bad("needs min_change and/or silence_threshold")
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


@dataclass(frozen=True, slots=True)
class CutResponse:
    """At the deadline the response ends (reason "deadline")."""

    name: ClassVar[Literal["cut"]] = "cut"


@dataclass(frozen=True, slots=True)
class ResumeResponse:
    """At the deadline the response is suspended and resumes after the next chunk's prefill."""

    name: ClassVar[Literal["resume"]] = "resume"


@dataclass(frozen=True, slots=True)
class FinishResponse:
    """Deadlines never stop decoding (reproducible runs; misses are recorded)."""

    name: ClassVar[Literal["finish"]] = "finish"


DeadlinePolicy = CutResponse | ResumeResponse | FinishResponse
DEADLINE_POLICIES: dict[str, DeadlinePolicy] = {
    "cut": CutResponse(),
    "resume": ResumeResponse(),
    "finish": FinishResponse(),
}
