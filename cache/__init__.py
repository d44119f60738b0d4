"""streamrt.cache: streaming KV caches (sink + text window + vision window for VLMs, sink + rolling
frame window for video diffusion) and their position (RoPE) policies.

Understanding models (StreamingVLM layout):

    from streamrt.cache import StreamCacheConfig, RetentionPolicy, stream_cache_for
    cache, hf = stream_cache_for(model.config, StreamCacheConfig(capacity=4096))
    pos = cache.append("system", n=len(ids))                     # position ids for the chunk
    model(input_ids=ids[None], position_ids=pos, past_key_values=hf)
    p, span = cache.vision_positions_for((t, h, w))              # M-RoPE positions of a chunk
    pos = cache.append("vision", positions=p, span=span)         # evicts by policy first
    model(inputs_embeds=x, position_ids=pos, past_key_values=hf)
    mark = cache.begin_speculation(); ...; cache.rollback(mark + accepted)
"""

from streamrt.cache.hf import (
    HFStreamCache,
    StreamLayer,
    register_attention,
    spec_from_config,
    stream_cache_for,
)
from streamrt.cache.policy import (
    CompactPositions,
    GapPositions,
    MasterPositions,
    PositionPolicy,
    RetentionPolicy,
)
from streamrt.cache.stream import CacheSnapshot, StreamCache, StreamCacheConfig
from streamrt.cache.types import CacheError, CacheSpec, MemoryReport, Segment, SegmentKind

# FrameCache (video diffusion) is exported by its owner: add `from streamrt.cache.frame import ...` here.

__all__ = [
    "CacheError",
    "CacheSnapshot",
    "CacheSpec",
    "CompactPositions",
    "GapPositions",
    "HFStreamCache",
    "MasterPositions",
    "MemoryReport",
    "PositionPolicy",
    "RetentionPolicy",
    "Segment",
    "SegmentKind",
    "StreamCache",
    "StreamCacheConfig",
    "StreamLayer",
    "register_attention",
    "spec_from_config",
    "stream_cache_for",
]
