"""FlashAttention-2's tiled forward pass in plain PyTorch, a step-by-step trace of it, and the standard baseline.

`flash_attention` follows Dao 2023 ("FlashAttention-2", Algorithm 1, forward pass): the queries are cut into
blocks of `block_q` rows (outer loop) and the keys/values into blocks of `block_k` rows (inner loop). For each
query block we keep a running row maximum m, a running softmax denominator l and an *un-normalised* output
accumulator O, rescale them by exp(m_old - m_new) whenever the maximum grows, and divide by l once at the end.
Only block_q x block_k tiles of the score matrix ever exist, never the full Tq x Tk matrix, so the extra memory
is O(T * block) instead of O(T^2). On a GPU the point is that tiles live in fast on-chip SRAM; here, in a
Python loop on the CPU, the point is to *see* the algorithm and measure the memory it saves (it is slower).

`standard_attention` is the textbook softmax(Q K^T * scale) V that materialises the whole matrix (the baseline),
`flash_attention_trace` records every tile for a teaching step-through, and `attention_memory_prediction` gives
the bytes each approach needs (the "T^2 prediction" shown next to measurements).

Causal masking follows GPT: query t may attend to keys 0..t. It needs Tq == Tk (no KV-cache offset here).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

TRACE_MAX_TOKENS = 1024  # the trace keeps every tile as Python lists: meant for small teaching examples


def _check_block(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive whole number (got {value!r}).")
    return value


def _check_qkv(q, k, v, causal: bool, scale):
    """Validate shapes; return the softmax scale (default 1/sqrt(head_dim), as in "Attention is all you need")."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            raise ValueError(f"{name} must be a 4-D tensor shaped (batch, heads, tokens, head_dim).")
        if not t.is_floating_point():
            raise ValueError(f"{name} must hold floating-point numbers (got {t.dtype}).")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape (got {tuple(k.shape)} and {tuple(v.shape)}).")
    if q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} must agree in batch, heads and head_dim.")
    if q.shape[2] < 1 or k.shape[2] < 1:
        raise ValueError("q and k must hold at least one token each.")
    if causal and q.shape[2] != k.shape[2]:
        raise ValueError(f"causal attention needs as many queries as keys (got {q.shape[2]} and {k.shape[2]}).")
    if scale is None:
        return 1.0 / math.sqrt(q.shape[-1])
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ValueError(f"scale must be a positive number (got {scale!r}).")
    return float(scale)


