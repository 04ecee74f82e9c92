"""Sampling: turning next-token logits into a token, and generating text with a KV cache.

Also what the Sampling tab shows about one step: the next-token distribution before and after the knobs,
its entropy and "effective number of choices".

The knobs, in the order they are applied (as in Hugging Face and the OpenAI playground):
  temperature  logits / T; T -> 0 is argmax (T = 0 means exactly argmax), large T flattens towards uniform
  top_k        keep only the k most likely tokens
  top_p        keep the smallest set of most likely tokens whose probability mass reaches p (nucleus)
"""
from __future__ import annotations

import math
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F


def encode_prompt(tok, text: str, block_size: Optional[int] = None) -> list[int]:
    """Token ids of a prompt: an empty prompt becomes the end-of-text token (GPT-2's start of a document),
    and a long one keeps its last block_size tokens (what the model can see, as GPT-2 does)."""
    ids = tok.encode(text or "")
    if not ids:
        ids = [tok.eot_token if tok.eot_token is not None else 0]
    return ids[-block_size:] if block_size else ids


def check_sampling_args(temperature: float, top_k: Optional[int], top_p: Optional[float]) -> None:
    """Raise ValueError with a plain sentence for values that have no meaning."""
    if temperature is None or not temperature >= 0 or temperature == float("inf"):  # also rejects NaN
        raise ValueError(f"Temperature must be a number >= 0 (got {temperature}).")
    if top_k is not None and (int(top_k) != top_k or top_k < 1):
        raise ValueError(f"top-k must be a whole number >= 1 (got {top_k}).")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top-p must be in (0, 1] (got {top_p}).")


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: Optional[int] = None,
                  top_p: Optional[float] = None) -> torch.Tensor:
    """logits (..., V) -> adjusted logits (..., V) with removed tokens at -inf. Temperature 0 -> argmax only."""
    check_sampling_args(temperature, top_k, top_p)
    logits = logits.float()
    if temperature == 0:  # greedy: keep only the most likely token (first one on ties, like argmax)
        keep = F.one_hot(logits.argmax(-1), logits.size(-1)).bool()
        return logits.masked_fill(~keep, float("-inf"))
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, torch.topk(logits, int(top_k), -1).indices, True)
        logits = logits.masked_fill(~keep, float("-inf"))  # exactly k survive (ties broken as topk does)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        mass_before = probs.cumsum(-1) - probs  # mass of the strictly more likely tokens
        drop_sorted = mass_before >= top_p  # once the kept set reaches p, drop the rest (first always kept)
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: Optional[int] = None,
                     top_p: Optional[float] = None) -> torch.Tensor:
    """The distribution a token is actually drawn from, (..., V), after all the knobs."""
    return F.softmax(filter_logits(logits, temperature, top_k, top_p), dim=-1)


