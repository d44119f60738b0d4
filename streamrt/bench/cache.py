"""`streamrt bench cache`: decode-step time and cache memory over stream length, three caches, one model.

Model: a tiny random Llama (hidden 256, 4 layers, 4 query / 2 KV heads, head dim 64, fp32, SDPA).
For each stream length N (1k..100k tokens; `--quick`: 1k and 8k) the cache is brought to the state it
would have after N streamed tokens, then each timed call runs `steps` decode steps of one token:

- `stream@N` (StreamCache): N tokens streamed as 64-token vision chunks behind 4 sink tokens through
  the real append / evict (compact re-indexing with RoPE rotation) path, 16 chunks kept (1028 rows).
  K/V rows are written directly (the step cost does not depend on their values); the mean time of
  one eviction during the fill is reported as `evict_ms`. A step: append 1 token, forward, roll back.
- `dynamic@N` (transformers DynamicCache, unbounded): filled with N rows; a step: forward, crop.
- `recompute` (StreamingLLM's sliding-window baseline, the benchmark's baseline): every token is a
  forward over the last 1024 tokens from scratch; independent of N.

- `stream L:S`: the longest and shortest stream caches stepped alternately, one step each, so a load
  change on the shared machine hits both alike; `step_ratio` = long / short step time.

Extra figures: `cache_MiB` (bytes held by the cache's tensors). The targets of issue 4 read from the
table: `step_ratio` <= 1.15, stream cache_MiB flat, recompute / stream >= 10x ("vs base").
"""

from __future__ import annotations

import time

from streamrt.bench.harness import Bench, register

WINDOW = 1024
CHUNK = 64
SINKS = 4


def _model():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1 << 20, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


@register(
    "cache", "decode step time + memory vs stream length: StreamCache vs DynamicCache vs window recompute"
)
def bench_cache(bench: Bench) -> None:
    import torch
    from transformers import DynamicCache

    from streamrt.cache import RetentionPolicy, StreamCacheConfig, stream_cache_for

    lengths = [1024, 8192] if bench.quick else [1024, 10240, 102400]
    steps = 4 if bench.quick else 16
    model = _model()
    cfg = model.config
    H, D, L = cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads, cfg.num_hidden_layers
    tok = torch.tensor([[7]])
    bench.config = {
        "model": "tiny llama h256 L4 q4 kv2 d64 fp32",
        "lengths": lengths,
        "steps_per_call": steps,
        "window": WINDOW,
        "chunk": CHUNK,
        "sinks": SINKS,
        "torch_threads": torch.get_num_threads(),
    }
    g = torch.Generator().manual_seed(0)

    def stream_case(n: int):
        keep = WINDOW // CHUNK
        ccfg = StreamCacheConfig(
            capacity=SINKS + WINDOW + 8,
            retention=RetentionPolicy(sink_tokens=SINKS, text_window=8, vision_chunks=keep),
        )
        cache, hf = stream_cache_for(cfg, ccfg)
        kv = torch.randn(1, H, CHUNK, D, generator=g)

        def put(kind: str, m: int) -> float:
            t = time.perf_counter()
            cache.append(kind, m)
            dt = time.perf_counter() - t
            for layer in range(L):
                cache.write(layer, kv[:, :, :m], kv[:, :, :m])
            return dt

        put("system", SINKS)
        evict_s = [put("vision", CHUNK) for _ in range((n - SINKS) // CHUNK)]
        evict_ms = 1e3 * sum(evict_s[keep:]) / max(1, len(evict_s) - keep)
        mib = cache.memory().allocated_bytes / 2**20

        def step() -> None:
            mark = cache.length
            pos = cache.append("assistant", 1)
            model(input_ids=tok, position_ids=pos, past_key_values=hf)
            cache.rollback(mark)

        def run() -> dict[str, float]:
            with torch.no_grad():
                for _ in range(steps):
                    step()
            return {"cache_MiB": mib, "evict_ms": evict_ms, "rows": cache.length}

        steppers[n] = step
        return run

    steppers: dict[int, object] = {}

    def ratio_case(short: int, long: int):
        """Steps of the two stream caches interleaved one by one, so load changes hit both alike."""

        def run() -> dict[str, float]:
            t_short = t_long = 0.0
            with torch.no_grad():
                for _ in range(steps):
                    t = time.perf_counter()
                    steppers[short]()
                    t_short += time.perf_counter() - t
                    t = time.perf_counter()
                    steppers[long]()
                    t_long += time.perf_counter() - t
            return {"step_ratio": t_long / t_short, "short_step_ms": 1e3 * t_short / steps}

        return run

    def dynamic_case(n: int):
        dc = DynamicCache(config=cfg)
        for layer in range(L):
            dc.update(torch.randn(1, H, n, D, generator=g), torch.randn(1, H, n, D, generator=g), layer)
        mib = sum(la.keys.numel() + la.values.numel() for la in dc.layers) * 4 / 2**20
        pos = torch.tensor([[n]])

        def run() -> dict[str, float]:
            with torch.no_grad():
                for _ in range(steps):
                    model(input_ids=tok, position_ids=pos, past_key_values=dc)
                    dc.crop(-1)  # drop the step token: every call sees N rows
            return {"cache_MiB": mib, "rows": n}

        return run

    window_ids = torch.randint(0, cfg.vocab_size, (1, WINDOW), generator=g)

    def recompute() -> dict[str, float]:
        with torch.no_grad():
            for _ in range(steps):
                model(input_ids=window_ids, use_cache=False)
        return {"cache_MiB": 0.0, "rows": WINDOW}

    bench.case("recompute window 1024", recompute, work=steps, unit="tok", baseline=True, note="no cache")
    for n in lengths:
        bench.case(f"stream@{n}", stream_case(n), work=steps, unit="tok", note="sink 4 + 16 chunks of 64")
    bench.case(
        f"stream {lengths[-1]}:{lengths[0]}",
        ratio_case(lengths[0], lengths[-1]),
        work=2 * steps,
        unit="tok",
        note="both stream caches stepped alternately; step_ratio = long / short step time (target <= 1.15)",
    )
    for n in lengths:
        bench.case(f"dynamic@{n}", dynamic_case(n), work=steps, unit="tok", note="unbounded DynamicCache")
