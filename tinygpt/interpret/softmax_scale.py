"""Why attention divides the scores by sqrt(d_k): the experiment of Vaswani et al. (2017) on random data.

With q and k of independent unit-variance entries, q . k has variance d_k, so the raw scores spread out as
sqrt(d_k) grows: the softmax turns one-hot (max weight -> 1, entropy -> 0) and its Jacobian vanishes, so almost
no gradient reaches q and k. Dividing by sqrt(d_k) keeps the scores at unit spread for every d_k.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def softmax_jacobian_norm(probs: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of the softmax Jacobian diag(p) - p p^T for each distribution p on the last axis: (...,).

    It is 0 for a one-hot p (a saturated softmax passes no gradient) and largest for spread-out weights.
    """
    p = torch.as_tensor(probs)
    if p.ndim < 1 or p.shape[-1] < 1:
        raise ValueError("The probabilities must have at least one value on the last axis.")
    p = p.to(torch.promote_types(p.dtype, torch.float32))
    jac = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)  # (..., n, n) d softmax_i / d score_j
    return torch.linalg.matrix_norm(jac)  # (...,)


def _stats(scores: torch.Tensor) -> dict:
    """Numbers for one (n_queries, n_keys) score matrix, each a mean over the queries."""
    p = torch.softmax(scores, dim=-1)  # (Q, K)
    entropy = -torch.special.xlogy(p, p).sum(dim=-1)  # (Q,) nats; 0 log 0 = 0 for exactly one-hot rows
    return {
        "score_std": scores.std().item(),
        "max_weight": p.max(dim=-1).values.mean().item(),
        "entropy": entropy.mean().item(),
        "entropy_ratio": entropy.mean().item() / math.log(scores.shape[-1]),
        "jacobian_norm": softmax_jacobian_norm(p).mean().item(),
    }


def scale_experiment(d_values: Sequence[int] = (16, 32, 64, 128, 256, 512, 1024), n_keys: int = 64,
                     n_queries: int = 256, seed: int = 0) -> dict:
    """Score spread and softmax saturation with and without the 1/sqrt(d_k) scale, for each key size d_k.

    For each d_k: n_queries queries against n_keys keys, all entries standard normal (one seeded generator,
    drawn in the order of d_values). Returns plain Python numbers:
    {"d_values": [...], "n_keys": int, "max_entropy": ln(n_keys),
     "unscaled": {name: [one float per d_k]}, "scaled": {name: [...]}} with names
    score_std (std of the scores: about sqrt(d_k) unscaled, about 1 scaled), max_weight (mean largest softmax
    weight), entropy (mean, nats), entropy_ratio (entropy / ln(n_keys), 1 = uniform) and jacobian_norm (mean
    Frobenius norm of the softmax Jacobian: the gradient that still flows back to the scores).
    """
    d_values = list(d_values)
    if not d_values or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in d_values):
        raise ValueError("The key sizes must be a non-empty list of whole numbers of at least 1.")
    if not isinstance(n_keys, int) or n_keys < 2:
        raise ValueError(f"The number of keys must be a whole number of at least 2, got {n_keys}.")
    if not isinstance(n_queries, int) or n_queries < 1:
        raise ValueError(f"The number of queries must be a whole number of at least 1, got {n_queries}.")
    gen = torch.Generator().manual_seed(int(seed))
    names = ("score_std", "max_weight", "entropy", "entropy_ratio", "jacobian_norm")
    result = {"d_values": d_values, "n_keys": n_keys, "max_entropy": math.log(n_keys),
              "unscaled": {name: [] for name in names}, "scaled": {name: [] for name in names}}
    for d in d_values:
        q = torch.randn(n_queries, d, generator=gen)  # (Q, d)
        k = torch.randn(n_keys, d, generator=gen)  # (K, d)
        scores = q @ k.T  # (Q, K), each entry has variance d
        for label, s in (("unscaled", scores), ("scaled", scores / math.sqrt(d))):
            for name, value in _stats(s).items():
                result[label][name].append(value)
    return result


__all__ = ["scale_experiment", "softmax_jacobian_norm"]
