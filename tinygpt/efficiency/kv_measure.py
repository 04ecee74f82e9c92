"""The KV cache, measured on this machine. The cache itself lives in model.py (`GPT.new_cache`, `KVCache`).

`kv_cache_measurement` allocates the model's real KVCache for each sequence length and reports the bytes it holds
next to the calculator's formula (tinygpt.compute.kv_cache_bytes; they are equal by construction, and a test says
so), with the milliseconds per generated token of cached decoding at that length. `kv_cache_latency` times greedy
decoding token by token with and without the cache. gqa.py's `compare_kv_heads` times MHA / GQA / MQA with the
same `decode_times`.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Optional, Sequence

import torch

from ..compute import kv_cache_bytes
from ..device import allocated_memory, model_device, synchronize
from ..dtypes import check_name, dtype_name
from ..model import GPT
from ..sampling import generate_stream
from .measure import check_memory

DECODE_STEPS = 8  # cached decoding steps timed at every length (the median is reported)


def kv_label(n_head: int, n_kv_head: int) -> str:
    """'MHA' (one K/V head per query head), 'MQA' (one K/V head for all), else 'GQA-<groups>'."""
    if n_kv_head == n_head:
        return "MHA"
    return "MQA" if n_kv_head == 1 else f"GQA-{n_kv_head}"


def cache_dtype(model, dtype=None) -> str:
    """The name of the dtype a KV cache of `model` holds (its own); ValueError if `dtype` asks for another."""
    have = dtype_name(model.transformer.wte.weight.dtype)
    if have is None:
        raise ValueError(f"The KV cache is measured for fp32, fp16 or bf16 models (this one is "
                         f"{model.transformer.wte.weight.dtype}).")
    if dtype is None:
        return have
    want = check_name(dtype_name(dtype, dtype))
    if want != have:
        raise ValueError(f"The cache holds the model's own dtype ({have}); load the model in {want} to measure "
                         f"a {want} cache.")
    return have


def check_lengths(seq_lens, block_size: int) -> list[int]:
    """Sorted distinct sequence lengths, each between 2 (one prompt token + one generated) and the context."""
    if isinstance(seq_lens, (int, str)):
        seq_lens = [seq_lens] if isinstance(seq_lens, int) else \
            [t for t in str(seq_lens).replace(" ", "").split(",") if t]
    try:
        lens = sorted({int(x) for x in seq_lens})
    except (TypeError, ValueError):
        raise ValueError(f"Sequence lengths must be whole numbers separated by commas (got {seq_lens!r}).") from None
    if not lens:
        raise ValueError("Give at least one sequence length, e.g. 64,128,256.")
    bad = [n for n in lens if not 2 <= n <= block_size]
    if bad:
        raise ValueError(f"Sequence lengths must be between 2 and the model's context of {block_size:,} tokens "
                         f"(got {bad}).")
    return lens


def allocated_bytes(cache) -> int:
    """Bytes a KVCache holds: K and V, each (B, n_kv_head, L, head_dim) per layer."""
    return sum(t.nbytes for t in cache.k + cache.v)


@torch.inference_mode()
def decode_times(model, L: int, batch: int, steps: int, g: torch.Generator) -> tuple[int, list[float]]:
    """Allocate a cache for L positions, prefill L - steps random tokens, time `steps` cached decoding steps.
    -> (bytes the cache holds, seconds per step). On CUDA the bytes are what torch.cuda.memory_allocated grew by
    when the cache was allocated (the allocator's count, not the tensors' sizes); on the CPU, the tensors' bytes."""
    dev = model_device(model)
    before = allocated_memory(dev)  # on a GPU the allocator's own count is read too (None on a CPU)
    cache = model.new_cache(batch, L)  # what generation allocates: (B, n_kv_head, L, hs) per layer, K and V
    held = allocated_bytes(cache) if before is None else allocated_memory(dev) - before
    ids = torch.randint(0, model.config.vocab_size, (batch, L), generator=g)  # (B, L): timing needs no real text
    model(ids[:, :L - steps], cache=cache, last_only=True)  # prefill: the cache now holds L - steps positions
    times = []
    for i in range(L - steps, L):  # one new token per step, reading every cached key and value
        synchronize(dev)
        t0 = time.perf_counter()
        model(ids[:, i:i + 1], cache=cache, last_only=True)
        synchronize(dev)  # a GPU returns before its kernels finish
        times.append(time.perf_counter() - t0)
    return held, times


def warm_up(model, batch: int, g: torch.Generator) -> None:
    """First calls allocate and pick kernels: keep them out of the timings."""
    decode_times(model, 3, batch, 2, g)


def check_batch(batch) -> int:
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"The batch size must be a positive whole number (got {batch!r}).")
    return batch


def kv_cache_measurement(model: GPT, seq_lens: Sequence[int], batch: int = 1, dtype=None,
                         decode_steps: int = DECODE_STEPS, seed: int = 0) -> dict:
    """For each length L: allocate the model's real KVCache for L positions and `batch` sequences, compare the
    bytes it holds with the calculator's formula, then prefill L - k random tokens and time k cached decoding
    steps (k = min(decode_steps, L - 1)): the median ms per generated token at length ~L (after a warm-up).

    dtype: None (the model's) or "fp32"/"fp16"/"bf16" (must be the model's: the cache holds its dtype).
    -> {n_head, n_kv_head, label, batch, dtype, rows: [{seq_len, allocated_bytes, predicted_bytes,
    ms_per_token, decode_steps}]}."""
    c = model.config
    name = cache_dtype(model, dtype)
    check_batch(batch)
    lens = check_lengths(seq_lens, c.block_size)
    check_memory(kv_cache_bytes(c, batch, lens[-1], name), f"A KV cache for batch {batch} x {lens[-1]:,} tokens")
    g = torch.Generator().manual_seed(seed)
    warm_up(model, batch, g)
    rows = []
    for L in lens:
        k = min(decode_steps, L - 1)
        allocated, times = decode_times(model, L, batch, k, g)
        rows.append({"seq_len": L, "allocated_bytes": allocated,
                     "predicted_bytes": kv_cache_bytes(c, batch, L, name),  # 2·n_layer·B·L·n_kv·hs·bytes
                     "ms_per_token": 1000 * statistics.median(times), "decode_steps": k})
    return {"n_head": c.n_head, "n_kv_head": c.kv_heads, "label": kv_label(c.n_head, c.kv_heads), "batch": batch,
            "dtype": name, "rows": rows}


@torch.inference_mode()
def kv_cache_latency(model, ids: Sequence[int], n_new: int, layers=None,
                     should_stop: Optional[Callable[[], bool]] = None) -> dict:
    """Time greedy decoding token by token with and without the KV cache (batch 1).

    Returns per-step milliseconds for both ways against the sequence length at that step, the total seconds,
    and whether both produced the same tokens (they must: the cache changes the cost, not the result).
    should_stop() is checked after every token (outside the timed step): InterruptedError when it says so.
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
            if should_stop is not None and should_stop():
                raise InterruptedError("The KV-cache measurement was stopped.")
            t = time.perf_counter()  # the check is not part of the next token's time
        out[name] = {"ms": times, "tokens": tokens, "seconds": sum(times) / 1e3}
    lengths = list(range(x.size(1) + 1, x.size(1) + 1 + n_new))  # sequence length once each token is added
    return {"lengths": lengths, "cached_ms": out["cached"]["ms"], "nocache_ms": out["nocache"]["ms"],
            "cached_s": out["cached"]["seconds"], "nocache_s": out["nocache"]["seconds"],
            "same_tokens": out["cached"]["tokens"] == out["nocache"]["tokens"]}
