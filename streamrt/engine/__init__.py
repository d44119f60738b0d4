"""streamrt.engine: the streaming understanding engine (one session per stream).

Frames sampled at the model's fps -> chunks -> vision encoder -> differential token drop ->
StreamCache (sinks + text window + vision window; evictions by retention policy) -> response policy
(silence probability from the prefill, schedule, scene change; questions at chunk boundaries) ->
streamed text with capture/output times and deadlines.

    from streamrt.engine import EngineConfig, StreamRun
    from streamrt.models.vlm import load_adapter
    adapter = load_adapter("builtin")
    with StreamRun(adapter, frames, EngineConfig(), speed=1.0) as run:   # frames: ingest/synth frames
        run.ask("what colour is the square?", t=12.5)
        for out in run:                                                  # TextDelta, ResponseEnd, ChunkDone
            ...
    print(run.summary().format())

Modules: `types` (records between stages), `config`, `policy` (response and deadline policies),
`queues` (bounded, named drop policies), `chunker`, `encoder` (vision + token drop), `session`
(language-model side), `pipeline` (threads), `asks` (questions), `writers` (JSONL/SRT/WebVTT),
`stats` (summary).
"""

from streamrt.engine.asks import Inbox, parse_ask, read_ask_file
from streamrt.engine.config import EngineConfig
from streamrt.engine.errors import EngineError
from streamrt.engine.pipeline import StreamRun
from streamrt.engine.policy import (
    DEADLINE_POLICIES,
    AllOf,
    AnyOf,
    CutResponse,
    FinishResponse,
    ModelDefault,
    ResumeResponse,
    SceneChange,
    Schedule,
    Signal,
    SilenceArgmax,
    SilenceThreshold,
)
from streamrt.engine.queues import BoundedQueue, Closed, QueueStats
from streamrt.engine.session import Session
from streamrt.engine.stats import Summary
from streamrt.engine.types import (
    Chunk,
    ChunkDone,
    EncodedChunk,
    Output,
    Question,
    ResponseEnd,
    SampledFrame,
    TextDelta,
)
from streamrt.engine.writers import writer_for

__all__ = [
    "DEADLINE_POLICIES",
    "AllOf",
    "AnyOf",
    "BoundedQueue",
    "Chunk",
    "ChunkDone",
    "Closed",
    "CutResponse",
    "EncodedChunk",
    "EngineConfig",
    "EngineError",
    "FinishResponse",
    "Inbox",
    "ModelDefault",
    "Output",
    "Question",
    "QueueStats",
    "ResponseEnd",
    "ResumeResponse",
    "SampledFrame",
    "SceneChange",
    "Schedule",
    "Session",
    "Signal",
    "SilenceArgmax",
    "SilenceThreshold",
    "StreamRun",
    "Summary",
    "TextDelta",
    "parse_ask",
    "read_ask_file",
    "writer_for",
]
