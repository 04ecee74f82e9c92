"""Memory, FLOPs, KV-cache and GPU-hour estimates from a GPTConfig alone (no weights are ever allocated).

`estimate(...)` returns every figure the calculator tab and `python -m tinygpt params --json` show, so the two
always agree; `formulas(config)` writes each formula out for that configuration. Every architecture option of
GPTConfig is covered (decoupled head size, GQA, gated MLP, RMSNorm, positions, tied head, biases, MoE); for a
GPT-2-shaped config every number is the one the GPT-2-only calculator gave. Conventions (each checked in
tests/test_calculator.py):

* Bytes per parameter (ZeRO paper, Rajbhandari et al. 2020). fp32: weights 4, gradients 4. fp16/bf16 means
  mixed precision: 16-bit weights 2 + fp32 master copy 4 (both counted under "weights"), 16-bit gradients 2.
  AdamW keeps m and v in fp32 (8 B/param) plus one fp32 scalar step counter per parameter tensor, exactly as
  torch.optim.AdamW allocates (the tensors of tinygpt's GPT: q, k, v fused in one c_attn; transformers'
  LLaMA keeps q, k, v, o, gate, up, down apart, a few hundred bytes more). "sgd" means SGD with momentum:
  one fp32 momentum buffer (4 B/param); plain SGD without momentum would keep nothing. An MoE model trains and
  stores all its experts: memory counts the total parameters, FLOPs only the active ones.
* Activations (an estimate): Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
  Models", no recomputation, standard (non-flash) attention, dropout masks at 1 byte. Per layer with 16-bit
  activations: s·b·h·(34 + 5·a·s/h) bytes. Generalised here to any element size e, query width A =
  n_head·head_dim, K/V width kv (GQA), FFN width ff and FFN kind:
  e·s·b·(4h + 2A + 2kv + m·k·ff) + 2e·a·s²·b + (2·s·b·h + a·s²·b) [masks] + 4·s·b·E [MoE router]
  where 4h = the inputs of the two norms, of QKV and of the MLP; 2A = Q and the out-projection's input;
  2kv = K and V; m = 2 for a GELU MLP (its input and output) and 4 for a gated one (the c_fc and c_gate
  outputs, the activation's output and the product); k = experts per token (1 when dense), whose FFN
  activations are each kept; E = number of experts (fp32 router probabilities). RMSNorm keeps the same input
  as LayerNorm; RoPE's rotated q and k are not counted (implementations fuse or recompute them). With e=2,
  A=kv=h, ff=4h, a GELU MLP and no MoE this is exactly the paper's formula. Outside the blocks:
  e·2·s·b·h (embedding output, final norm input) + 4·s·b·V (fp32 logits for the loss).
* FLOPs (Kaplan et al. 2020): N = active non-embedding parameters + the LM head's V·d (its matmul runs even
  when the weight is tied to wte; embedding lookups are not matmuls; an MoE token runs only its top-k experts,
  so N counts those and the router). Forward per token: 2N + 2·n_layer·n_ctx·A, with Kaplan's d_attn = A =
  n_head·head_dim (= d in GPT-2); training (forward + backward ≈ 3× forward): 6N + 6·n_layer·n_ctx·A.
  Kaplan's attention term counts the causal half of QKᵀ and A·V; a kernel that computes the full T×T square
  does twice that.
"""
from __future__ import annotations

from .config import GPTConfig
from .defaults import A100_TFLOPS, PARAMS
from .dtypes import ELEMENT_BYTES, element_bytes  # noqa: F401 - tabs/calculator/tables.py reads ELEMENT_BYTES from here
from .params import approx_parameters, count_parameters

OPTIMIZERS = ("adamw", "sgd")
DEFAULT_MFU = PARAMS["mfu"]  # a typical model-FLOPs utilisation for large-scale training
DEFAULT_TOKENS = PARAMS["tokens"]


