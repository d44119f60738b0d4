"""streamrt.cache: streaming KV caches (sink + text window + vision window for VLMs, sink + rolling
frame window for video diffusion) and their position (RoPE) policies.

Understanding models (StreamingVLM layout), one session:

    from streamrt.cache import RetentionPolicy, StreamCacheConfig, stream_cache_for
    from streamrt.kernels import token_drop
    cfg = StreamCacheConfig(capacity=4096, retention=RetentionPolicy(sink_tokens=64, text_window=512, vision_chunks=8))
    cache, hf = stream_cache_for(model.config, cfg)           # hf: the `past_key_values` object
    pos = cache.append("system", len(ids))                    # reserve rows -> position ids
    model(input_ids=ids[None], position_ids=pos, past_key_values=hf)
    p, span = cache.vision_positions_for((t, h, w))           # M-RoPE positions, LLM-token grid
    keep = token_drop(feats.view(t, h * w, -1), prev, threshold=0.9)       # differential drop
    pos = cache.append("vision", positions=p[:, keep], span=span, timestamp=ts)  # evicts first
    out = model(inputs_embeds=feats[keep][None], position_ids=pos, past_key_values=hf)
    mark = cache.begin_speculation()                          # drafts: append(..., extend=True)
    cache.rollback(mark + accepted)                           # a pointer move
    snap = cache.snapshot(); cache.restore(snap); cache.memory()

Always pass the returned position ids (eviction re-indexes); run one forward per append.
"""

from streamrt.cache.frame import (
    Absolute,
    CacheRelative,
    FrameCache,
    FrameCacheConfig,
    FrameCacheError,
    FrameCacheStats,
    Rotate,
)
from streamrt.cache.frame import PositionPolicy as FramePositionPolicy
from streamrt.cache.hf import (
    HFStreamCache,
    StreamLayer,
    attention_implementation,
    register_attention,
    spec_from_config,
    stream_cache_for,
    use_gqa_attention,
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

__all__ = [
    "Absolute",
    "CacheRelative",
    "FrameCache",
    "FrameCacheConfig",
    "FrameCacheError",
    "FramePositionPolicy",
    "FrameCacheStats",
    "Rotate",
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
    "attention_implementation",
    "register_attention",
    "spec_from_config",
    "stream_cache_for",
    "use_gqa_attention",
]
