"""Positional encodings: the sinusoidal table of "Attention Is All You Need" and rotary embeddings (RoPE).

Pure functions for the teaching plots: the sinusoidal table and how similar its rows are by distance; RoPE in
the rotate-half layout of Hugging Face LLaMA, the attention score of two fixed vectors at every pair of positions
(it depends only on m - n), one rotating 2-D pair, and the long-term decay bound of the RoFormer paper.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sinusoidal_encoding(n_positions: int, dim: int) -> torch.Tensor:
    """The sinusoidal table of Vaswani et al. (2017), interleaved as in the paper: (n_positions, dim) float32.

    PE[p, 2i] = sin(p / 10000^(2i/dim)) and PE[p, 2i+1] = cos(p / 10000^(2i/dim)).
    For an odd `dim` the same formula is used with that `dim`: the last column is a sine whose cosine partner
    would fall outside the table, so there are (dim + 1) // 2 sine columns and dim // 2 cosine columns.
    """
    if not isinstance(n_positions, int) or n_positions < 1:
        raise ValueError(f"The number of positions must be a whole number of at least 1, got {n_positions}.")
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"The encoding size must be a whole number of at least 1, got {dim}.")
    # float64 angles: p * freq for large p would lose digits in float32 before the sin/cos.
    p = torch.arange(n_positions, dtype=torch.float64).unsqueeze(1)  # (P, 1)
    two_i = (torch.arange(dim) // 2 * 2).to(torch.float64)  # (dim,) 0, 0, 2, 2, 4, 4, ...
    angle = p / 10000.0 ** (two_i / dim)  # (P, dim)
    pe = torch.where(torch.arange(dim) % 2 == 0, torch.sin(angle), torch.cos(angle))
    return pe.to(torch.float32)


def position_similarity(pe: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """(P, P) matrix comparing every position's encoding row with every other: "cosine" or "dot" product."""
    pe = _check_table(pe)
    if kind == "cosine":
        pe = F.normalize(pe, dim=-1)
    elif kind != "dot":
        raise ValueError(f"The similarity must be 'cosine' or 'dot', got {kind!r}.")
    return pe @ pe.T  # (P, P)


def dot_by_distance(pe: torch.Tensor) -> torch.Tensor:
    """(P,) mean of PE(i) . PE(j) over all pairs with |i - j| = distance, for distance 0 .. P - 1.

    For the sinusoidal table PE(i) . PE(j) = sum_k cos((i - j) w_k) (even dim) depends only on the distance,
    so each mean is that exact value; it starts at dim / 2 and decays (with ripples) as the distance grows.
    """
    gram = position_similarity(pe, kind="dot")  # (P, P)
    return torch.stack([torch.diagonal(gram, d).mean() for d in range(gram.shape[0])])


def rope_frequencies(head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """(head_dim / 2,) float32 rotation speeds theta_i = base^(-2i / head_dim), computed as Hugging Face does."""
    _check_head_dim(head_dim)
    _check_base(base)
    return 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension: the 90-degree turn of every pair."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, positions, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding of x (..., T, head_dim) at integer positions (T,), same shape and dtype as x.

    Rotate-half layout of Hugging Face LLaMA: coordinate i is paired with i + head_dim / 2 and the pair is
    turned by the angle position * theta_i, theta_i = base^(-2i / head_dim):
    x * cos + rotate_half(x) * sin, with cos/sin of cat(freqs, freqs). Angles and the rotation are computed in
    float32 (or float64 for float64 input), so bfloat16/float16 input is rotated accurately and rounded once.
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError("The input must be a tensor of shape (..., T, head_dim).")
    head_dim, T = x.shape[-1], x.shape[-2]
    _check_head_dim(head_dim)
    pos = torch.as_tensor(positions)
    if pos.dtype.is_floating_point or pos.dtype.is_complex or pos.dtype == torch.bool:
        raise ValueError("Positions must be whole numbers (an integer tensor or list).")
    if pos.ndim != 1 or pos.shape[0] != T:
        raise ValueError(f"Positions must be one list of {T} integers, one per token, got shape {tuple(pos.shape)}.")
    freqs = pos.to(device=x.device, dtype=torch.float32).unsqueeze(1) * rope_frequencies(head_dim, base).to(x.device)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, head_dim): pair i and i + head_dim/2 share one angle
    dtype = torch.promote_types(x.dtype, torch.float32)
    xf = x.to(dtype)
    out = xf * emb.cos().to(dtype) + rotate_half(xf) * emb.sin().to(dtype)  # (..., T, head_dim)
    return out.to(x.dtype)