def sample_next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: Optional[int] = None,
                      top_p: Optional[float] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """logits (B, V) -> next token ids (B, 1). Temperature 0 is argmax; otherwise a seeded draw from exactly
    the distribution `next_token_probs` describes.

    The draw is inverse-CDF sampling (one uniform number per row, then a search in the cumulative sum), and
    with top-k only the k survivors are touched: far cheaper than torch.multinomial over 50,257 entries,
    which matters when every generated token pays for it.
    """
    check_sampling_args(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    logits = logits.float() / temperature
    idx = None  # map from candidate position back to token id (None = candidates are the whole vocabulary)
    if top_k is not None and top_k < logits.size(-1):
        logits, idx = torch.topk(logits, int(top_k), dim=-1)  # (B, k), sorted descending
    if top_p is not None and top_p < 1.0:
        if idx is None:
            logits, idx = torch.sort(logits, dim=-1, descending=True)
        probs = F.softmax(logits, dim=-1)
        drop = (probs.cumsum(-1) - probs) >= top_p  # the smallest prefix whose mass reaches p survives
        logits = logits.masked_fill(drop, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    cdf = probs.cumsum(-1)  # (B, n)
    # the uniform numbers come from the caller's generator on its own device (a seeded CPU generator gives the
    # same draws whether the model runs on the CPU or a GPU), then join the probabilities on theirs
    where = generator.device if generator is not None else cdf.device
    u = torch.rand((cdf.size(0), 1), generator=generator, device=where).to(cdf.device) * cdf[:, -1:]
    choice = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.size(-1) - 1)  # (B, 1)
    return choice if idx is None else idx.gather(-1, choice)


@torch.inference_mode()
def generate_stream(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                    top_k: Optional[int] = None, top_p: Optional[float] = None,
                    generator: Optional[torch.Generator] = None, layers: Optional[Sequence[int]] = None,
                    use_cache: bool = True) -> Iterator[torch.Tensor]:
    """Yield the next token ids (B, 1), one step at a time. All B rows are generated in one batch.

    With use_cache the prompt is run once (prefill) and every later step feeds only the new token.
    When the sequence outgrows the context, it is cropped to the last block_size tokens, as GPT-2
    does; positions then shift, so the cache is rebuilt from the cropped window for that step.
    """
    check_sampling_args(temperature, top_k, top_p)
    if idx.dim() != 2 or idx.size(1) == 0:
        raise ValueError("The prompt must contain at least one token.")
    block = model.config.block_size
    layers = model.check_layers(layers)
    seq = idx.to(model.transformer.wte.weight.device)  # the tokens yielded live on the model's device
    cache = None
    step_input = None
    for _ in range(int(max_new_tokens)):
        if not use_cache:
            logits, _ = model(seq[:, -block:], layers=layers, last_only=True)
        elif cache is not None and cache.pos < block:
            logits, _ = model(step_input, layers=layers, cache=cache, last_only=True)
        else:  # first step, or the context is full: (re)fill a cache with the last block tokens
            window = seq[:, -block:]
            cache = model.new_cache(window.size(0), block, len(layers))
            logits, _ = model(window, layers=layers, cache=cache, last_only=True)
        nxt = sample_next_token(logits[:, -1, :], temperature, top_k, top_p, generator)  # (B, 1)
        seq = torch.cat([seq, nxt], dim=1)
        step_input = nxt
        yield nxt


def generate(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: Optional[int] = None, top_p: Optional[float] = None,
             generator: Optional[torch.Generator] = None, layers: Optional[Sequence[int]] = None,
             use_cache: bool = True) -> torch.Tensor:
    """idx (B, T) -> (B, T + max_new_tokens) token ids."""
    new = list(generate_stream(model, idx, max_new_tokens, temperature, top_k, top_p, generator, layers,
                               use_cache))
    return torch.cat([idx] + [t.to(idx.device) for t in new], dim=1) if new else idx


# ---- one step under the microscope (the Sampling tab's distribution and Explain) -------------------------
@torch.inference_mode()
def next_token_logits(model, ids: Sequence[int], layers=None) -> torch.Tensor:
    """Next-token logits (V,) float32 after the prompt ids (cropped to the last block_size tokens)."""
    x = torch.tensor([list(ids)[-model.config.block_size:]], dtype=torch.long)
    logits, _ = model(x, layers=layers, last_only=True)
    return logits[0, -1].float().cpu()


def entropy(probs: torch.Tensor) -> float:
    """Shannon entropy in nats of a distribution (V,); exp(entropy) is the effective number of choices."""
    p = probs[probs > 0]
    return float(-(p * p.log()).sum())


DRAWABLE_MIN_P = 1e-6  # "can realistically be drawn": probability above one in a million


def distribution_summary(logits: torch.Tensor, temperature: float, top_k: Optional[int], top_p: Optional[float],
                         k: int = 20) -> dict:
    """Compare the raw distribution (T=1, nothing removed) with the one sampled from after the knobs.

    Returns the top-k token ids by raw probability with `before` and `after` probabilities, plus:
    kept (tokens the knobs leave with probability > 0 in float32: at low T the others underflow to exactly 0),
    drawable (tokens with probability above DRAWABLE_MIN_P after the knobs: those that can realistically be
    drawn), kept_mass (raw probability of the kept tokens), entropies in nats, effective choices exp(entropy)
    (1 = deterministic, V = uniform), and the top-1 probability after.
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
        "drawable": int((after > DRAWABLE_MIN_P).sum()),
        "kept_mass": float(before[kept].sum()),
        "entropy_before": h_before,
        "entropy_after": h_after,
        "choices_before": math.exp(h_before),
        "choices_after": math.exp(h_after),
        "top1_after": float(after.max()),
        "mass_top_k_after": float(after[top].sum()),
        "vocab": int(logits.numel()),
    }
