"""How good is a model on a text: per-token log-probabilities, loss, perplexity, accuracy, and statistics of
generated text (repetition, distinct-2).

`target_logprobs` is the one primitive: log p(target) from logits. `token_logprobs` slices a token sequence into
context-sized windows and scores every predicted token once with it: held-out loss during training, perplexity of
a pruned model, and the fine-tune tab's "tokens that rose" table all call it, so they always agree.
`masked_logprobs` scores a padded batch (with gradients, for DPO and PPO): which tokens count is a mask.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F


@dataclass
class TokenScores:
    """One entry per predicted token, in text order."""

    logprobs: torch.Tensor  # (N,) float32: log p(target | the previous tokens of its window), nats
    correct: torch.Tensor  # (N,) bool: the target was the model's most likely token
    targets: torch.Tensor  # (N,) long: the predicted token ids
    positions: torch.Tensor  # (N,) long: index of each target in the scored sequence

    @property
    def loss(self) -> float:
        """Mean negative log-likelihood in nats per token (the cross-entropy)."""
        return float(-self.logprobs.mean())

    @property
    def accuracy(self) -> float:
        return float(self.correct.float().mean())

    @property
    def perplexity(self) -> float:
        """exp(loss): roughly, how many equally likely tokens the model is choosing between at each step."""
        return math.exp(min(self.loss, 50.0))

    def summary(self) -> dict:
        return {"loss": self.loss, "accuracy": self.accuracy, "perplexity": self.perplexity,
                "tokens": int(self.logprobs.numel())}


def window_starts(n_tokens: int, context: int, max_windows: Optional[int] = None) -> list[int]:
    """Start of each window of `context` inputs (+1 target) over a sequence of n_tokens.

    Windows are consecutive and non-overlapping; a shorter last window covers the tail so every token after
    the first is predicted exactly once. With max_windows, only that many full windows are kept, evenly
    spaced (a fixed subset: the same data always gives the same number, e.g. during training)."""
    if context < 1:
        raise ValueError(f"The context must be at least 1 token (got {context}).")
    if n_tokens < 2:
        raise ValueError(f"Need at least 2 tokens to score a prediction (have {n_tokens}).")
    starts = list(range(0, n_tokens - 1, context))
    if max_windows is not None:
        full = [s for s in starts if s + context + 1 <= n_tokens] or starts[:1]
        if len(full) > max_windows:
            full = [full[round(j * (len(full) - 1) / (max_windows - 1))] for j in range(max_windows)] \
                if max_windows > 1 else full[:1]
        starts = full
    return starts


def target_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits (..., V), targets (...) long -> log p(target) (...) in float32 nats: log-softmax, then the target's
    entry. The one place a log-probability is computed from logits."""
    return F.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def masked_logprobs(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of the tokens of a padded batch, where mask says which tokens count.

    ids (B, T) long, mask (B, T) bool -> (B, T - 1) float32: entry [b, t] = log p(ids[b, t+1] | ids[b, :t+1])
    where mask[b, t+1], else 0. Keeps gradients (training losses such as DPO's sum it); wrap the call in
    torch.no_grad() to only score. Padding belongs at the end of a row: a causal model never looks ahead."""
    if ids.shape != mask.shape or ids.dim() != 2:
        raise ValueError(f"ids and mask must both be (B, T); got {tuple(ids.shape)} and {tuple(mask.shape)}.")
    logits, _ = model(ids[:, :-1])  # (B, T-1, V): position t predicts token t+1, on the model's device
    ids, mask = ids.to(logits.device), mask.to(logits.device)
    return target_logprobs(logits, ids[:, 1:]).masked_fill(~mask[:, 1:].bool(), 0.0)


@torch.no_grad()
def token_logprobs(model, ids, context: Optional[int] = None, layers: Optional[Sequence[int]] = None,
                   max_windows: Optional[int] = None, batch_size: int = 16) -> TokenScores:
    """Score every next token of `ids` (a 1-D tensor or list) with windows of `context` tokens.

    context: default min(block_size, 128). layers: run only these blocks (pruning). Windows of equal length
    are batched; the model is put in eval mode for the call and restored afterwards."""
    data = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
    context = int(context or min(model.config.block_size, 128))
    if context > model.config.block_size:
        raise ValueError(f"Context {context} is longer than the model's block size {model.config.block_size}.")
    starts = window_starts(len(data), context, max_windows)
    was_training = model.training
    model.eval()
    parts = {"logprobs": [], "correct": [], "targets": [], "positions": []}
    try:
        by_len: dict[int, list[int]] = {}
        for s in starts:  # group windows by length so each group is one (B, T) batch
            by_len.setdefault(min(context, len(data) - 1 - s), []).append(s)
        scored = []
        for T, group in by_len.items():
            for b in range(0, len(group), batch_size):
                ss = group[b:b + batch_size]
                x = torch.stack([data[s:s + T] for s in ss])  # (B, T)
                y = torch.stack([data[s + 1:s + 1 + T] for s in ss])  # (B, T)
                logits, _ = model(x, layers=layers)  # (B, T, V), on the model's device
                yd = y.to(logits.device)
                lp = target_logprobs(logits, yd).cpu()  # (B, T); the scores are kept on the CPU
                hit = (logits.argmax(-1) == yd).cpu()  # (B, T)
                for k, s in enumerate(ss):
                    scored.append((s, lp[k], hit[k], y[k], torch.arange(s + 1, s + 1 + T)))
    finally:
        model.train(was_training)
    scored.sort(key=lambda r: r[0])  # back to text order
    for _, lp, hit, y, pos in scored:
        parts["logprobs"].append(lp)
        parts["correct"].append(hit)
        parts["targets"].append(y)
        parts["positions"].append(pos)
    return TokenScores(**{k: torch.cat(v) for k, v in parts.items()})


def evaluate(model, data, context: int, max_windows: Optional[int] = None, layers=None) -> dict:
    """Mean next-token loss (nats), accuracy and perplexity of `data` (token ids) -> {loss, accuracy,
    perplexity, tokens}. With max_windows: a fixed, evenly spaced subset of full windows (fast, for training)."""
    return token_logprobs(model, data, context, layers, max_windows).summary()


def perplexity(model, tok, text: str, layers: Optional[Sequence[int]] = None, context: Optional[int] = None) -> dict:
    """Loss and perplexity of a passage: every token after the first is predicted once, from the previous tokens
    of its window of `context` = min(block_size, 128) tokens. -> {loss, perplexity, accuracy, tokens, context}."""
    ids = tok.encode(text or "")
    if len(ids) < 2:
        raise ValueError("The reference passage needs at least two tokens.")
    context = int(context or min(model.config.block_size, 128))
    return {**token_logprobs(model, ids, context, layers).summary(), "context": context}


def ngram_stats(ids: Sequence[int], eot: Optional[int] = None) -> dict:
    """Generated text's repetition (share of 3-grams seen before), distinct-2, and the length until end-of-text."""
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
