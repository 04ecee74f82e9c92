"""The KV cache, measured: time per generated token with and without the cache, against sequence length."""
from __future__ import annotations

import time
from typing import Sequence

import torch

from ..sampling import generate_stream


@torch.inference_mode()
def kv_cache_latency(model, ids: Sequence[int], n_new: int, layers=None) -> dict:
    """Time greedy decoding token by token with and without the KV cache (batch 1).

    Returns per-step milliseconds for both ways against the sequence length at that step, the total seconds,
    and whether both produced the same tokens (they must: the cache changes the cost, not the result).
    """
    x = torch.tensor([list(ids)[-model.config.block_size:]], dtype=torch.long)
    out = {}
    for name, use_cache in (("cached", True), ("nocache", False)):
        times, tokens = [], []
        t = time.perf_counter()
        for nxt in generate_stream(model, x, n_new, temperature=0.0, layers=layers, use_cache=use_cache):
            now = time.perf_counter()
            times.append((now - t) * 1e3)
            tokens.append(int(nxt[0, 0]))
            t = now
        out[name] = {"ms": times, "tokens": tokens, "seconds": sum(times) / 1e3}
    lengths = list(range(x.size(1) + 1, x.size(1) + 1 + n_new))  # sequence length once each token is added
    return {"lengths": lengths, "cached_ms": out["cached"]["ms"], "nocache_ms": out["nocache"]["ms"],
            "cached_s": out["cached"]["seconds"], "nocache_s": out["nocache"]["seconds"],
            "same_tokens": out["cached"]["tokens"] == out["nocache"]["tokens"]}
