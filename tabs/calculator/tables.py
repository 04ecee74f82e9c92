"""The calculator's text and tables: the summary markdown of one configuration, the parameter breakdown rows,
the worked exercise answers, and the report made safe for gr.JSON."""
from __future__ import annotations

from functools import lru_cache

from tinygpt import GPTConfig, count_parameters, parameter_breakdown
from tinygpt.compute import DEFAULT_MFU, ELEMENT_BYTES, estimate, kv_cache_bytes

from ..kit.common import human, human_bytes, human_flops


# ---- the worked exercise answers (constant, so computed once) ---------------------------------------
@lru_cache(maxsize=1)
def exercise_answers() -> str:
    g2, g3, l7 = (GPTConfig.from_preset(n) for n in ("gpt2", "gpt3", "llama-7b"))
    e2 = estimate(g2, batch_size=1, seq_len=1024, dtype="fp32", optimizer="adamw")
    e7 = estimate(l7, seq_len=4096, dtype="fp16", tokens=10 ** 12)
    m, f = e2["memory_bytes"], e7["flops"]
    n7 = e7["params"]["total"]
    c2 = count_parameters(g2)
    per_ff, per_attn = c2["feed_forward"] // 12, c2["attention"] // 12
    gqa = GPTConfig(n_layer=1, n_head=8, n_kv_head=2, n_embd=512)
    mha_b, gqa_b = kv_cache_bytes(gqa, 1, 1, "fp16", 8), kv_cache_bytes(gqa, 1, 1, "fp16")
    kv7 = e7["kv_cache_bytes"]
    return "\n".join([
        "### Exercise answers (computed by the same code as the table)",
        f"* **GPT-2 small** has **{c2['total']:,}** trainable parameters ({human(c2['total'])}; the LM head is tied"
        " to the token embedding, so it is counted once).",
        f"* **GPT-3's configuration** (96 layers, d=12288, 96 heads, context 2048) gives "
        f"**{count_parameters(g3)['total']:,}** ({human(count_parameters(g3)['total'])}).",
        f"* **Feed-forward vs attention** (GPT-2, per block): feed-forward {per_ff:,} vs attention {per_attn:,} — the"
        f" MLP holds {per_ff / (per_ff + per_attn):.1%} of the block (8d² vs 4d², so twice the attention).",
        f"* **GPT-2 training memory, fp32, AdamW, batch 1, 1024 tokens**: weights {human_bytes(m['weights'])} +"
        f" gradients {human_bytes(m['gradients'])} + AdamW m, v {human_bytes(m['optimizer'])} (16 B/parameter ="
        f" {human_bytes(m['weights'] + m['gradients'] + m['optimizer'])}) + activations ≈"
        f" {human_bytes(m['activations'])} = **{human_bytes(m['training_total'])}** ({m['training_total']:,} B).",
        f"* **Pre-training LLaMA-7B ({human(n7)} parameters) on 1T tokens**: 6·N·D ="
        f" {human_flops(6 * f['compute_params'] * 10 ** 12)}; with the attention term at 4096 tokens"
        f" **{human_flops(f['train_total'])}**. On A100s (312 TFLOPS): **{e7['gpu_hours_at_full_utilisation']:,.0f}"
        f" GPU-hours** at 100% utilisation, **{e7['gpu_hours']:,.0f}** at {DEFAULT_MFU:.0%} (a typical MFU).",
        f"* **KV cache of LLaMA-7B at 4096 tokens, fp16, batch 1**: 2 (K,V) · {l7.n_layer} layers · 4096 tokens"
        f" · {l7.kv_heads} heads · {l7.head_dim} dims · 2 B = {kv7:,} B = **{human_bytes(kv7)}**.",
        f"* **GQA with 8 query heads and 2 KV groups** stores 2 K/V heads instead of 8: the KV cache is"
        f" **{mha_b // gqa_b}× smaller** (MQA, 1 KV head: 8× smaller). Parameters shrink too, only in W_K and W_V.",
    ])


