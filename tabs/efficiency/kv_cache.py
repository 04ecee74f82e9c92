"""(a) The KV cache, measured: greedy decoding timed with and without it at growing lengths, and the bytes the
cache allocates next to the calculator's formula. The timing runs through the room's hub (shared.py: the
"measure" lane, budgeted by tinygpt.budget.estimate_kv_cache, shared by everyone asking the same)."""
from __future__ import annotations

import gradio as gr

from tinygpt.budget.estimates import estimate_kv_cache
from tinygpt.compute import kv_cache_bytes
from tinygpt.defaults import KV_CACHE
from tinygpt.efficiency import kv_cache_latency
from tinygpt.dtypes import dtype_name
from tinygpt.sampling import encode_prompt

from ..kit.common import check_prompt, clamp_int, get_model, human_bytes, new_figure, user_errors
from ..kit.runs import run_key
from ..kit.sessions import SessionStore
from ..kit.stream import stream
from .shared import LANE, STOP, ticking

DEFAULT_PROMPT = KV_CACHE["prompt"]


@user_errors
def on_kv_cache(models, sessions: SessionStore, name, fast, prompt, n_new, request: gr.Request = None):
    """Stream (figure, explanation with measured cache bytes): greedy decoding timed with and without the KV
    cache, in the room's "measure" lane (its place in the queue shown while it waits; Stop ends it)."""
    notes: list = []
    n = clamp_int(n_new, 1, 256, "Tokens to time", notes)
    prompt = check_prompt(prompt, [])
    model, tok = get_model(models, name, fast)
    ids = encode_prompt(tok, prompt)
    c = model.config
    dtype = dtype_name(model.transformer.wte.weight.dtype, "fp32")
    estimate = estimate_kv_cache(c, len(ids), n, dtype)
    stop = STOP.fresh(sessions, request)

    def job(callback, should_stop):
        try:
            return kv_cache_latency(model, ids, n, should_stop=ticking(callback, should_stop))
        except InterruptedError:
            return None

    def view(clock):
        return gr.skip(), f"*Timing {n} greedy tokens with and without the cache… {clock.elapsed:.0f} s*"

    results = yield from stream({"kv": job}, stop, lambda name, ev: None, view, sessions=sessions, request=request,
                                key=run_key("kv_cache", {"prompt": prompt, "n_new": n, "fast": bool(fast)}, model),
                                estimate=estimate, label="KV-cache timing", lane=LANE,
                                waiting=lambda text: (gr.skip(), f"*{text}*"))
    r = (results or {}).get("kv")
    if r is None:
        yield gr.skip(), "**Stopped.** Press **Measure** to time it again."
        return
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
    yield fig, md
