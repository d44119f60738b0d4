"""Quality scoring: answers are compared after normalisation (and by mention multiset for "what just
happened?"), and the report's F1 / silence figures follow from counts worked out by hand."""

from __future__ import annotations

from collections import Counter

import pytest
from streamrt.models.vlm.evaluate import QualityReport, answer_correct, evaluate

from streamrt.synth import Mention


def test_answer_correct():
    assert answer_correct("Red.", "red", "colour")
    assert not answer_correct("blue", "red", "colour")
    truth = "a red circle appears. the blue square stops"
    assert answer_correct("the blue square stops. a red circle appears", truth, "last_event")
    assert not answer_correct("the blue square stops", truth, "last_event")
    assert not answer_correct("the blue square stops. a red circle appears", truth, "count")


def test_report_figures():
    a, b, c = Mention("stop", "circle", "red"), Mention("grow", "star", "blue"), Mention("cut")
    r = QualityReport(chunks=4)
    r.true_mentions = [a, b, c]
    r.said_mentions = [a, c, c, b]  # one c too many; b said in the wrong chunk
    r.aligned_hits = 2
    r.silent_pred, r.silent_true, r.silent_both = 2, 1, 1
    r.qa_total, r.qa_right = Counter(colour=2, count=2), Counter(colour=2, count=1)
    f = r.figures()
    assert f["event_precision"] == pytest.approx(2 / 4) and f["event_recall"] == pytest.approx(2 / 3)
    assert f["event_f1"] == pytest.approx(2 * (0.5 * 2 / 3) / (0.5 + 2 / 3))
    assert f["event_precision_stream"] == pytest.approx(3 / 4) and f["event_recall_stream"] == 1.0
    assert f["silence_precision"] == 0.5 and f["silence_recall"] == 1.0
    assert (
        f["qa_accuracy"] == 0.75 and f["qa_colour"] == 1.0 and f["qa_count"] == 0.5 and f["qa_shape"] == 0.0
    )


def test_training_seeds_refused():
    with pytest.raises(ValueError):
        evaluate(None, [1_000_000], 1)  # type: ignore[arg-type]