def _positive_int(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive whole number (got {value!r}).")
    return value


def parameter_tensors(config: GPTConfig) -> int:
    """How many parameter tensors tinygpt's GPT has (AdamW keeps one scalar step counter per tensor)."""
    c = config
    per_linear = 2 if c.bias else 1  # weight (+ bias)
    qkv = 2 if c.has_qkv_bias else 1  # c_attn: q, k and v in one Linear
    per_norm = (1 if (c.norm == "rmsnorm" or not c.bias) else 2) if c.layernorm else 0  # gamma (+ beta)
    mlp = (3 if c.mlp == "gated" else 2) * per_linear  # c_fc (+ c_gate) + c_proj
    ffn = c.n_experts * mlp + 1 if c.n_experts else mlp  # every expert's MLP + the router's weight (no bias)
    per_block = qkv + per_linear + ffn + 2 * per_norm  # c_attn, attn c_proj, feed-forward; ln_1, ln_2
    embeddings = 2 if c.pos_encoding == "learned" else 1  # wte (+ wpe)
    return embeddings + c.n_layer * per_block + per_norm + (0 if c.tie_weights else 1)  # ln_f; lm_head


def bytes_per_param(dtype: str = "fp32", optimizer: str = "adamw") -> dict:
    """Bytes each parameter costs in training: weights (incl. the fp32 master copy), gradients, optimizer."""
    e = element_bytes(dtype)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {optimizer!r}).")
    master = 4 if e < 4 else 0  # mixed precision keeps an fp32 copy for the update to be exact enough
    return {"weights": e + master, "gradients": e, "optimizer": 8 if optimizer == "adamw" else 4}


def activation_bytes(config: GPTConfig, batch_size: int, seq_len: int, dtype: str = "fp32") -> dict:
    """Activations kept for the backward pass (estimate, see the module docstring): per layer and total."""
    e = element_bytes(dtype)
    c = config
    s, b, h, a = seq_len, batch_size, c.n_embd, c.n_head
    A, kv, ff, V, E = c.attn_dim, c.kv_heads * c.head_dim, c.ffn_dim, c.vocab_size, c.n_experts
    m = 4 if c.mlp == "gated" else 2  # FFN-wide tensors kept per expert run
    k = c.moe_top_k if E else 1  # experts each token runs
    per_layer = (e * s * b * (4 * h + 2 * A + 2 * kv + m * k * ff) + 2 * e * a * s * s * b
                 + (2 * s * b * h + a * s * s * b) + 4 * s * b * E)
    outside = e * 2 * s * b * h + 4 * s * b * V
    return {"per_layer": per_layer, "outside_blocks": outside, "total": c.n_layer * per_layer + outside}


def kv_cache_bytes(config: GPTConfig, batch_size: int, seq_len: int, dtype: str = "fp16",
                   n_kv_head: int | None = None) -> int:
    """K and V for every layer and position: 2 · n_layer · batch · seq · n_kv_head · head_dim · element size."""
    kv = config.kv_heads if n_kv_head is None else n_kv_head
    return 2 * config.n_layer * batch_size * seq_len * kv * config.head_dim * element_bytes(dtype)


def gqa_compare_heads(config: GPTConfig) -> int:
    """KV heads for the 'GQA' line: the config's own if it is grouped, else the divisor of n_head nearest n_head/4."""
    if 1 < config.kv_heads < config.n_head:
        return config.kv_heads
    divisors = [k for k in range(1, config.n_head + 1) if config.n_head % k == 0]
    return min(divisors, key=lambda k: (abs(k - config.n_head / 4), k))


def training_memory(config: GPTConfig, batch_size: int, seq_len: int, dtype: str = "fp32",
                    optimizer: str = "adamw") -> dict:
    """Bytes for weights, gradients, optimizer state, activations, and their sum."""
    P = count_parameters(config)["total"]
    per = bytes_per_param(dtype, optimizer)
    steps = 4 * parameter_tensors(config) if optimizer == "adamw" else 0  # fp32 scalar `step` per tensor
    out = {"weights": per["weights"] * P, "gradients": per["gradients"] * P,
           "optimizer": per["optimizer"] * P + steps,
           "activations": activation_bytes(config, batch_size, seq_len, dtype)["total"]}
    out["training_total"] = sum(out.values())
    return out


def flops_per_token(config: GPTConfig, seq_len: int) -> dict:
    """Kaplan et al.: forward 2N + 2·n_layer·n_ctx·A, training 3× that (N and A defined in the module docstring)."""
    counts = count_parameters(config)
    active_non_embedding = counts["active"] - counts["embedding"] - counts["lm_head"]  # = non_embedding if dense
    n = active_non_embedding + config.vocab_size * config.n_embd  # + LM head matmul, tied or not
    attention = 2 * config.n_layer * seq_len * config.attn_dim
    inference = 2 * n + attention
    return {"compute_params": n, "attention_forward": attention, "per_token_inference": inference,
            "per_token_train": 3 * inference}