# ---- this configuration -----------------------------------------------------------------------------
def breakdown_rows(cfg: GPTConfig, report: dict) -> list:
    """[name, formula, exact count, human] for the Dataframe. The exact count is a string with thousands
    separators: readable, and exact even beyond the 2^53 a browser's numbers hold."""
    L = cfg.n_layer
    p = report["params"]
    ap = report["approximation"]
    rows = [(r["name"], r["formula"], r["count"]) for r in parameter_breakdown(cfg)]
    fo, E = report["formulas"], cfg.n_experts
    ffn = "L · (E · expert + router)" if E else \
        ("L · (c_fc + c_gate + c_proj)" if cfg.mlp == "gated" else "L · (c_fc + c_proj)")
    rows += [
        ("one block (sum of the per-block rows)", fo["params_per_block"], p["per_block"]),
        (f"all {L} blocks", "L · one block", L * p["per_block"]),
        ("attention (all blocks)", "L · (Q + K + V + out)", p["attention"]),
        ("feed-forward (all blocks)", ffn, p["feed_forward"]),
        ("TOTAL (exact)", fo["params_total"], p["total"]),
    ]
    if E:
        rows.append((f"ACTIVE per token (top-{cfg.moe_top_k} of {E} experts)", fo["params_active"], p["active"]))
    rows.append((f"12·L·d² approximation ({ap['error_vs_total']:+.1%} vs total, {ap['error_vs_non_embedding']:+.1%}"
                 " vs non-embedding)", f"12·{L}·{cfg.n_embd}²", ap["12_n_layer_d2"]))
    return [[name, formula, f"{count:,}", human(count)] for name, formula, count in rows]


def architecture_line(cfg: GPTConfig) -> str:
    """One sentence naming every architecture option of the config, with what it costs in parameters."""
    A, d = cfg.attn_dim, cfg.n_embd
    width = f"A = n_head·head_dim = {cfg.n_head}·{cfg.head_dim} = {A}" + (f" (≠ d = {d})" if A != d else " (= d)")
    mlp = "gated SwiGLU MLP (3 matrices: c_fc, c_gate, c_proj)" if cfg.mlp == "gated" else \
        "GELU MLP (2 matrices: c_fc, c_proj)"
    norm = ("no norms (ablation)" if not cfg.layernorm else
            "RMSNorm (weight only)" if cfg.norm == "rmsnorm" else
            "LayerNorm (weight + bias)" if cfg.bias else "LayerNorm (weight only, no bias)")
    pos = {"learned": "learned positions (wpe: block·d)", "sinusoidal": "sinusoidal positions (0 parameters)",
           "rope": "RoPE (0 parameters)", "none": "no positions"}[cfg.pos_encoding]
    biases = ("biases on" if cfg.bias else "no biases") + (
        "" if cfg.qkv_bias is None else f", q/k/v biases {'on' if cfg.qkv_bias else 'off'}")
    head = "LM head tied to wte" if cfg.tie_weights else "untied LM head (d·V more)"
    moe = f", Mixture-of-Experts: {cfg.n_experts} experts per block, top-{cfg.moe_top_k}" if cfg.n_experts else ""
    return f"Architecture: {width}; {mlp}; {norm}; {pos}; {biases}; {head}{moe}."


