"""Quality scoring: answers are compared after normalisation (and by mention multiset for "what just
happened?"), and the report's F1 / silence figures follow from counts worked out by hand."""

from __future__ import annotations

from collections import Counter

import pytest
from streamrt.models.vlm import load_adapter
from streamrt.models.vlm.evaluate import (
    ChunkTrace,
    QualityReport,
    answer_correct,
    evaluate,
    separation_auc,
    threshold_table,
)

from streamrt.engine.policy import SilenceArgmax, SilenceThreshold
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


def trace(*rows: tuple[float, float, int, bool]) -> list[ChunkTrace]:
    return [ChunkTrace(7, float(i), p, c, e, s) for i, (p, c, e, s) in enumerate(rows)]


# (P(silence), change, events, spoke): 2 event chunks, 3 quiet ones
TINY = trace((0.1, 0.30, 1, True), (0.6, 0.00, 0, False), (0.4, 0.20, 2, True), (0.9, 0.05, 0, False),
             (0.3, 0.00, 0, True))  # fmt: skip


def test_threshold_table_by_hand():
    rows = {r["threshold"]: r for r in threshold_table(TINY, [0.05, 0.35, 0.5, 0.95])}
    # 0.05: every P(silence) >= 0.05, so every chunk is silent
    assert rows[0.05]["spoke_share"] == 0.0
    assert rows[0.05]["silence_precision"] == pytest.approx(3 / 5) and rows[0.05]["silence_recall"] == 1.0
    assert rows[0.05]["event_chunk_recall"] == 0.0
    # 0.35: silent = {0.6, 0.4, 0.9}: quiet among them 2 (0.6, 0.9); spoken event chunks: the 0.1 one
    r = rows[0.35]
    assert r["spoke_share"] == pytest.approx(2 / 5)
    assert r["silence_precision"] == pytest.approx(2 / 3) and r["silence_recall"] == pytest.approx(2 / 3)
    assert r["event_chunk_recall"] == pytest.approx(1 / 2)
    # 0.5: silent = {0.6, 0.9}, both quiet; both event chunks spoken
    r = rows[0.5]
    assert r["silence_precision"] == 1.0 and r["silence_recall"] == pytest.approx(2 / 3)
    assert r["event_chunk_recall"] == 1.0
    # 0.95: never silent
    assert rows[0.95]["spoke_share"] == 1.0 and rows[0.95]["silence_precision"] == 0.0
    assert rows[0.95]["silence_recall"] == 0.0 and rows[0.95]["event_chunk_recall"] == 1.0


def test_separation_auc_by_hand():
    auc = separation_auc(TINY)
    # 1 - P: events {0.9, 0.6}, quiet {0.4, 0.1, 0.7}: pairs won 3 + 2 = 5 of 6
    assert auc["p_speak"] == pytest.approx(5 / 6)
    # change: events {0.30, 0.20}, quiet {0.00, 0.05, 0.00}: all 6 pairs won
    assert auc["change"] == 1.0
    tied = separation_auc(trace((0.5, 0.1, 1, True), (0.5, 0.1, 0, True)))
    assert tied == {"p_speak": 0.5, "change": 0.5}
    assert all(v != v for v in separation_auc(trace((0.5, 0.1, 0, True))).values())  # NaN: one class


def test_figures_count_spoken_chunks():
    r = QualityReport(chunks=5, trace=TINY)
    assert r.figures()["spoke_share"] == pytest.approx(3 / 5)


def test_calibration_split_refuses_held_out_seeds():
    with pytest.raises(ValueError):
        evaluate(None, [999_999], 1, split="train")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def builtin():
    return load_adapter("builtin")


def test_policy_that_never_speaks_scores_as_silence(builtin):
    """P(silence) < 0 never holds: every chunk is silent, so silence recall is 1, precision is the
    share of event-free chunks (from the world's own timeline in the trace), and nothing is said."""
    r = evaluate(builtin, [3], 6, policy=SilenceThreshold(0.0))
    quiet = sum(c.events == 0 for c in r.trace)
    assert len(r.trace) == r.chunks == 6 and not any(c.spoke for c in r.trace)
    assert r.said_mentions == [] and r.silent_pred == 6 and r.silent_true == quiet
    f = r.figures()
    assert f["spoke_share"] == 0.0 and f["silence_precision"] == pytest.approx(quiet / 6)
    assert f["silence_recall"] == (1.0 if quiet else 0.0)


