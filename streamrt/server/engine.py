"""The session-engine interface the server drives, and the records that cross it.

A `SessionEngine` is one session's model state (a generation stream, a VLM conversation) behind a few
verbs: `validate` / `apply` parameters, `step` one unit of work (an input frame, or a paced tick when
the mode has no input), `finish` when the input ends, `ask`, `observe` the wall time of a step against its budget (the engine's own
degrade ladder), `degrade` one rung on the scheduler's request, `close`; optionally `batch_key` and
`step_batch` (several sessions' steps in one call, e.g. one model forward). `step`, `step_batch`,
`finish`, `apply`, `observe` and `degrade` run on the scheduler's worker thread, one at a time per session; `validate`
and `ask` run on the event loop and must not touch state a step uses (ask only queues). One adapter module per mode wraps a real
engine (generate.py). This module knows neither sockets nor models.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from streamrt.server.protocol import ParamValue, ProtocolError


@dataclass(frozen=True, slots=True)
class InputFrame:
    """A decoded input frame handed to `SessionEngine.step`."""

    seq: int
    capture_us: int
    pixels: np.ndarray
    """[H, W, 3] uint8 RGB."""
    arrived: float
    """time.monotonic() when the server received it."""
    deadline: float
    """time.monotonic() by which its output is due."""


@dataclass(frozen=True, slots=True)
class OutputFrame:
    pixels: np.ndarray
    """[H, W, 3] uint8 RGB."""
    ref_seq: int = -1
    """The input seq it answers, -1 for none."""
    capture_us: int = 0
    repeated: bool = False
    degraded: bool = False


@dataclass(frozen=True, slots=True)
class TextSegment:
    """A piece of text; the client replaces segment `segment_id` until one arrives with final=True."""

    segment_id: int
    text: str
    final: bool
    ref_seq: int = -1
    question_id: str | None = None


Output = OutputFrame | TextSegment


@dataclass(frozen=True, slots=True)
class StepResult:
    outputs: tuple[Output, ...]
    level: int = 0
    """The degrade-ladder rung the step ran at (0 = full quality)."""
    finished_unit: bool | None = None
    """The step completed a unit of work whose latency and deadline count (a block, a chunk), whether
    or not it produced outputs; None: it did exactly when it produced outputs."""

    @property
    def counts(self) -> bool:
        return bool(self.outputs) if self.finished_unit is None else self.finished_unit


def param_error(name: str, problem: str) -> ProtocolError:
    return ProtocolError("E_PARAM", f"{name}: {problem}")


class SessionEngine(ABC):
    """One session's engine (see module docstring)."""

    wants_input: bool = True
    """True: work is driven by input frames. False: by paced ticks at `tick_interval_s()`."""

    @abstractmethod
    def validate(self, params: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
        """Check parameter names and values (raise `param_error`); returns them normalised. No state change."""

    @abstractmethod
    def apply(self, params: Mapping[str, ParamValue]) -> None:
        """Apply validated parameters; they govern the next step on."""

    @abstractmethod
    def step(self, frame: InputFrame | None) -> StepResult:
        """One unit of work (blocking; on the worker thread)."""

    def batch_key(self, frame: InputFrame | None) -> Hashable | None:
        """Steps of engines of this class with equal keys may run together in `step_batch` (None: never).
        Called at queue time (frame None) and again on the worker before the step (the frame if any)."""
        return None

    @classmethod
    def step_batch(
        cls, engines: Sequence[SessionEngine], frames: Sequence[InputFrame | None]
    ) -> list[StepResult]:
        """`engine.step(frame)` for several engines of equal `batch_key` at once; each result must be what
        that engine's own `step` would give (within the fp tolerance the class documents). When it
        raises, every engine must be as before the call (the caller then steps them one by one)."""
        raise NotImplementedError

    def tick_interval_s(self) -> float:
        """Paced modes: seconds between ticks (the output duration of one step)."""
        raise NotImplementedError

    def finish(self) -> StepResult:
        """The input ended: flush what is buffered inside the engine (on the worker thread)."""
        return StepResult(())

    def ask(self, question_id: str, text: str) -> None:
        """A question (called on the event loop: only queue it; later steps answer it)."""
        raise ProtocolError("E_UNSUPPORTED", "this mode does not take questions")

    @abstractmethod
    def observe(self, seconds: float, budget_s: float) -> None:
        """One step took `seconds` against `budget_s` (the engine's own ladder may move)."""

    def degrade(self) -> bool:
        """Move one rung down now (the scheduler predicts a miss); False when already at the bottom."""
        return False

    def cache_bytes(self, used: bool = False) -> int:
        """Bytes of the session's KV cache at full size (memory admission, streamrt.server.budget), or
        with `used` only the part written so far (resident memory; the rest may be untouched pages)."""
        return 0

    @abstractmethod
    def close(self) -> None:
        """Release the engine's state."""


EngineFactory = Callable[[Mapping[str, ParamValue]], SessionEngine]
"""Builds a session's engine from its validated hello params (called off the event loop)."""