def formulas(config: GPTConfig) -> dict:
    """Every formula of the calculator written for this configuration's options (strings, for the tab and CLI).

    Symbols: V vocab, d = n_embd, L = n_layer, A = n_head·head_dim, kv = n_kv_head·head_dim, ff = FFN width,
    E experts, k experts per token, s sequence length, b batch size, e bytes per element, a = n_head."""
    c = config
    b, qb, E = c.bias, c.has_qkv_bias, c.n_experts
    gated = c.mlp == "gated"
    attn = "d·A + 2·d·kv + A·d" + (" + A + 2kv" if qb else "") + (" + d" if b else "")
    expert = ("3·d·ff" if gated else "2·d·ff") + ((" + 2ff + d" if gated else " + ff + d") if b else "")
    ffn = f"E·({expert}) + d·E" if E else expert
    norm = ("2d" if (b and c.norm == "layernorm") else "d") if c.layernorm else "0"
    emb = "V·d" + (" + block·d" if c.pos_encoding == "learned" else "")
    head = "" if c.tie_weights else " + d·V"
    m, k = (4 if gated else 2), (c.moe_top_k if E else 1)
    ffn_act = f"{m}·{k}·ff" if E else f"{m}ff"
    return {
        "params_per_block": f"{attn} + {ffn} + 2·{norm}",
        "params_total": f"{emb} + L·[{attn} + {ffn} + 2·{norm}] + {norm}{head}",
        "params_active": f"total − L·(E − k)·({expert})" if E else "total (dense: every parameter runs)",
        "bytes_per_param": "fp32: 4 + 4 grad; fp16/bf16: 2 + 4 master + 2 grad; AdamW m, v: 8 (+ 4 B step per "
                           "tensor); SGD momentum: 4",
        "training_memory": "bytes/param · P_total + activations",
        "activations_per_layer": f"e·s·b·(4d + 2A + 2kv + {ffn_act}) + 2e·a·s²·b + (2·s·b·d + a·s²·b)"
                                 + (" + 4·s·b·E" if E else ""),
        "activations_outside_blocks": "2e·s·b·d + 4·s·b·V",
        "inference_memory": "e·P_total + KV cache",
        "kv_cache": "2 · L · b · s · n_kv_head · head_dim · e",
        "compute_params": ("N = active non-embedding parameters + V·d" if E else
                           "N = non-embedding parameters + V·d (the LM head's matmul)"),
        "flops_per_token_inference": "2N + 2·L·s·A",
        "flops_per_token_train": "6N + 6·L·s·A",
        "gpu_hours": "FLOPs / (TFLOPS·10¹²·MFU) / 3600",
    }


FORWARD_COMPONENTS = ("embedding", "attention", "feed_forward", "layer_norm", "lm_head", "other")


def forward_flops(config: GPTConfig, batch_size: int, seq_len: int) -> dict:
    """FLOPs of one forward pass over batch_size sequences of seq_len tokens, by component (the profiler's keys).

    Kaplan's convention, 2 FLOPs per parameter per token (a multiply and an add), per component: attention
    2·(its parameters) + the score term 2·n_layer·seq_len·d (flops_per_token's attention_forward), feed-forward
    2·(the parameters a token uses: top-k experts for MoE), layer_norm 2·(its parameters) (≈ 4 per element: the
    normalise, scale and shift), lm_head 2·V·d. Not in Kaplan's count, so added here: embedding d per token
    (adding the position row; the lookups are memory reads, 0 FLOPs) and other 2·n_layer·d (the two residual
    additions per block). For a dense model, everything but embedding and other sums to flops_per_token's
    per_token_inference × tokens."""
    _positive_int(batch_size, "batch_size")
    _positive_int(seq_len, "seq_len")
    p = count_parameters(config)
    tokens = batch_size * seq_len
    ff = p["feed_forward"] - (p["total"] - p["active"])  # an MoE token runs only its top-k experts
    adds_position = config.pos_encoding in ("learned", "sinusoidal")
    per_token = {
        "embedding": config.n_embd if adds_position else 0,
        "attention": 2 * p["attention"] + flops_per_token(config, seq_len)["attention_forward"],
        "feed_forward": 2 * ff,
        "layer_norm": 2 * p["layer_norm"],
        "lm_head": 2 * config.vocab_size * config.n_embd,
        "other": 2 * config.n_layer * config.n_embd,
    }
    return {k: tokens * v for k, v in per_token.items()}


