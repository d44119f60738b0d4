"""Resume from a checkpointed `RunState`, in process (the CLI kill tests are in tests/reliability).

Oracle: the same run left uninterrupted. A run is stopped after chunk k (its state taken at that
boundary, written with `save_state` and read back with `load_state`), a new `StreamRun` over the
same frames resumes from it, and then:
- its outputs are exactly the uninterrupted run's outputs after chunk k (every field but the
  wall-clock ones), with the token drop on (the drop reference is part of the state) and responses
  and questions on both sides of the boundary;
- its final StreamCache equals the uninterrupted one bitwise (keys, values, positions, segments);
- the summary's counters cover the whole stream.
A state missing a part (here: the token-drop reference) gives a different output, so the
comparison can fail.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from streamrt.engine import EngineConfig, FinishResponse, Question, Schedule, StreamRun
from streamrt.engine.pipeline import RunState, load_state, save_state
from streamrt.engine.writers import content, output_record
from streamrt.synth import World, WorldConfig

QUESTIONS = [Question(2.2, "how many objects are there?", "a"), Question(6.0, "what just happened?", "b")]


def frames():
    w = World(WorldConfig.preset("busy", seed=7, fps=4.0, width=128, height=80))
    return list(itertools.islice(w.frames(), 40))  # 10 s, resampled to the model's 2 fps: 10 chunks


def config() -> EngineConfig:
    return EngineConfig(
        drop_threshold=0.9,
        response=Schedule(2.0),
        on_deadline=FinishResponse(),
        max_commentary_tokens=5,
        max_answer_tokens=4,
        spec=None,  # plain greedy: speculative rounds adapt to measured costs (timing), see docs/reliability.md
    )


def records(outs) -> list[dict[str, object]]:
    return [content(output_record(o)) for o in outs]


def run_until(adapter, k: int, path) -> tuple[list, RunState]:
    """Run, take the state at the boundary after chunk k, write and read it back, stop there."""
    taken: list[RunState] = []
    run = StreamRun(adapter, frames(), config(), questions=QUESTIONS)

    def boundary() -> None:
        if run._done is not None and run._done[0] == k:
            st = run.state()
            assert st is not None
            save_state(path, st, {"note": "test"})
            taken.append(st)

    run._on_boundary = boundary
    outs = []
    for o in run:
        if taken:  # `o` came after the boundary: not part of the stopped run
            break
        outs.append(o)
    state, extra = load_state(path)
    assert extra == {"note": "test"}
    return outs, state


@pytest.fixture(scope="module")
def uninterrupted(random_adapter):
    run = StreamRun(random_adapter, frames(), config(), questions=QUESTIONS)
    outs = list(run)
    return outs, run.session.store.snapshot(), run.summary()


@pytest.mark.parametrize("k", [0, 3, 7])
def test_resumed_run_equals_uninterrupted(random_adapter, uninterrupted, tmp_path, k):
    full, full_cache, full_summary = uninterrupted
    head, state = run_until(random_adapter, k, tmp_path / "state.pt")
    assert records(head) == records(full[: len(head)])
    run = StreamRun(random_adapter, frames(), config(), questions=QUESTIONS, resume=state)
    tail = list(run)
    assert records(head + tail) == records(full)
    kinds = {r["type"] for r in records(tail)}
    assert {"chunk", "response"} <= kinds  # the resumed part speaks too
    got = run.session.store.snapshot()
    for f in ("keys", "values", "pos", "orig_pos", "token_index"):
        assert torch.equal(getattr(got, f), getattr(full_cache, f)), f
    assert got.segments == full_cache.segments
    assert (got.next_position, got.next_id, got.evictions) == (
        full_cache.next_position,
        full_cache.next_id,
        full_cache.evictions,
    )
    s = run.summary()
    for f in ("frames", "chunks", "tokens_total", "tokens_kept", "commentaries", "answers", "stream_s"):
        assert getattr(s, f) == getattr(full_summary, f), f


def test_every_part_of_the_state_matters(random_adapter, uninterrupted, tmp_path):
    full, _, _ = uninterrupted
    head, state = run_until(random_adapter, 3, tmp_path / "state.pt")
    blind = dataclasses.replace(state, reference=torch.zeros_like(state.reference))
    tail = list(StreamRun(random_adapter, frames(), config(), questions=QUESTIONS, resume=blind))
    assert records(head + tail) != records(full)  # the token drop's reference is part of the state


def test_state_is_none_mid_response(random_adapter):
    run = StreamRun(random_adapter, frames(), config(), questions=QUESTIONS)
    assert run.state() is None  # before the first chunk
    run.close()
