"""Grouped-query attention on a running model: convert MHA to GQA/MQA, measure the KV cache, its speed and its cost.

`convert_kv_heads(model, n_kv_head)` builds a NEW model whose key and value heads are mean-pooled into n_kv_head
groups: the initialisation of Ainslie et al. 2023 ("GQA: Training Generalized Multi-Query Transformer Models
from Multi-Head Checkpoints", section 2.1), where each group's key (and value) projection is the mean of the
original heads' projections in that group, biases included. Query head i then reads K/V head i // (n_head /
n_kv_head), exactly as the model's `repeat_interleave` does. The paper follows this with a short "uptraining" (5 %
of the pre-training steps); `uptrain` runs a short version of it with the one training loop.

`kv_cache_measurement` allocates the model's real KVCache for each sequence length and reports the bytes it holds
next to the calculator's formula (tinygpt.compute.kv_cache_bytes; they are equal by construction, and a test says
so), with the milliseconds per generated token of cached decoding at that length.
"""
from __future__ import annotations

import copy
import statistics
import time
from typing import Callable, Optional, Sequence

import torch

from ..compute import kv_cache_bytes
from ..data import python_docs, split_tokens, tiny_shakespeare
from ..evaluate import perplexity
from ..model import GPT
from ..train import TrainConfig, train
from .measure import check_memory

DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
DECODE_STEPS = 8  # cached decoding steps timed at every length (the median is reported)


def _check_kv_heads(config, n_kv_head) -> int:
    if not isinstance(n_kv_head, int) or isinstance(n_kv_head, bool) or n_kv_head < 1:
        raise ValueError(f"The number of KV heads must be a positive whole number (got {n_kv_head!r}).")
    n_head, old = config.n_head, config.kv_heads
    if n_head % n_kv_head:
        divisors = ", ".join(str(k) for k in range(1, n_head + 1) if n_head % k == 0)
        raise ValueError(f"{n_kv_head} KV heads do not divide the {n_head} query heads evenly: choose one of "
                         f"{divisors}.")
    if old % n_kv_head and n_kv_head % old:
        raise ValueError(f"This model already groups its {n_head} query heads into {old} KV heads; {n_kv_head} groups "
                         f"do not nest with those (choose a divisor or a multiple of {old}).")
    return n_kv_head


def kv_label(n_head: int, n_kv_head: int) -> str:
    """'MHA' (one K/V head per query head), 'MQA' (one K/V head for all), else 'GQA-<groups>'."""
    if n_kv_head == n_head:
        return "MHA"
    return "MQA" if n_kv_head == 1 else f"GQA-{n_kv_head}"


