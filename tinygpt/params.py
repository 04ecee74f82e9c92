"""Exact parameter counts from a GPTConfig alone (no weights are allocated).

Every figure here is cross-checked in tests against `sum(p.numel())` of a built model (meta device for the
big presets), so the numbers a student reads are the numbers the model really has.
"""
from __future__ import annotations

from .config import GPTConfig


def parameter_breakdown(config: GPTConfig) -> dict:
    """Per-tensor counts, with the formula behind each, as rows {name, formula, count}."""
    c = config
    d, V, hs = c.n_embd, c.vocab_size, c.head_dim
    kv = c.kv_heads * hs  # width of K (and of V)
    ff = c.ffn_dim
    b = 1 if c.bias else 0
    ln = (2 if c.bias else 1) * d if c.layernorm else 0  # gamma (+ beta)
    rows = [
        ("token embedding wte", "V·d", V * d),
        ("position embedding wpe", "block·d", c.block_size * d),
        ("per block: attention Q", "d·d" + (" + d" if b else ""), d * d + b * d),
        ("per block: attention K", "d·kv" + (" + kv" if b else ""), d * kv + b * kv),
        ("per block: attention V", "d·kv" + (" + kv" if b else ""), d * kv + b * kv),
        ("per block: attention out c_proj", "d·d" + (" + d" if b else ""), d * d + b * d),
        ("per block: feed-forward c_fc", "d·ff" + (" + ff" if b else ""), d * ff + b * ff),
        ("per block: feed-forward c_proj", "ff·d" + (" + d" if b else ""), ff * d + b * d),
        ("per block: LayerNorms ln_1, ln_2", ("2·2d" if b else "2·d") if c.layernorm else "0", 2 * ln),
        ("final LayerNorm ln_f", ("2d" if b else "d") if c.layernorm else "0", ln),
        ("LM head", "0 (tied to wte)" if c.tie_weights else "d·V", 0 if c.tie_weights else d * V),
    ]
    return [{"name": n, "formula": f, "count": k} for n, f, k in rows]


def count_parameters(config: GPTConfig) -> dict:
    """Totals by kind: embedding, attention, feed_forward, layer_norm, lm_head (0 when tied), total."""
    r = {row["name"]: row["count"] for row in parameter_breakdown(config)}
    L = config.n_layer
    out = {
        "embedding": r["token embedding wte"] + r["position embedding wpe"],
        "attention": L * sum(r[k] for k in r if k.startswith("per block: attention")),
        "feed_forward": L * sum(r[k] for k in r if k.startswith("per block: feed-forward")),
        "layer_norm": L * r["per block: LayerNorms ln_1, ln_2"] + r["final LayerNorm ln_f"],
        "lm_head": r["LM head"],
    }
    out["total"] = sum(out.values())
    out["per_block"] = (out["attention"] + out["feed_forward"]) // L + r["per block: LayerNorms ln_1, ln_2"]
    out["non_embedding"] = out["total"] - out["embedding"] - out["lm_head"]
    return out


def approx_parameters(config: GPTConfig) -> int:
    """The textbook 12·n_layer·d² (attention 4d² + MLP 8d² per block; ignores embeddings, biases, LN)."""
    return 12 * config.n_layer * config.n_embd ** 2
