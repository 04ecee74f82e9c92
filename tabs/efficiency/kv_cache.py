"""(a) The KV cache, measured: greedy decoding timed with and without it at growing lengths, and the bytes the
cache allocates next to the calculator's formula."""
from __future__ import annotations

from tinygpt.compute import kv_cache_bytes
from tinygpt.defaults import KV_CACHE
from tinygpt.efficiency import kv_cache_latency
from tinygpt.dtypes import dtype_name
from tinygpt.sampling import encode_prompt

from ..kit.common import check_prompt, clamp_int, get_model, human_bytes, new_figure, user_errors

DEFAULT_PROMPT = KV_CACHE["prompt"]


@user_errors
def on_kv_cache(models, name, fast, prompt, n_new):
    """Time greedy decoding with and without the KV cache: (figure, explanation with measured cache bytes)."""
    notes: list = []
    n = clamp_int(n_new, 1, 256, "Tokens to time", notes)
    prompt = check_prompt(prompt, [])
    model, tok = get_model(models, name, fast)
    r = kv_cache_latency(model, encode_prompt(tok, prompt), n)
    c = model.config
    dtype = dtype_name(model.transformer.wte.weight.dtype, "fp32")
    cache = model.new_cache(1, c.block_size)  # what generation allocates: every position of the context
    allocated = sum(t.nbytes for t in cache.k + cache.v)
    predicted = kv_cache_bytes(c, 1, c.block_size, dtype)
    del cache
    fig = new_figure(8, 3.4)
    ax = fig.add_subplot(111)
    ax.plot(r["lengths"], r["nocache_ms"], label="no cache: recompute the whole sequence", color="#e8590c")
    ax.plot(r["lengths"], r["cached_ms"], label="KV cache: feed only the new token", color="#1c7ed6")
    ax.set(xlabel="sequence length (tokens)", ylabel="ms per generated token",
           title=f"{n} greedy tokens: {r['nocache_s']:.2f} s without vs {r['cached_s']:.2f} s with the cache")
    ax.grid(alpha=.3)
    ax.legend(fontsize=9)
    speed = r["nocache_s"] / max(r["cached_s"], 1e-9)
    capped = f" ({' '.join(notes)})" if notes else ""
    per_token = 2 * c.n_layer * c.kv_heads * c.head_dim
    md = (f"**{speed:.1f}× faster with the KV cache** for these {n} tokens{capped}. Without a cache every"
          f" step runs all {c.n_layer} blocks over the whole sequence again, so its cost grows with the length; with"
          f" the cache each step computes keys and values for the new token only and reuses the stored ones"
          f" ({per_token:,} numbers per token), so its cost stays nearly flat — it is"
          f" dominated by reading the weights once per token (its first step also reads the prompt: the prefill)."
          f" Both ways produced {'the same' if r['same_tokens'] else 'DIFFERENT'} tokens.\n\n"
          f"| KV cache for the {c.block_size:,}-token context ({dtype}) | bytes |\n|---|---|\n"
          f"| allocated (sum of the cache tensors' sizes) | {allocated:,} ({human_bytes(allocated)}) |\n"
          f"| calculator: 2 · {c.n_layer} layers · 1 · {c.block_size} tokens · {c.kv_heads} KV heads · "
          f"{c.head_dim} dims · {model.transformer.wte.weight.element_size()} B | {predicted:,} "
          f"({'equal' if allocated == predicted else 'DIFFERENT'}) |")
    return fig, md
