"""Grouped-query attention on a running model: convert MHA to GQA/MQA, compare them, uptrain the result.

`convert_kv_heads(model, n_kv_head)` builds a NEW model whose key and value heads are mean-pooled into n_kv_head
groups: the initialisation of Ainslie et al. 2023 ("GQA: Training Generalized Multi-Query Transformer Models
from Multi-Head Checkpoints", section 2.1), where each group's key (and value) projection is the mean of the
original heads' projections in that group, biases included. Query head i then reads K/V head i // (n_head /
n_kv_head), exactly as the model's `repeat_interleave` does. The paper follows this with a short "uptraining" (5 %
of the pre-training steps); `uptrain` runs a short version of it with the one training loop.

`compare_kv_heads` measures MHA / GQA / MQA variants side by side with kv_measure.py's cache timing (where
`kv_cache_measurement`, `check_lengths` and `kv_label` live).
"""
from __future__ import annotations

import copy
import statistics
from typing import Callable, Optional, Sequence

import torch

from ..compute import kv_cache_bytes
from ..data import python_docs, split_tokens, tiny_shakespeare
from ..defaults import GQA
from ..evaluate import perplexity
from ..model import GPT
from ..train import TrainConfig, train
from .kv_measure import (
    DECODE_STEPS,
    cache_dtype,
    check_batch,
    check_lengths,
    decode_times,
    kv_label,
    warm_up,
)
from .measure import check_memory

__all__ = ["convert_kv_heads", "compare_kv_heads", "uptrain", "uptrain_corpus"]


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


def compare_kv_heads(model: GPT, tok, kv_heads: Sequence[int], seq_lens: Sequence[int], text: str, batch: int = 1,
                     rounds: int = GQA["rounds"], decode_steps: int = DECODE_STEPS, seed: int = 0,
                     should_stop: Optional[Callable[[], bool]] = None) -> list[dict]:
    """MHA / GQA / MQA built from `model` (convert_kv_heads, no uptraining), measured side by side.

    The variants share every tensor but their q/k/v projections (no copies), and their timings are interleaved:
    `rounds` rounds, each timing every variant at every length, so a machine that gets busier or quieter
    mid-measurement affects all variants alike. Per variant: kv_cache_measurement's fields (ms = median over all
    rounds' steps) plus the perplexity and loss of `text`, the reference passage. [] if should_stop() turned true.
    """
    c = model.config
    name = cache_dtype(model, None)
    check_batch(batch)
    lens = check_lengths(seq_lens, c.block_size)
    heads = list(dict.fromkeys(_check_kv_heads(c, n) for n in kv_heads))
    check_memory(len(heads) * kv_cache_bytes(c, batch, lens[-1], name),
                 f"KV caches for batch {batch} x {lens[-1]:,} tokens")
    variants = {n: model if n == c.kv_heads else convert_kv_heads(model, n, share=True) for n in heads}
    g = torch.Generator().manual_seed(seed)
    for m in variants.values():
        warm_up(m, batch, g)
    times = {(n, L): [] for n in heads for L in lens}
    allocated = {}
    for _ in range(rounds):
        for L in lens:
            for n, m in variants.items():
                if should_stop is not None and should_stop():
                    return []
                allocated[n, L], t = decode_times(m, L, batch, min(decode_steps, L - 1), g)
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


def uptrain(model: GPT, ids: torch.Tensor, steps: int = GQA["uptrain_steps"], batch_size: int = 8, context: int = 128,
            lr: float = 3e-4, seed: int = 1337, callback=None, should_stop=None) -> dict:
    """A short uptraining of a converted model, in place (all weights, as the GQA paper), on token ids `ids`
    (the last 10 % held out). Returns tinygpt.train's result dict."""
    context = min(int(context), model.config.block_size)
    train_ids, val_ids = split_tokens(torch.as_tensor(ids, dtype=torch.long), 0.1)
    every = max(1, steps // 5)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, context=context, lr=lr, warmup=max(1, steps // 10),
                      eval_interval=every, eval_batches=2, seed=seed)
    return train(model, train_ids, val_ids, cfg, callback, should_stop)
