"""Positional encodings a model can use: the sinusoidal table of "Attention Is All You Need" and rotary
position embeddings (RoPE, Su et al. 2021) in the rotate-half layout of Hugging Face LLaMA.

The model (`GPTConfig.pos_encoding`) and the teaching plots (`tinygpt.interpret.positions`) share these.
"""
from __future__ import annotations

import math

import torch


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
    return sinusoidal_rows(torch.arange(n_positions), dim)


def sinusoidal_rows(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """The rows of the sinusoidal table at integer positions (T,): (T, dim) float32."""
    # float64 angles: p * freq for large p would lose digits in float32 before the sin/cos.
    p = positions.to(torch.float64).unsqueeze(1)  # (T, 1)
    two_i = (torch.arange(dim, device=positions.device) // 2 * 2).to(torch.float64)  # (dim,) 0, 0, 2, 2, 4, ...
    angle = p / 10000.0 ** (two_i / dim)  # (T, dim)
    pe = torch.where(torch.arange(dim, device=positions.device) % 2 == 0, torch.sin(angle), torch.cos(angle))
    return pe.to(torch.float32)


def rope_frequencies(head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """(head_dim / 2,) float32 rotation speeds theta_i = base^(-2i / head_dim), computed as Hugging Face does."""
    check_head_dim(head_dim)
    check_base(base)
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
    check_head_dim(head_dim)
    pos = torch.as_tensor(positions)
    if pos.dtype.is_floating_point or pos.dtype.is_complex or pos.dtype == torch.bool:
        raise ValueError("Positions must be whole numbers (an integer tensor or list).")
    if pos.ndim != 1 or pos.shape[0] != T:
        raise ValueError(f"Positions must be one list of {T} integers, one per token, got shape {tuple(pos.shape)}.")
    cos, sin = rope_cos_sin(pos.to(x.device), head_dim, base)
    return rope_rotate(x, cos, sin)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, base: float = 10000.0):
    """cos and sin of every angle, (T, head_dim) float32 each: pair i and i + head_dim/2 share one angle."""
    freqs = positions.to(torch.float32).unsqueeze(1) * rope_frequencies(head_dim, base).to(positions.device)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, head_dim)
    return emb.cos(), emb.sin()


def rope_rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin for x (..., T, head_dim), in float32 (rounded once to x's dtype)."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    xf = x.to(dtype)
    return (xf * cos.to(dtype) + rotate_half(xf) * sin.to(dtype)).to(x.dtype)  # (..., T, head_dim)



def check_head_dim(head_dim) -> None:
    """ValueError unless head_dim is an even whole number >= 2 (RoPE turns the head's dimensions in pairs)."""
    if not isinstance(head_dim, int) or head_dim < 2 or head_dim % 2:
        raise ValueError(f"The head size must be an even whole number of at least 2, got {head_dim}.")


def check_base(base) -> None:
    """ValueError unless the RoPE base is a finite number > 1 (the frequencies base^(-2i/d) must decrease)."""
    if not isinstance(base, (int, float)) or not math.isfinite(base) or base <= 1:
        raise ValueError(f"The RoPE base must be a number larger than 1, got {base}.")