def config_markdown(cfg: GPTConfig, r: dict) -> str:
    p, m, f, i, fo = r["params"], r["memory_bytes"], r["flops"], r["inputs"], r["formulas"]
    bpp, act, kv = r["bytes_per_param"], r["activation_bytes"], r["kv_cache_by_attention"]
    mixed = i["dtype"] != "fp32"
    opt = ("AdamW: m and v in fp32 = 8 B/parameter, plus one 4-byte step counter per tensor"
           if i["optimizer"] == "adamw" else
           "SGD with momentum: one fp32 momentum buffer = 4 B/parameter (plain SGD, momentum 0, keeps 0 B)")
    s, b, E = i["seq_len"], i["batch_size"], cfg.n_experts
    lines = [
        f"### This configuration: {human(p['total'])} parameters ({p['total']:,})",
        f"**At a glance:** training on D = {i['tokens']:,} tokens takes **{human_flops(f['train_total'])}** ="
        f" **{r['gpu_hours']:,.0f} GPU-hours** at {i['tflops']:g} TFLOPS × {i['mfu']:.0%} utilisation"
        f" (**{r['gpu_hours_at_full_utilisation']:,.0f}** at 100%; 6·N·D alone ="
        f" {human_flops(6 * f['compute_params'] * i['tokens'])}) · KV cache at batch {b}, {s:,} tokens, {i['dtype']}:"
        f" **{human_bytes(r['kv_cache_bytes'])}** · training memory **{human_bytes(m['training_total'])}**.",
        f"V = vocab {cfg.vocab_size:,}, d = n_embd {cfg.n_embd}, L = n_layer {cfg.n_layer}, a = n_head {cfg.n_head},"
        f" kv = n_kv_head·head_dim = {cfg.kv_heads}·{cfg.head_dim}, ff = FFN width {cfg.ffn_dim}."
        + (f" E = {E} experts, k = {cfg.moe_top_k} per token." if E else ""),
        architecture_line(cfg),
        f"* **Parameters** = {fo['params_total']} = **{p['total']:,}**.",
    ]
    if E:
        lines.append(
            f"* **Mixture of Experts: total vs active.** All {E} experts of every block are stored and trained, so"
            f" memory counts the total **{human(p['total'])}**; each token runs only {cfg.moe_top_k} of them, so"
            f" FLOPs count the active **{human(p['active'])}** ({p['active']:,} = {fo['params_active']}).")
    lines += [
        f"* Attention holds **{r['shares']['attention']:.1%}** and the feed-forward"
        f" **{r['shares']['feed_forward']:.1%}** of the block parameters. The 12·L·d² rule"
        f" (4d² attention + 8d² MLP per block) is {r['approximation']['error_vs_total']:+.1%} off the exact"
        " total (it ignores embeddings, biases and norms, and assumes A = d, a 4d GELU MLP and no experts).",
        f"* **Training memory** ({i['dtype']}{', mixed precision' if mixed else ''}, {i['optimizer']}, batch {b},"
        f" {s} tokens) = **{human_bytes(m['training_total'])}**: weights {bpp['weights']} B/param"
        f"{' (2 B 16-bit copy + 4 B fp32 master copy)' if mixed else ''} = {human_bytes(m['weights'])}; gradients"
        f" {bpp['gradients']} B/param = {human_bytes(m['gradients'])}; {opt} = {human_bytes(m['optimizer'])};"
        f" activations ≈ {human_bytes(m['activations'])}.",
        "* Activations are an **estimate** (Korthikanti et al. 2022, no recomputation, standard attention, 1-byte"
        f" dropout masks), e = bytes per element: per layer {fo['activations_per_layer']}, keeping every"
        " intermediate of the MLP (2·ff for GELU, 4·ff gated) for each expert a token runs; with e=2, A=kv=d, ff=4d"
        " and a GELU MLP it is the paper's s·b·d·(34 + 5·a·s/d); plus"
        f" {fo['activations_outside_blocks']} outside the blocks (fp32 logits). Here:"
        f" {human_bytes(act['per_layer'])} per layer. FlashAttention would drop the s² terms.",
        f"* **Inference memory** = weights at {4 if not mixed else 2} B/param ({human_bytes(m['inference_weights'])},"
        f" no gradients, optimizer or master copy{'; every expert stays loaded' if E else ''}) + KV cache at batch"
        f" {b}, {s} tokens ({human_bytes(m['kv_cache'])}) = **{human_bytes(m['inference'])}** (transient activations"
        " not counted).",
        f"* **KV cache** = {fo['kv_cache']} = 2 · {cfg.n_layer} · {b} · {s} · {cfg.kv_heads} · {cfg.head_dim} ·"
        f" {ELEMENT_BYTES[i['dtype']]} ="
        f" **{human_bytes(r['kv_cache_bytes'])}** ({r['kv_cache_bytes']:,} B). MHA ({cfg.n_head} KV heads)"
        f" {human_bytes(kv['mha'])}, GQA"
        f" ({kv['gqa_kv_heads']} KV heads) {human_bytes(kv['gqa'])}, MQA (1) {human_bytes(kv['mqa'])}.",
        f"* **FLOPs** (Kaplan et al. 2020): {fo['compute_params']} ="
        f" {f['compute_params']:,} (embedding lookups are not matmuls; the LM-head matmul runs even when tied"
        f"{'; a token runs only its experts and the router' if E else ''})."
        f" Per token: inference {fo['flops_per_token_inference']} = {human_flops(f['per_token_inference'])}, training"
        f" 3× that = {fo['flops_per_token_train']} = {human_flops(f['per_token_train'])}, with A = {cfg.attn_dim}."
        " The attention term 2·L·s·A counts the causal half of QKᵀ and A·V (a kernel computing the full s×s square"
        " does twice that).",
        f"* **Training on D = {i['tokens']:,} tokens**: {human_flops(f['train_total'])} ="
        f" **{r['gpu_hours']:,.0f} GPU-hours** at {i['tflops']:g} TFLOPS × {i['mfu']:.0%} utilisation"
        f" ({r['gpu_hours_at_full_utilisation']:,.0f} at 100%); GPU-hours = {fo['gpu_hours']}.",
    ]
    return "\n".join(lines)


def json_safe(value):
    """The report for gr.JSON: integers beyond 2^53 (training FLOPs) become floats, since neither orjson nor
    JavaScript holds them exactly; the command line prints them exactly."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2 ** 53:
        return float(value)
    return value
