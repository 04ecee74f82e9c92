"""Measurements for teaching: next-token distributions before/after the sampling knobs, text statistics.

All functions are pure: they take a model/tokens and return numbers (plots are drawn by the UI).
"""
from __future__ import annotations

import math
import time
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .sampling import filter_logits, generate_stream


@torch.inference_mode()
def prompt_logits(model, ids: Sequence[int], layers=None) -> torch.Tensor:
    """Next-token logits (V,) after the prompt (cropped to the last block_size tokens, as GPT-2 does)."""
    block = model.config.block_size
    x = torch.tensor([list(ids)[-block:]], dtype=torch.long)
    return model(x, layers=layers, last_only=True)[0, -1].float()


def entropy(probs: torch.Tensor) -> float:
    p = probs[probs > 0]
    return float(-(p * p.log()).sum())


def distribution_summary(logits: torch.Tensor, temperature: float, top_k: Optional[int], top_p: Optional[float],
                         k: int = 20) -> dict:
    """Compare the raw distribution (T=1, nothing removed) with the one sampled from after the knobs.

    Returns the top-k token ids by raw probability with `before` and `after` probabilities, plus:
    kept (tokens that can still be drawn), kept_mass (raw probability of those tokens), entropies in nats,
    effective choices exp(entropy) (1 = deterministic, V = uniform), and the top-1 probability after.
    """
    logits = logits.float()
    before = F.softmax(logits, -1)
    after = F.softmax(filter_logits(logits, temperature, top_k, top_p), -1)
    top = torch.topk(before, min(k, before.numel())).indices
    kept = after > 0
    h_before, h_after = entropy(before), entropy(after)
    # mass of the raw distribution on the kept tokens: how much of what the model believed survives the filter
    return {
        "ids": top.tolist(),
        "before": before[top].tolist(),
        "after": after[top].tolist(),
        "kept": int(kept.sum()),
        "kept_mass": float(before[kept].sum()),
        "entropy_before": h_before,
        "entropy_after": h_after,
        "choices_before": math.exp(h_before),
        "choices_after": math.exp(h_after),
        "top1_after": float(after.max()),
        "mass_top_k_after": float(after[top].sum()),
        "vocab": int(logits.numel()),
    }


def ngram_stats(ids: Sequence[int], eot: Optional[int] = None) -> dict:
    """Repetition (share of 3-grams seen before), distinct-2, and the length until end-of-text."""
    ids = list(ids)
    length = ids.index(eot) if eot is not None and eot in ids else len(ids)
    tri = [tuple(ids[i:i + 3]) for i in range(len(ids) - 2)]
    bi = [tuple(ids[i:i + 2]) for i in range(len(ids) - 1)]
    seen, repeated = set(), 0
    for g in tri:
        repeated += g in seen
        seen.add(g)
    return {
        "repetition": repeated / len(tri) if tri else 0.0,
        "distinct_2": len(set(bi)) / len(bi) if bi else 0.0,
        "length_to_eot": length,
    }


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