def test_argmax_policy_decides_like_greedy(builtin):
    """The engine's SilenceArgmax makes the same speak/silent decision per chunk as plain greedy
    decoding, and a commentary starts from the same token, so both runs say the same."""
    greedy_run = evaluate(builtin, [4], 6)
    policy_run = evaluate(builtin, [4], 6, policy=SilenceArgmax())
    assert [c.spoke for c in policy_run.trace] == [c.spoke for c in greedy_run.trace]
    assert policy_run.said_mentions == greedy_run.said_mentions
    assert [c.p_silence for c in policy_run.trace] == [c.p_silence for c in greedy_run.trace]


@pytest.mark.parametrize("drop", [None, 0.9])
def test_policy_scoring_follows_the_engine(builtin, drop):
    """Oracle: the engine itself. The same world frames through `StreamRun` (plain greedy, deadlines
    never cut, the evaluator's retention, token drop as given) under the same scene-change policy give
    the same speak/silent decision, P(silence) and commentary per chunk as `evaluate`'s loop."""
    import itertools

    from streamrt.cache import RetentionPolicy, StreamCacheConfig
    from streamrt.models.vlm.shapes_data import world_config

    from streamrt.engine import ChunkDone, EngineConfig, ResponseEnd, SceneChange, StreamRun
    from streamrt.synth import World, parse

    seed, n, policy = 5, 8, SceneChange(2e-4)
    rep = evaluate(builtin, [seed], n, question_rate=0.0, policy=policy, drop_threshold=drop)
    cfg = world_config(seed)
    frames = World(cfg).frames(cfg.width, cfg.height, stride=round(cfg.fps / builtin.fps))
    engine = EngineConfig.preset(
        "exact",
        drop_threshold=drop,
        spec=None,
        response=policy,
        max_commentary_tokens=96,
        cache=StreamCacheConfig(
            capacity=2048, retention=RetentionPolicy(sink_tokens=0, text_window=256, vision_chunks=8)
        ),
    )
    done, said = [], {}
    for o in StreamRun(builtin, itertools.islice(frames, n * builtin.frames_per_chunk), engine):
        if isinstance(o, ChunkDone):
            done.append(o)
        elif isinstance(o, ResponseEnd):
            said[o.t] = o.text
    assert [c.spoke for c in done] == [c.spoke for c in rep.trace]
    assert [c.p_silence for c in done] == pytest.approx([c.p_silence for c in rep.trace], abs=1e-5)
    engine_mentions = [m for c in done for m in parse(said.get(c.t_end, ""))]
    assert engine_mentions == rep.said_mentions
    assert 0 < sum(c.spoke for c in done) < n  # the policy both spoke and kept silent here


def test_following_itself_agrees_everywhere(builtin):
    """Open loop against an identical run: the history replayed (one prefill per response instead of
    one decode step per token) leaves every chunk's output and answer as the reference's, so every
    agreement figure is 1 and the scores are the reference's."""
    ref = evaluate(builtin, [6], 8, question_rate=0.5, policy=SilenceThreshold(0.5))
    run = evaluate(builtin, [6], 8, question_rate=0.5, policy=SilenceThreshold(0.5), follow=ref)
    f, g = run.figures(), ref.figures()
    assert run.agreement["chunks"] == 8 and run.agreement["answers"] == sum(ref.qa_total.values()) > 0
    assert f["decisions_agree_share"] == f["chunks_identical_share"] == f["answers_identical_share"] == 1.0
    assert f["events_unchanged_share"] == 1.0 and f["reference_events"] == len(ref.said_mentions) > 0
    assert run.said_mentions == ref.said_mentions and run.qa_right == ref.qa_right
    assert run.responses == ref.responses
    assert "events_unchanged_share" not in g  # a closed-loop run has no agreement figures


def test_following_counts_disagreement(builtin):
    """A run that never speaks, following a scene-change policy: it agrees exactly on the chunks the
    reference kept silent (same decision, same silence token) and keeps none of its events; it
    answers in the reference's history, so its answers are the reference's."""
    from streamrt.engine import SceneChange

    ref = evaluate(builtin, [5], 8, question_rate=0.5, policy=SceneChange(2e-4))
    run = evaluate(builtin, [5], 8, question_rate=0.5, policy=SilenceThreshold(0.0), follow=ref)
    silent = sum(not c.spoke for c in ref.trace)
    assert 0 < silent < 8  # the reference both spoke and kept silent here
    f = run.figures()
    assert f["decisions_agree_share"] == f["chunks_identical_share"] == pytest.approx(silent / 8)
    assert f["events_unchanged_share"] == 0.0 and f["reference_events"] == len(ref.said_mentions)
    assert f["answers_identical_share"] == 1.0 and run.said_mentions == []


def test_following_a_different_stream_is_refused(builtin):
    ref = evaluate(builtin, [6], 3, question_rate=0.0)
    with pytest.raises(ValueError):
        evaluate(builtin, [6], 2, question_rate=0.0, follow=ref)
