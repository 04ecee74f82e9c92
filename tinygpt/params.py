"""Exact parameter counts from a GPTConfig alone (no weights are allocated).

Every figure here is cross-checked in tests against `sum(p.numel())` of a built model (meta device for the
big presets), for GPT-2's blocks and for every architecture option (decoupled head size, GQA, gated MLP,
RMSNorm, RoPE / sinusoidal / no positions, untied head, biases on q/k/v only, Mixture-of-Experts), so the
numbers a student reads are the numbers the model really has.
"""
from __future__ import annotations

from .config import GPTConfig

POSITION_FORMULAS = {"learned": "block·d", "sinusoidal": "0 (a fixed sin/cos table)",
                     "rope": "0 (RoPE rotates q and k)", "none": "0 (no positions)"}


def _linear(n_in: int, n_out: int, bias: bool, a: str, b: str) -> tuple[str, int]:
    """(formula, count) of a Linear layer a -> b."""
    return f"{a}·{b}" + (f" + {b}" if bias else ""), n_in * n_out + (n_out if bias else 0)


def parameter_breakdown(config: GPTConfig) -> list[dict]:
    """Per-tensor counts, with the formula behind each, as rows {name, formula, count}.

    Rows starting with "per block:" are per transformer block; "per expert" rows are per expert MLP."""
    c = config
    d, V, A = c.n_embd, c.vocab_size, c.attn_dim  # A = n_head · head_dim (= d in GPT-2)
    kv = c.kv_heads * c.head_dim  # width of K (and of V)
    ff, b, qb = c.ffn_dim, c.bias, c.has_qkv_bias
    norm_size = (2 * d if (b and c.norm == "layernorm") else d) if c.layernorm else 0  # gamma (+ beta)
    norm_formula = ("2d" if (b and c.norm == "layernorm") else "d") if c.layernorm else "0"
    qa = "d" if A == c.n_embd else "A"  # the query width: d in GPT-2, A = n_head·head_dim when decoupled
    rows = [
        ("token embedding wte", "V·d", V * d),
        ("position embedding wpe", POSITION_FORMULAS[c.pos_encoding],
         c.block_size * d if c.pos_encoding == "learned" else 0),
        ("per block: attention Q", *_linear(d, A, qb, "d", qa)),
        ("per block: attention K", *_linear(d, kv, qb, "d", "kv")),
        ("per block: attention V", *_linear(d, kv, qb, "d", "kv")),
        ("per block: attention out c_proj", *_linear(A, d, b, qa, "d")),
    ]
    mlp = [("feed-forward c_fc", *_linear(d, ff, b, "d", "ff"))]
    if c.mlp == "gated":
        mlp.append(("feed-forward c_gate", *_linear(d, ff, b, "d", "ff")))
    mlp.append(("feed-forward c_proj", *_linear(ff, d, b, "ff", "d")))
    if c.n_experts:
        rows += [(f"per block, per expert: {n}", f, k) for n, f, k in mlp]
        rows.append(("per block: router", "d·E", d * c.n_experts))
    else:
        rows += [(f"per block: {n}", f, k) for n, f, k in mlp]
    rows += [
        ("per block: norms ln_1, ln_2", f"2·{norm_formula}" if c.layernorm else "0", 2 * norm_size),
        ("final norm ln_f", norm_formula, norm_size),
        ("LM head", "0 (tied to wte)" if c.tie_weights else "d·V", 0 if c.tie_weights else d * V),
    ]
    return [{"name": n, "formula": f, "count": k} for n, f, k in rows]


def count_parameters(config: GPTConfig) -> dict:
    """Totals by kind: embedding, attention, feed_forward (experts and router included), layer_norm, lm_head
    (0 when tied), total; per_block, non_embedding; and active, the parameters one token actually uses
    (an MoE model runs only moe_top_k of its experts per token; active = total for a dense model)."""
    r = {row["name"]: row["count"] for row in parameter_breakdown(config)}
    L, E = config.n_layer, config.n_experts
    expert = sum(v for k, v in r.items() if k.startswith("per block, per expert"))
    ff = (E * expert + r["per block: router"]) if E else \
        sum(v for k, v in r.items() if k.startswith("per block: feed-forward"))
    out = {
        "embedding": r["token embedding wte"] + r["position embedding wpe"],
        "attention": L * sum(v for k, v in r.items() if k.startswith("per block: attention")),
        "feed_forward": L * ff,
        "layer_norm": L * r["per block: norms ln_1, ln_2"] + r["final norm ln_f"],
        "lm_head": r["LM head"],
    }
    out["total"] = sum(out.values())
    out["per_block"] = (out["attention"] + out["feed_forward"]) // L + r["per block: norms ln_1, ln_2"]
    out["non_embedding"] = out["total"] - out["embedding"] - out["lm_head"]
    out["active"] = out["total"] - L * (E - config.moe_top_k) * expert if E else out["total"]
    return out


def approx_parameters(config: GPTConfig) -> int:
    """The textbook 12·n_layer·d² (attention 4d² + MLP 8d² per block; ignores embeddings, biases, LN)."""
    return 12 * config.n_layer * config.n_embd ** 2