def standard_attention(q, k, v, causal: bool = True, scale=None):
    """softmax(Q K^T * scale) V with the whole (B, H, Tq, Tk) score and probability matrices in memory."""
    scale = _check_qkv(q, k, v, causal, scale)
    Tq, Tk = q.shape[2], k.shape[2]
    scores = (q * scale) @ k.transpose(-2, -1)  # (B, H, Tq, Tk): the T^2 matrix the tiled version avoids
    if causal:  # the (Tq, Tk) mask (True above the diagonal) is a temporary, freed before the softmax
        scores.masked_fill_(torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    probs = torch.softmax(scores, dim=-1)  # (B, H, Tq, Tk): a second T^2 matrix alive next to `scores`
    return probs @ v  # (B, H, Tq, hs)


def _flash_forward(q, k, v, causal: bool, block_q: int, block_k: int, scale: float, steps=None):
    """The FA-2 forward loop. If `steps` is a list (B = H = 1 only), append one dict per tile and per block end."""
    B, H, Tq, _ = q.shape  # (B, H, Tq, hs)
    Tk = k.shape[2]
    # line 2: the output O, written one block of rows at a time.
    out = torch.empty(B, H, Tq, v.shape[-1], dtype=q.dtype, device=q.device)  # (B, H, Tq, hs)
    # Algorithm 1 line 1: Tr = ceil(Tq / Br) query blocks, Tc = ceil(Tk / Bc) key/value blocks; the last block
    # of each may be shorter, so any T works.
    for r0 in range(0, Tq, block_q):  # line 3: for 1 <= i <= Tr (outer loop over query blocks)
        r1 = min(r0 + block_q, Tq)
        # line 4: load Q_i. The scale is folded into Q once per block instead of into every tile.
        Qi = q[:, :, r0:r1] * scale  # (B, H, br, hs)
        # line 5: O_i = 0, l_i = 0, m_i = -inf. Kept in float32 like the kernel's on-chip registers.
        O = torch.zeros(B, H, r1 - r0, v.shape[-1], dtype=torch.float32, device=q.device)  # (B, H, br, hs)
        l = torch.zeros(B, H, r1 - r0, dtype=torch.float32, device=q.device)  # (B, H, br)
        m = torch.full((B, H, r1 - r0), float("-inf"), dtype=torch.float32, device=q.device)  # (B, H, br)
        rows = torch.arange(r0, r1, device=q.device)  # (br,) query positions of this block
        for c0 in range(0, Tk, block_k):  # line 6: for 1 <= j <= Tc (inner loop over key/value blocks)
            c1 = min(c0 + block_k, Tk)
            # Causal: query t sees keys <= t. If the block's first key comes after its last query, every entry
            # of the tile is masked: skip it without computing anything (about half the tiles).
            skipped = causal and c0 > r1 - 1
            # Only tiles crossing the diagonal (some key after the block's first query) need a mask.
            masked = causal and not skipped and c1 - 1 > r0
            if skipped:
                if steps is not None:
                    steps.append(_tile_step(r0, r1, c0, c1, True, False, m, l, m, l, None, None))
                continue
            Kj, Vj = k[:, :, c0:c1], v[:, :, c0:c1]  # line 7: load K_j, V_j, each (B, H, bc, hs)
            S = (Qi @ Kj.transpose(-2, -1)).float()  # line 8: S_ij = Q_i K_j^T, (B, H, br, bc)
            if masked:
                cols = torch.arange(c0, c1, device=q.device)  # (bc,) key positions of this tile
                S.masked_fill_(cols[None, :] > rows[:, None], float("-inf"))  # (br, bc) mask, broadcast
            S_shown = S[0, 0].tolist() if steps is not None else None
            # line 9: m_new = max(m_old, rowmax(S_ij)), (B, H, br). Never -inf after the first tile: the first
            # key block holds key 0, which every query may see, so no row is ever fully masked.
            m_new = torch.maximum(m, S.amax(dim=-1))
            # line 9: P~_ij = exp(S_ij - m_new), computed in place in S's buffer: one tile, not two.
            P = S.sub_(m_new.unsqueeze(-1)).exp_()  # (B, H, br, bc), masked entries become exp(-inf) = 0
            alpha = torch.exp(m - m_new)  # (B, H, br) rescale factor exp(m_old - m_new); 0 on the first tile
            l_new = alpha * l + P.sum(dim=-1)  # line 9: l_new = exp(m_old - m_new) l_old + rowsum(P~_ij)
            # line 10: O_i = diag(exp(m_old - m_new)) O_i + P~_ij V_j, in place in O_i's buffer. No division by l
            # here: that is FA-2's change to FA-1, which normalised the output on every tile.
            O.mul_(alpha.unsqueeze(-1))  # (B, H, br, hs) rescaled to the new maximum
            O += P.to(v.dtype) @ Vj  # (B, H, br, bc) @ (B, H, bc, hs) -> (B, H, br, hs)
            if steps is not None:
                steps.append(_tile_step(r0, r1, c0, c1, False, masked, m, l, m_new, l_new, alpha, S_shown))
            m, l = m_new, l_new
        # line 12: O_i = diag(l_i)^-1 O_i, the only division, once per query block; line 14: write O_i out.
        out[:, :, r0:r1] = (O / l.unsqueeze(-1)).to(q.dtype)
        # line 13: L_i = m_i + log(l_i), the logsumexp the backward pass needs (line 15 writes it to HBM); the
        # forward output does not need it, so only the trace reports it.
        if steps is not None:
            steps.append({"kind": "finalise", "rows": [r0, r1], "m": m[0, 0].tolist(),
                          "l": l[0, 0].tolist(), "logsumexp": (m + torch.log(l))[0, 0].tolist(),
                          "output": out[0, 0, r0:r1].tolist()})
    return out


def _tile_step(r0, r1, c0, c1, skipped, masked, m_old, l_old, m_new, l_new, alpha, scores):
    """One tile of the trace as plain Python values (lists per query row of the block)."""
    return {"kind": "tile", "rows": [r0, r1], "cols": [c0, c1], "skipped": skipped, "masked": masked,
            "m_before": m_old[0, 0].tolist(), "m_after": m_new[0, 0].tolist(),
            "l_before": l_old[0, 0].tolist(), "l_after": l_new[0, 0].tolist(),
            "rescale": None if alpha is None else alpha[0, 0].tolist(), "scores": scores}


def flash_attention(q, k, v, causal: bool = True, block_q: int = 64, block_k: int = 64, scale=None):
    """Tiled FlashAttention-2 forward for (B, H, T, head_dim) tensors; equals softmax(Q K^T * scale) V.

    k and v may hold a different number of tokens than q, except when causal (then Tq must equal Tk).
    """
    scale = _check_qkv(q, k, v, causal, scale)
    block_q, block_k = _check_block(block_q, "block_q"), _check_block(block_k, "block_k")
    return _flash_forward(q, k, v, causal, block_q, block_k, scale)


def flash_attention_trace(q, k, v, causal: bool = True, block_q: int = 4, block_k: int = 4, scale=None):
    """Run the tiled forward on a small example (B = H = 1) and record every step for a step-through.

    Returns (output, steps, check):
    * output: (1, 1, Tq, hs) tensor, the same as flash_attention with these blocks.
    * steps: list of plain dicts in execution order. kind "tile": "q_block"/"kv_block" numbers, "rows" and
      "cols" [start, end) ranges, "skipped" (causal, fully masked, nothing computed), "masked" (diagonal tile),
      per query row "m_before"/"m_after" (running max, -inf before the first tile), "l_before"/"l_after"
      (running sum), "rescale" = exp(m_before - m_after) (None when skipped) and "scores" (the scaled tile,
      -inf where masked; None when skipped). kind "finalise" (one per query block, after its last tile):
      final "m", "l", "logsumexp" = m + log(l) and the block's "output" rows (accumulator divided by l).
    * check: {"max_abs_diff": max |output - F.scaled_dot_product_attention|, "tiles", "skipped", "masked"}.
    """
    scale = _check_qkv(q, k, v, causal, scale)
    block_q, block_k = _check_block(block_q, "block_q"), _check_block(block_k, "block_k")
    if q.shape[0] != 1 or q.shape[1] != 1:
        raise ValueError(f"the trace takes one sequence and one head (batch = heads = 1), got {tuple(q.shape)}.")
    if max(q.shape[2], k.shape[2]) > TRACE_MAX_TOKENS:
        raise ValueError(f"the trace is for small examples: at most {TRACE_MAX_TOKENS} tokens.")
    steps = []
    with torch.no_grad():
        out = _flash_forward(q, k, v, causal, block_q, block_k, scale, steps)
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    for step in steps:
        step["q_block"] = step["rows"][0] // block_q
        if step["kind"] == "tile":
            step["kv_block"] = step["cols"][0] // block_k
    tiles = [s for s in steps if s["kind"] == "tile"]
    check = {"max_abs_diff": (out - ref).abs().max().item(), "tiles": len(tiles),
             "skipped": sum(s["skipped"] for s in tiles), "masked": sum(s["masked"] for s in tiles)}
    return out, steps, check


def attention_memory_prediction(T: int, head_dim: int, batch: int = 1, heads: int = 1, dtype_bytes: int = 4,
                                block_q: int = 64, block_k: int = 64) -> dict:
    """Bytes each attention needs beyond q, k, v (self-attention, Tq = Tk = T), as implemented in this module.

    standard: the (T, T) scores and the (T, T) probabilities are alive together during the softmax, plus the
    output. tiled: a (block_q, block_k) tile for S and P~ (float32; exp is done in place) and the previous one,
    per query block the scaled copy of Q_i, the float32 accumulator O_i and the P~ V product, the running stats
    (m, l, their new values and the rescale factor, float32) and the row/column positions (int64), plus the
    output. The output (T, head_dim) is the same for both.
    """
    for value, name in ((T, "T"), (head_dim, "head_dim"), (batch, "batch"), (heads, "heads"),
                        (dtype_bytes, "dtype_bytes"), (block_q, "block_q"), (block_k, "block_k")):
        _check_block(value, name)
    bh = batch * heads
    bq, bk = min(block_q, T), min(block_k, T)
    output = bh * T * head_dim * dtype_bytes
    scores = bh * T * T * dtype_bytes
    # S is upcast to float32. Two tiles: Python frees the previous tile only when `S` is rebound to the new one.
    tile = 2 * bh * bq * bk * max(dtype_bytes, 4)
    stats = bh * bq * 4 * 5 + (bq + bk) * 8  # m, l, m_new, l_new, rescale (float32); positions (int64)
    block = bh * bq * head_dim * (dtype_bytes + 4 + dtype_bytes)  # Q_i * scale, O_i (float32), P~ V
    standard_total = 2 * scores + output
    tiled_total = tile + stats + block + output
    return {"standard_scores_bytes": scores, "standard_probs_bytes": scores, "standard_total_bytes": standard_total,
            "tiled_tile_bytes": tile, "tiled_stats_bytes": stats, "tiled_block_bytes": block,
            "tiled_total_bytes": tiled_total, "output_bytes": output,
            "tiled_over_standard": tiled_total / standard_total}