def forward_activation_bytes(config: GPTConfig, batch_size: int, seq_len: int, dtype: str = "fp32") -> int:
    """Peak memory of the tensors alive during one forward pass without gradients (an estimate).

    The logits (B, T, V) of every position, plus inside one block: the residual stream, its normalised copy,
    the attention output and its projection (4d), q, k, v (A + 2·kv), the re-assembled heads (A) and the
    feed-forward hidden layer before and after its activation (2·ff; 3·ff for a gated MLP). Attention itself runs
    in PyTorch's fused kernel, which never holds the T x T matrix. Weights are not counted (already loaded)."""
    e = element_bytes(dtype)
    c = config
    ff = (3 if c.mlp == "gated" else 2) * c.ffn_dim
    per_token = c.vocab_size + 4 * c.n_embd + 2 * c.attn_dim + 2 * c.kv_heads * c.head_dim + ff
    return e * batch_size * seq_len * per_token


def gpu_hours(flops: float, tflops: float = A100_TFLOPS, mfu: float = DEFAULT_MFU) -> float:
    """Hours on one GPU running at `mfu` × `tflops` (peak, in 10^12 FLOP/s)."""
    return flops / (tflops * 1e12 * mfu) / 3600.0


def estimate(config: GPTConfig, batch_size: int = 1, seq_len: int | None = None, dtype: str = "fp32",
             optimizer: str = "adamw", tokens: int = DEFAULT_TOKENS, tflops: float = A100_TFLOPS,
             mfu: float = DEFAULT_MFU) -> dict:
    """Every number of the calculator for one configuration; counts and bytes are ints."""
    config.validate()
    seq_len = config.block_size if seq_len is None else seq_len
    _positive_int(batch_size, "batch_size")
    _positive_int(seq_len, "seq_len")
    _positive_int(tokens, "tokens")
    if seq_len > config.block_size:
        raise ValueError(f"seq_len ({seq_len}) is longer than the context block_size ({config.block_size}).")
    if not 0 < tflops < float("inf"):
        raise ValueError(f"tflops must be a number above 0 (got {tflops!r}).")
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu (utilisation) must be in (0, 1] (got {mfu!r}).")
    e = element_bytes(dtype)
    params = count_parameters(config)
    P = params["total"]
    mem = training_memory(config, batch_size, seq_len, dtype, optimizer)
    kv = kv_cache_bytes(config, batch_size, seq_len, dtype)
    mem["inference_weights"] = e * P  # no master copy, no gradients, no optimizer when only generating
    mem["kv_cache"] = kv
    mem["inference"] = e * P + kv
    fl = flops_per_token(config, seq_len)
    fl["train_total"] = fl["per_token_train"] * tokens
    approx = approx_parameters(config)
    blocks = params["attention"] + params["feed_forward"]
    gqa = gqa_compare_heads(config)
    return {
        "config": {"n_layer": config.n_layer, "n_embd": config.n_embd, "n_head": config.n_head,
                   "n_kv_head": config.kv_heads, "block_size": config.block_size, "vocab_size": config.vocab_size,
                   "n_inner": config.ffn_dim, "bias": config.bias, "tie_weights": config.tie_weights,
                   "head_dim": config.head_dim, "attn_dim": config.attn_dim, "mlp": config.mlp, "norm": config.norm,
                   "pos_encoding": config.pos_encoding, "qkv_bias": config.has_qkv_bias,
                   "n_experts": config.n_experts, "moe_top_k": config.moe_top_k if config.n_experts else 0},
        "inputs": {"batch_size": batch_size, "seq_len": seq_len, "dtype": dtype, "optimizer": optimizer,
                   "tokens": tokens, "tflops": float(tflops), "mfu": float(mfu)},
        "params": params,
        "shares": {"attention": params["attention"] / blocks, "feed_forward": params["feed_forward"] / blocks},
        "approximation": {"12_n_layer_d2": approx, "error_vs_total": (approx - P) / P,
                          "error_vs_non_embedding": (approx - params["non_embedding"]) / params["non_embedding"]},
        "bytes_per_param": bytes_per_param(dtype, optimizer),
        "memory_bytes": mem,
        "activation_bytes": activation_bytes(config, batch_size, seq_len, dtype),
        "kv_cache_bytes": kv,
        "kv_cache_by_attention": {
            "mha": kv_cache_bytes(config, batch_size, seq_len, dtype, config.n_head),
            "gqa": kv_cache_bytes(config, batch_size, seq_len, dtype, gqa), "gqa_kv_heads": gqa,
            "mqa": kv_cache_bytes(config, batch_size, seq_len, dtype, 1)},
        "flops": fl,
        "gpu_hours": gpu_hours(fl["train_total"], tflops, mfu),
        "gpu_hours_at_full_utilisation": gpu_hours(fl["train_total"], tflops, 1.0),
        "formulas": formulas(config),
    }
