"""Positional encodings under the microscope: pure functions for the teaching plots. The encodings themselves
(the sinusoidal table, RoPE) live in tinygpt/positions.py, where the model uses them.

How similar the sinusoidal rows are by distance; the RoPE attention score of two fixed vectors at every pair of
positions (it depends only on m - n); one rotating 2-D pair; and the long-term decay bound of the RoFormer paper.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..positions import apply_rope, check_base, check_head_dim, rope_frequencies, rotate_half, sinusoidal_encoding


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
    check_head_dim(head_dim)
    check_base(base)
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


__all__ = ["apply_rope", "dot_by_distance", "position_similarity", "rope_decay_bound", "rope_frequencies",
           "rope_pair_rotation", "rope_relative_deviation", "rope_score_matrix", "rotate_half", "sinusoidal_encoding"]
