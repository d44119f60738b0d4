"""The shapes world's language: one fixed, parseable sentence per event, captions, and the parser.

Owns: the sentence grammar (one template per event kind), number words, plurals, and `Mention`,
the comparable form of an event (what a sentence can say about it: kind, shape, colour, detail).
`parse` inverts `describe` exactly: parse(describe(e)) == [mention(e)] for every event; it is used
to score a model's commentary against the ground truth with event F1. Does not know object ids,
times or positions beyond the words below.

Grammar (lower case; sentences separated by ".", ";", "!" or new lines; an optional leading
timestamp such as "[12.30s]" or "12.3:" is ignored):
  appear         a|an {colour} {shape} appears
  enter          a|an {colour} {shape} enters from the {side}
  leave          the {colour} {shape} leaves to the {side}
  move_start     the {colour} {shape} starts moving {direction}
  stop           the {colour} {shape} stops
  bounce         the {colour} {shape} bounces off the {wall} edge
  colour_change  the {old colour} {shape} turns {new colour}
  grow / shrink  the {colour} {shape} grows / shrinks
  cut            the scene cuts
  still_start    everything stops
  still_end      everything moves again
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from streamrt.synth.config import COLOURS, SHAPES
from streamrt.synth.types import DIRECTIONS, SCENE_KINDS, SIDES, Event, Scene

NUMBERS: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
)


@dataclass(frozen=True, slots=True)
class Mention:
    """What one sentence says about an event. `detail` is the side, wall, direction or new colour."""

    kind: str
    shape: str | None = None
    colour: str | None = None
    detail: str | None = None


def number_word(n: int) -> str:
    """'zero'..'ten', digits beyond."""
    return NUMBERS[n] if 0 <= n < len(NUMBERS) else str(n)


def article(word: str) -> str:
    """'an' before a vowel ("an orange star"), else 'a'."""
    return "an" if word[0] in "aeiou" else "a"


def plural(shape: str) -> str:
    return shape + "s"


def mention(event: Event) -> Mention:
    """The comparable content of an event (what `describe` puts into words)."""
    a = event.attrs
    k = event.kind
    if k in SCENE_KINDS:
        return Mention(k)
    if k == "colour_change":
        return Mention(k, a["shape"], a["from"], a["colour"])
    detail = {"enter": "side", "leave": "side", "move_start": "direction", "bounce": "wall"}.get(k)
    return Mention(k, a["shape"], a["colour"], a[detail] if detail else None)


def say(m: Mention) -> str:
    """The sentence of a mention (no final full stop)."""
    k, s, c, d = m.kind, m.shape, m.colour, m.detail
    match k:
        case "appear":
            return f"{article(c or '')} {c} {s} appears"
        case "enter":
            return f"{article(c or '')} {c} {s} enters from the {d}"
        case "leave":
            return f"the {c} {s} leaves to the {d}"
        case "move_start":
            return f"the {c} {s} starts moving {d}"
        case "stop":
            return f"the {c} {s} stops"
        case "bounce":
            return f"the {c} {s} bounces off the {d} edge"
        case "colour_change":
            return f"the {c} {s} turns {d}"
        case "grow":
            return f"the {c} {s} grows"
        case "shrink":
            return f"the {c} {s} shrinks"
        case "cut":
            return "the scene cuts"
        case "still_start":
            return "everything stops"
        case "still_end":
            return "everything moves again"
    raise ValueError(f"unknown event kind {k!r}")


def describe(event: Event) -> str:
    """One sentence for an event, e.g. "a red circle enters from the left"."""
    return say(mention(event))


_C = "(?P<colour>" + "|".join(COLOURS) + ")"
_S = "(?P<shape>" + "|".join(SHAPES) + ")"
_SIDE = "(?P<detail>" + "|".join(SIDES) + ")"
_DIR = "(?P<detail>" + "|".join(sorted(DIRECTIONS, key=len, reverse=True)) + ")"
_NEW = "(?P<detail>" + "|".join(COLOURS) + ")"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(rf"^{pattern}$"))
    for kind, pattern in (
        ("appear", rf"an? {_C} {_S} appears"),
        ("enter", rf"an? {_C} {_S} enters from the {_SIDE}"),
        ("leave", rf"the {_C} {_S} leaves to the {_SIDE}"),
        ("move_start", rf"the {_C} {_S} starts moving {_DIR}"),
        ("stop", rf"the {_C} {_S} stops"),
        ("bounce", rf"the {_C} {_S} bounces off the {_SIDE} edge"),
        ("colour_change", rf"the {_C} {_S} turns {_NEW}"),
        ("grow", rf"the {_C} {_S} grows"),
        ("shrink", rf"the {_C} {_S} shrinks"),
        ("cut", r"the scene cuts"),
        ("still_start", r"everything stops"),
        ("still_end", r"everything moves again"),
    )
)
_SPLIT = re.compile(r"[.;!\n]+")
_STAMP = re.compile(r"^\s*\[?\s*\d+(?::\d+)*(?:\.\d+)?\s*s?\s*\]?\s*:?\s*")


def parse_sentence(text: str) -> Mention | None:
    """The mention one sentence expresses, or None when it is not in the grammar."""
    s = " ".join(_STAMP.sub("", text.lower()).split())
    for kind, pat in _PATTERNS:
        m = pat.match(s)
        if m:
            g = m.groupdict()
            return Mention(kind, g.get("shape"), g.get("colour"), g.get("detail"))
    return None


def parse(text: str) -> list[Mention]:
    """Every event mention in `text`, in order; sentences outside the grammar are skipped."""
    out = []
    for part in _SPLIT.split(text):
        m = parse_sentence(part) if part.strip() else None
        if m is not None:
            out.append(m)
    return out


def caption(scene: Scene) -> str:
    """What is in view, grouped by colour and shape in drawing order: "a red circle and two blue squares"."""
    counts: dict[tuple[str, str], int] = {}
    for o in scene.objects:
        counts[(o.colour, o.shape)] = counts.get((o.colour, o.shape), 0) + 1
    if not counts:
        return "nothing"
    parts = [
        f"{article(c)} {c} {s}" if n == 1 else f"{number_word(n)} {c} {plural(s)}"
        for (c, s), n in counts.items()
    ]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def mention_f1(predicted: list[Mention], truth: list[Mention]) -> tuple[float, float, float]:
    """(precision, recall, F1) of two multisets of mentions (order and time ignored; 1.0 if both empty)."""
    if not predicted and not truth:
        return 1.0, 1.0, 1.0
    hit = sum((Counter(predicted) & Counter(truth)).values())
    p = hit / len(predicted) if predicted else 0.0
    r = hit / len(truth) if truth else 0.0
    return p, r, 2 * p * r / (p + r) if hit else 0.0
