"""Questions about the shapes world and their ground-truth answers, computed from the state.

Owns: the question templates (a small closed set), the answer vocabulary and the position words.
`questions` draws one question per answerable type from a scene; `answer` parses any question in
the grammar and computes its answer from a `Scene` and the recent events, so it is the oracle for
scoring a model. Does not know how the scene was produced or drawn. Counts and colours include
objects hidden behind others (the state, not the pixels, is the truth).

Templates (answers in brackets):
  colour      what colour is the {shape}?                 [colour | "none" | "several"]
  shape       what shape is the {colour} object?          [shape | "none" | "several"]
  count       how many {shape}s are there?                [number word]
              how many {colour} objects are there?        [number word]
              how many objects are there?                 [number word]
  position    where is the {colour} {shape}?              [left|right|top|bottom|centre | "none" | "several"]
  last_event  what just happened?                         [sentences of `describe`, ". "-joined | "nothing"]
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from streamrt.synth.config import COLOURS, SHAPES, SynthError
from streamrt.synth.language import describe, number_word, plural
from streamrt.synth.types import Event, Scene, SceneObject

QType = Literal["colour", "shape", "count", "position", "last_event"]
QTYPES: tuple[str, ...] = ("colour", "shape", "count", "position", "last_event")
CENTRE_BOX = 1 / 6  # |dx| and |dy| from the middle below this: "centre"
_CLEAR = 0.04  # questions() only asks positions this far from a boundary between two words


@dataclass(frozen=True, slots=True)
class QA:
    """A question, its ground-truth answer and its type. Unpacks as (question, answer, qtype)."""

    question: str
    answer: str
    qtype: str

    def __iter__(self) -> Iterator[str]:
        return iter((self.question, self.answer, self.qtype))


def position_of(o: SceneObject) -> str:
    """Where an object's centre is: "centre" inside the middle box, else the dominant side."""
    dx, dy = o.nx - 0.5, o.ny - 0.5
    if max(abs(dx), abs(dy)) < CENTRE_BOX:
        return "centre"
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "top" if dy < 0 else "bottom"


def _clear_position(o: SceneObject) -> bool:
    dx, dy = abs(o.nx - 0.5), abs(o.ny - 0.5)
    return abs(max(dx, dy) - CENTRE_BOX) > _CLEAR and (max(dx, dy) < CENTRE_BOX or abs(dx - dy) > _CLEAR)


def last_event_answer(recent_events: Sequence[Event]) -> str:
    """What happened at the latest event time: a cut hides the rest; "nothing" if no event."""
    if not recent_events:
        return "nothing"
    t = max(e.t for e in recent_events)
    last = [e for e in recent_events if e.t == t]
    if any(e.kind == "cut" for e in last):
        return "the scene cuts"
    return ". ".join(describe(e) for e in last)


def _one(objs: list[SceneObject], what: str) -> str:
    return "none" if not objs else what if len(objs) == 1 else "several"


_SH = "|".join(SHAPES)
_CO = "|".join(COLOURS)
_Q: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("colour", re.compile(rf"^what colou?r is the ({_SH})\??$")),
    ("shape", re.compile(rf"^what shape is the ({_CO}) object\??$")),
    ("count_shape", re.compile(rf"^how many ({_SH})s are there\??$")),
    ("count_colour", re.compile(rf"^how many ({_CO}) objects are there\??$")),
    ("count_all", re.compile(r"^how many objects are there\??$")),
    ("position", re.compile(rf"^where is the ({_CO}) ({_SH})\??$")),
    ("last_event", re.compile(r"^what just happened\??$")),
)


def answer(question: str, scene: Scene, recent_events: Sequence[Event] = ()) -> str:
    """The ground-truth answer to a question in the grammar (raises SynthError E_SYNTH_QUESTION)."""
    q = " ".join(question.lower().split())
    objs = list(scene.objects)
    for name, pat in _Q:
        m = pat.match(q)
        if not m:
            continue
        g = m.groups()
        if name == "colour":
            hits = [o for o in objs if o.shape == g[0]]
            return _one(hits, hits[0].colour if hits else "")
        if name == "shape":
            hits = [o for o in objs if o.colour == g[0]]
            return _one(hits, hits[0].shape if hits else "")
        if name == "count_shape":
            return number_word(sum(o.shape == g[0] for o in objs))
        if name == "count_colour":
            return number_word(sum(o.colour == g[0] for o in objs))
        if name == "count_all":
            return number_word(len(objs))
        if name == "position":
            hits = [o for o in objs if o.colour == g[0] and o.shape == g[1]]
            return _one(hits, position_of(hits[0]) if hits else "")
        return last_event_answer(recent_events)
    raise SynthError("E_SYNTH_QUESTION", f"question not in the shapes-world grammar: {question!r}")


def questions(scene: Scene, rng: random.Random, recent_events: Sequence[Event] = ()) -> list[QA]:
    """One question per type that has a well-posed candidate in `scene`, each drawn with `rng`.

    colour/shape/position questions are only asked about an object that its words single out,
    position only when it is clearly within one region; count and last_event are always asked.
    """
    objs = list(scene.objects)
    shapes = [o.shape for o in objs]
    colours = [o.colour for o in objs]
    pairs = [(o.colour, o.shape) for o in objs]
    cands: dict[str, list[str]] = {t: [] for t in QTYPES}
    for o in objs:
        if shapes.count(o.shape) == 1:
            cands["colour"].append(f"what colour is the {o.shape}?")
        if colours.count(o.colour) == 1:
            cands["shape"].append(f"what shape is the {o.colour} object?")
        if pairs.count((o.colour, o.shape)) == 1 and _clear_position(o):
            cands["position"].append(f"where is the {o.colour} {o.shape}?")
    cands["count"] = [
        *(f"how many {plural(s)} are there?" for s in SHAPES),
        *(f"how many {c} objects are there?" for c in sorted(set(colours))),
        "how many objects are there?",
    ]
    cands["last_event"] = ["what just happened?"]
    out = []
    for qtype in QTYPES:
        if cands[qtype]:
            q = rng.choice(cands[qtype])
            out.append(QA(q, answer(q, scene, recent_events), qtype))
    return out