def _regroup(t: torch.Tensor, A: int, old: int, new: int, hs: int) -> torch.Tensor:
    """c_attn's weight (A + 2*old*hs, C) or bias (A + 2*old*hs,) -> the same with `new` K and V heads.

    Rows are [q heads | k heads | v heads], each head hs rows. Fewer heads: the mean of each group of old // new
    consecutive heads (consecutive because query head i reads K/V head i // (n_head / n_kv)). More heads (only
    from an already grouped model): each head is repeated new // old times, which is exact."""
    q, k, v = t.split([A, old * hs, old * hs], dim=0)
    rest = t.shape[1:]  # (C,) for the weight, () for the bias

    def regroup(x):
        x = x.reshape(old, hs, *rest)  # (old, hs, C)
        if new <= old:
            # float32 mean, then back: a bf16 sum of several heads would round
            x = x.float().reshape(new, old // new, hs, *rest).mean(dim=1).to(t.dtype)  # (new, hs, C)
        else:
            x = x.repeat_interleave(new // old, dim=0)  # (new, hs, C)
        return x.reshape(new * hs, *rest)
    return torch.cat([q.clone(), regroup(k), regroup(v)], dim=0)


def convert_kv_heads(model: GPT, n_kv_head: int, share: bool = False) -> GPT:
    """A new model with `n_kv_head` key/value heads, each the mean of its group's heads (GQA's uptraining init).

    n_kv_head == the model's own number returns an identical copy (same logits). The base model is never modified.
    ValueError when n_kv_head does not divide n_head. share=False (default): every tensor of the result is its own,
    so it can be trained. share=True: all but the q/k/v projections are the base's own tensors (no copy: for
    measuring several groupings side by side; never train such a model)."""
    c = model.config
    new = _check_kv_heads(c, n_kv_head)
    old, A, hs = c.kv_heads, c.attn_dim, c.head_dim
    config = c.replace(n_kv_head=None if new == c.n_head else new)
    with torch.device("meta"):
        out = GPT(config)  # no memory, no random init: every tensor is assigned below
    state = {}
    for key, t in model.state_dict().items():
        t = t.detach()
        if key.endswith("attn.c_attn.weight") or key.endswith("attn.c_attn.bias"):
            state[key] = _regroup(t, A, old, new, hs)
        else:
            state[key] = t if share else t.clone()
    out.load_state_dict(state, assign=True)
    if config.tie_weights:
        out.lm_head.weight = out.transformer.wte.weight  # one matrix, two uses, as in the base
    for p in out.parameters():
        p.requires_grad_(False)  # like a loaded model; tinygpt.train switches on what it trains
    out.info = copy.copy(getattr(model, "info", None))
    return out.eval()


def _dtype_name(model, dtype) -> str:
    have = DTYPE_NAMES.get(model.transformer.wte.weight.dtype)
    if have is None:
        raise ValueError(f"The KV cache is measured for fp32, fp16 or bf16 models (this one is "
                         f"{model.transformer.wte.weight.dtype}).")
    if dtype is None:
        return have
    want = DTYPE_NAMES.get(dtype, dtype)
    if want not in DTYPE_NAMES.values():
        raise ValueError(f"dtype must be one of fp32, fp16, bf16 (got {dtype!r}).")
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


def _allocated(cache) -> int:
    return sum(t.nbytes for t in cache.k + cache.v)


@torch.inference_mode()
def _decode_times(model, L: int, batch: int, steps: int, g: torch.Generator) -> tuple[int, list[float]]:
    """Allocate a cache for L positions, prefill L - steps random tokens, time `steps` cached decoding steps.
    -> (bytes the cache holds, seconds per step)."""
    cache = model.new_cache(batch, L)  # what generation allocates: (B, n_kv_head, L, hs) per layer, K and V
    ids = torch.randint(0, model.config.vocab_size, (batch, L), generator=g)  # (B, L): timing needs no real text
    model(ids[:, :L - steps], cache=cache, last_only=True)  # prefill: the cache now holds L - steps positions
    times = []
    for i in range(L - steps, L):  # one new token per step, reading every cached key and value
        t0 = time.perf_counter()
        model(ids[:, i:i + 1], cache=cache, last_only=True)
        times.append(time.perf_counter() - t0)
    return _allocated(cache), times


def _warm_up(model, batch: int, g: torch.Generator) -> None:
    """First calls allocate and pick kernels: keep them out of the timings."""
    _decode_times(model, 3, batch, 2, g)


def _check_batch(batch) -> int:
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
    name = _dtype_name(model, dtype)
    _check_batch(batch)
    lens = check_lengths(seq_lens, c.block_size)
    check_memory(kv_cache_bytes(c, batch, lens[-1], name), f"A KV cache for batch {batch} x {lens[-1]:,} tokens")
    g = torch.Generator().manual_seed(seed)
    _warm_up(model, batch, g)
    rows = []
    for L in lens:
        k = min(decode_steps, L - 1)
        allocated, times = _decode_times(model, L, batch, k, g)
        rows.append({"seq_len": L, "allocated_bytes": allocated,
                     "predicted_bytes": kv_cache_bytes(c, batch, L, name),  # 2·n_layer·B·L·n_kv·hs·bytes
                     "ms_per_token": 1000 * statistics.median(times), "decode_steps": k})
    return {"n_head": c.n_head, "n_kv_head": c.kv_heads, "label": kv_label(c.n_head, c.kv_heads), "batch": batch,
            "dtype": name, "rows": rows}


def compare_kv_heads(model: GPT, tok, kv_heads: Sequence[int], seq_lens: Sequence[int], text: str, batch: int = 1,
                     rounds: int = 3, decode_steps: int = DECODE_STEPS, seed: int = 0,
                     should_stop: Optional[Callable[[], bool]] = None) -> list[dict]:
    """MHA / GQA / MQA built from `model` (convert_kv_heads, no uptraining), measured side by side.

    The variants share every tensor but their q/k/v projections (no copies), and their timings are interleaved:
    `rounds` rounds, each timing every variant at every length, so a machine that gets busier or quieter
    mid-measurement affects all variants alike. Per variant: kv_cache_measurement's fields (ms = median over all
    rounds' steps) plus the perplexity and loss of `text`, the reference passage. [] if should_stop() turned true.
    """
    c = model.config
    name = _dtype_name(model, None)
    _check_batch(batch)
    lens = check_lengths(seq_lens, c.block_size)
    heads = list(dict.fromkeys(_check_kv_heads(c, n) for n in kv_heads))
    check_memory(len(heads) * kv_cache_bytes(c, batch, lens[-1], name),
                 f"KV caches for batch {batch} x {lens[-1]:,} tokens")
    variants = {n: model if n == c.kv_heads else convert_kv_heads(model, n, share=True) for n in heads}
    g = torch.Generator().manual_seed(seed)
    for m in variants.values():
        _warm_up(m, batch, g)
    times = {(n, L): [] for n in heads for L in lens}
    allocated = {}
    for _ in range(rounds):
        for L in lens:
            for n, m in variants.items():
                if should_stop is not None and should_stop():
                    return []
                allocated[n, L], t = _decode_times(m, L, batch, min(decode_steps, L - 1), g)
                times[n, L] += t
    out = []
    for n, m in variants.items():
        rows = [{"seq_len": L, "allocated_bytes": allocated[n, L],
                 "predicted_bytes": kv_cache_bytes(c, batch, L, name, n),
                 "ms_per_token": 1000 * statistics.median(times[n, L]), "decode_steps": min(decode_steps, L - 1)}
                for L in lens]
        ppl = perplexity(m, tok, text)
        out.append({"n_head": c.n_head, "n_kv_head": n, "label": kv_label(c.n_head, n), "batch": batch, "dtype": name,
                    "rows": rows, "perplexity": ppl["perplexity"], "loss": ppl["loss"], "tokens": ppl["tokens"]})
    return out


def uptrain_corpus(model_name: str) -> tuple[str, str, str]:
    """(corpus name, text, note) to uptrain on: Tiny Shakespeare for a Shakespeare model (cached or downloaded
    once), the built-in Python docs otherwise, or when Tiny Shakespeare cannot be fetched (said in the note)."""
    if "shakespeare" in str(model_name).lower():
        try:
            return "Tiny Shakespeare", tiny_shakespeare(), ""
        except ConnectionError as e:
            note = f"{e} Uptraining on the built-in Python docs instead: the model is no longer trained on its " \
                   f"own kind of text, so the gap may not close."
            return "Python docs", python_docs(), note
    return "Python docs", python_docs(), ""


def uptrain(model: GPT, ids: torch.Tensor, steps: int = 30, batch_size: int = 8, context: int = 128,
            lr: float = 3e-4, seed: int = 1337, callback=None, should_stop=None) -> dict:
    """A short uptraining of a converted model, in place (all weights, as the GQA paper), on token ids `ids`
    (the last 10 % held out). Returns tinygpt.train's result dict."""
    context = min(int(context), model.config.block_size)
    train_ids, val_ids = split_tokens(torch.as_tensor(ids, dtype=torch.long), 0.1)
    every = max(1, steps // 5)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, context=context, lr=lr, warmup=max(1, steps // 10),
                      eval_interval=every, eval_batches=2, seed=seed)
    return train(model, train_ids, val_ids, cfg, callback, should_stop)