def rope_score_matrix(q: torch.Tensor, k: torch.Tensor, n_positions: int, base: float = 10000.0) -> torch.Tensor:
    """(n, n) float32 matrix S[m, n] = rope(q, m) . rope(k, n) for two fixed vectors q, k of shape (head_dim,).

    With RoPE the score depends only on m - n: every diagonal of S is constant (up to float32 rounding).
    """
    q, k = torch.as_tensor(q, dtype=torch.float32), torch.as_tensor(k, dtype=torch.float32)
    if q.ndim != 1 or q.shape != k.shape:
        raise ValueError("The query and the key must be two vectors of the same length.")
    if not isinstance(n_positions, int) or n_positions < 1:
        raise ValueError(f"The number of positions must be a whole number of at least 1, got {n_positions}.")
    pos = torch.arange(n_positions)
    qr = apply_rope(q.expand(n_positions, -1), pos, base)  # (n, head_dim): q placed at every position
    kr = apply_rope(k.expand(n_positions, -1), pos, base)
    return qr @ kr.T  # (n, n)


def rope_relative_deviation(scores: torch.Tensor) -> float:
    """Largest |S[m, n] - mean of its diagonal m - n| of a square score matrix: 0 for a pure m - n dependence.

    For `rope_score_matrix` it is only float32 rounding: about 1e-5 for unit-normal vectors of size 64 over 64
    positions (|q| |k| is about 64, so 1e-7 relative), growing with the position because p * theta loses digits
    in float32. For absolute encodings added to q and k instead, it is of the order of the scores themselves.
    """
    scores = torch.as_tensor(scores)
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1] or scores.shape[0] < 1:
        raise ValueError("The scores must be a square (n, n) matrix.")
    n = scores.shape[0]
    worst = 0.0
    for offset in range(-(n - 1), n):
        diag = torch.diagonal(scores, offset)  # all pairs with the same n - m
        worst = max(worst, (diag - diag.mean()).abs().max().item())
    return worst


def rope_pair_rotation(x_pair, positions, theta: float) -> torch.Tensor:
    """(len(positions), 2) float32 coordinates of one 2-D pair (x0, x1) turned by the angle p * theta at each p.

    (x0 cos - x1 sin, x0 sin + x1 cos): the same turn `apply_rope` gives coordinates i and i + head_dim / 2
    when theta = base^(-2i / head_dim).
    """
    xy = torch.as_tensor(x_pair, dtype=torch.float32)
    if xy.shape != (2,):
        raise ValueError("The pair must be two numbers (x0, x1).")
    pos = torch.as_tensor(positions)
    if pos.ndim != 1:
        raise ValueError("Positions must be one list of numbers.")
    angle = pos.to(torch.float32) * float(theta)  # (n,)
    c, s = angle.cos(), angle.sin()
    return torch.stack((xy[0] * c - xy[1] * s, xy[0] * s + xy[1] * c), dim=1)


def rope_decay_bound(head_dim: int, max_distance: int, base: float = 10000.0) -> list[float]:
    """RoFormer's long-term decay: the relative upper bound of |q . k| after RoPE, for distance 0 .. max_distance.

    Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position Embedding", section 3.4.3 (Figure 2):
    |sum_i h_i e^{i(m-n)theta_i}| <= (max_i |h_{i+1} - h_i|) * sum_{j=1}^{d/2} |S_j|, with
    S_j = sum_{k=0}^{j-1} e^{i(m-n)theta_k} and theta_k = base^(-2k/d). Returned: (1 / (d/2)) * sum_j |S_j|
    per distance m - n. It equals (d/2 + 1) / 2 at distance 0 and decays (with ripples) as the distance grows.
    """
    _check_head_dim(head_dim)
    _check_base(base)
    if not isinstance(max_distance, int) or max_distance < 0:
        raise ValueError(f"The largest distance must be a whole number of at least 0, got {max_distance}.")
    half = head_dim // 2
    theta = base ** (-2.0 * torch.arange(half, dtype=torch.float64) / head_dim)  # (d/2,)
    dist = torch.arange(max_distance + 1, dtype=torch.float64).unsqueeze(1)  # (D, 1)
    phase = torch.polar(torch.ones_like(dist * theta), dist * theta)  # (D, d/2) e^{i (m-n) theta_k}
    partial = torch.cumsum(phase, dim=1)  # (D, d/2) S_1 .. S_{d/2}
    return (partial.abs().sum(dim=1) / half).tolist()


def _check_table(pe) -> torch.Tensor:
    pe = torch.as_tensor(pe)
    if pe.ndim != 2 or pe.shape[0] < 1 or pe.shape[1] < 1:
        raise ValueError("The encoding table must be a (positions, dim) matrix.")
    return pe.to(torch.promote_types(pe.dtype, torch.float32))


def _check_head_dim(head_dim) -> None:
    if not isinstance(head_dim, int) or head_dim < 2 or head_dim % 2:
        raise ValueError(f"The head size must be an even whole number of at least 2, got {head_dim}.")


def _check_base(base) -> None:
    if not isinstance(base, (int, float)) or not math.isfinite(base) or base <= 1:
        raise ValueError(f"The RoPE base must be a number larger than 1, got {base}.")


__all__ = ["apply_rope", "dot_by_distance", "position_similarity", "rope_decay_bound", "rope_frequencies",
           "rope_pair_rotation", "rope_relative_deviation", "rope_score_matrix", "rotate_half", "sinusoidal_encoding"]
