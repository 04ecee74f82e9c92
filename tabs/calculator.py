"""Parameters & compute tab: exact parameter counts, training/inference memory, FLOPs, GPU-hours and KV cache
(MHA / GQA / MQA) for any GPT shape — GPT-2 blocks or LLaMA-style ones (decoupled head size, gated MLP, RMSNorm,
RoPE, untied head, q/k/v biases, Mixture-of-Experts) — with every formula written out. A Hugging Face config.json
(Hub id, upload or paste) fills the form. Nothing is ever allocated: all numbers come from
tinygpt.compute.estimate, the same function behind `python -m tinygpt params --json`."""
from __future__ import annotations

import math
from functools import lru_cache, partial

import gradio as gr
import pandas as pd

from tinygpt import GPTConfig, count_parameters, parameter_breakdown
from tinygpt.compute import (
    A100_TFLOPS,
    DEFAULT_MFU,
    DEFAULT_TOKENS,
    ELEMENT_BYTES,
    estimate,
    gqa_compare_heads,
    kv_cache_bytes,
)
from tinygpt.hf_config import (
    fetch_hub_config,
    from_hf_config,
    hf_config_notes,
    hf_family,
    load_config_json,
    parse_config_json,
)

from tinygpt.defaults import PARAMS

from .kit.commands import cli
from .kit.registry import register
from .kit.common import UserError, human, human_bytes, human_flops, new_figure, parse_float, user_errors

PRESET_TITLES = [
    ("GPT-2 small", "gpt2"), ("GPT-2 medium", "gpt2-medium"), ("GPT-2 large", "gpt2-large"), ("GPT-2 XL", "gpt2-xl"),
    ("GPT-3 Small", "gpt3-small"), ("GPT-3 Medium", "gpt3-medium"), ("GPT-3 Large", "gpt3-large"),
    ("GPT-3 XL (Table 2.1: 24 heads × 128 = 3072-wide attention; labelled 1.3B)", "gpt3-xl"),
    ("GPT-3 2.7B", "gpt3-2.7b"), ("GPT-3 6.7B", "gpt3-6.7b"), ("GPT-3 13B (d 5140, 40 heads × 128)", "gpt3-13b"),
    ("GPT-3 175B", "gpt3"), ("LLaMA-7B", "llama-7b"), ("Mistral-7B (GQA: 8 KV heads)", "mistral-7b"),
    ("Llama-3-8B shape", "llama3-8b"), ("Mixtral-8x7B (MoE, top-2 of 8)", "mixtral-8x7b"),
    ("Embedded model (tiny-shakespeare)", "tiny-shakespeare"),
]
FAMILY = ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt3"]
PART_COLORS = {"weights": "#4c6ef5", "gradients": "#15aabf", "optimizer": "#f59f00", "activations": "#e8590c",
               "kv_cache": "#7048e8"}
QKV_BIAS = {None: "auto", True: "on", False: "off"}  # the form's radio values for GPTConfig.qkv_bias
ARCH_DEFAULTS = (0, "gelu", "layernorm", "learned", "auto", 0, 1)  # GPT-2: what an older API call leaves out


def preset_label(title: str, name: str) -> str:
    """Dropdown label with the preset's computed size (total and active for a Mixture-of-Experts)."""
    c = count_parameters(GPTConfig.from_preset(name))
    size = human(c["total"]) if c["active"] == c["total"] else f"{human(c['total'])} total, {human(c['active'])} active"
    return f"{title} — {size}"


CUSTOM = "custom"  # the preset box's value when the fields hold no preset's shape (a link, a config.json, edits)
PRESET_CHOICES = [(preset_label(t, n), n) for t, n in PRESET_TITLES] + [("Custom shape (the fields below)", CUSTOM)]


def whole(value, name: str) -> int:
    """A whole number from a gr.Number (which may hand over 12.0); sign and size are checked by the config."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number.") from None
    if not math.isfinite(v) or not v.is_integer():
        raise UserError(f"{name} must be a whole number (got {value!r}).")
    return int(v)


def form_values(c: GPTConfig) -> tuple:
    """The form's values for a config: n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied,
    FFN multiplier, sequence length (the full context), then the architecture options: head_dim (0 = n_embd /
    n_head; a browser's empty number box sends 0), mlp, norm, pos_encoding, q/k/v biases ("auto" / "on" / "off"),
    n_experts, moe_top_k."""
    return (c.n_layer, c.n_embd, c.n_head, c.kv_heads, c.block_size, c.vocab_size, c.bias, c.tie_weights,
            c.ffn_dim / c.n_embd, c.block_size, c.head_size or 0, c.mlp, c.norm, c.pos_encoding, QKV_BIAS[c.qkv_bias],
            c.n_experts, c.moe_top_k)


def preset_values(name: str) -> tuple:
    """form_values of a preset (a cleared dropdown gives None: reported as unknown)."""
    return form_values(GPTConfig.from_preset(str(name or "")))


def shape_key(values: tuple) -> tuple:
    """The part of form_values that is the model's shape (everything but the sequence length, index 9)."""
    return tuple(values[:9]) + tuple(values[10:])


@lru_cache(maxsize=1)
def preset_shapes() -> dict:
    """shape_key -> preset name, for every preset the box offers (the first name wins for equal shapes)."""
    out: dict = {}
    for _, name in PRESET_TITLES:
        out.setdefault(shape_key(preset_values(name)), name)
    return out


def matching_preset(n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult, seq_len=None,
                    *arch) -> str:
    """The preset whose shape the form holds (form order, as preset_values), or CUSTOM; an invalid form is CUSTOM
    too (the summary says what is wrong)."""
    try:
        cfg = make_config(n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult, *arch)
        cfg.validate()
    except (ValueError, TypeError):
        return CUSTOM
    return preset_shapes().get(shape_key(form_values(cfg)), CUSTOM)


def make_config(n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult,
                head_dim=None, mlp="gelu", norm="layernorm", pos_encoding="learned", qkv_bias="auto", n_experts=0,
                moe_top_k=1) -> GPTConfig:
    """GPTConfig from the form; GPTConfig.validate() supplies the plain sentence for impossible shapes."""
    mult = parse_float(ffn_mult, "FFN width multiplier")
    if mult <= 0:
        raise UserError("FFN width multiplier must be above 0 (4 is GPT-2's).")
    if qkv_bias not in ("auto", "on", "off", None):
        raise UserError(f"q/k/v biases must be auto, on or off (got {qkv_bias!r}).")
    d = whole(n_embd, "n_embd")
    head_size = None if head_dim in (None, "") else whole(head_dim, "head_dim")
    if head_size is not None and head_size < 0:
        raise UserError(f"head_dim must be a positive whole number, or 0 for n_embd / n_head (got {head_dim!r}).")
    head_size = head_size or None  # 0 (or empty) = n_embd / n_head, as in GPT-2
    n_experts = 0 if n_experts in (None, "") else whole(n_experts, "n_experts")
    return GPTConfig(n_layer=whole(n_layer, "n_layer"), n_embd=d, n_head=whole(n_head, "n_head"),
                     n_kv_head=None if n_kv_head in (None, "") else whole(n_kv_head, "n_kv_head"),
                     block_size=whole(block_size, "block_size"), vocab_size=whole(vocab_size, "vocab_size"),
                     n_inner=round(mult * d), bias=bool(bias), tie_weights=bool(tied),
                     head_size=head_size,
                     mlp=mlp or "gelu", norm=norm or "layernorm", pos_encoding=pos_encoding or "learned",
                     qkv_bias={"on": True, "off": False}.get(qkv_bias), n_experts=n_experts,
                     moe_top_k=whole(moe_top_k, "moe_top_k") if n_experts else 1)


def calculate(n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult,
              dtype, optimizer, batch_size, seq_len, tokens, tflops, mfu, *arch):
    """(config, report dict); arch = head_dim, mlp, norm, pos_encoding, qkv_bias, n_experts, moe_top_k.
    Raises ValueError (incl. UserError) with a plain message."""
    cfg = make_config(n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult, *arch)
    seq = cfg.block_size if seq_len in (None, "") else whole(seq_len, "Sequence length")
    report = estimate(cfg, batch_size=whole(batch_size, "Batch size"), seq_len=seq, dtype=dtype,
                      optimizer=optimizer, tokens=whole(tokens, "Training tokens D"),
                      tflops=parse_float(tflops, "Peak TFLOPS"), mfu=parse_float(mfu, "Utilisation (MFU)"))
    return cfg, report


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


# ---- plots -------------------------------------------------------------------------------------------
# Memory and KV cache are Gradio native plots: the server only sends a small table and the browser draws
# it, which keeps every handler far under 100 ms (a matplotlib render alone takes longer on a busy CPU).
def memory_frame(r: dict) -> pd.DataFrame:
    """Rows (what, part, GiB) for the stacked bars: training = weights + gradients + optimizer + activations,
    inference = weights + KV cache."""
    m = r["memory_bytes"]
    rows = [("training", part, m[part]) for part in ("weights", "gradients", "optimizer", "activations")]
    rows += [("inference", "weights", m["inference_weights"]), ("inference", "kv_cache", m["kv_cache"])]
    return pd.DataFrame([{"what": w, "part": p, "GiB": b / 2 ** 30} for w, p, b in rows])


KV_COLORS = ("#e8590c", "#1c7ed6", "#2b8a3e")  # MHA, GQA, MQA


def kv_lines(cfg: GPTConfig) -> list:
    """[(legend label, KV heads)] for the KV-cache chart, from the config: MHA keeps a K/V head per query head,
    GQA the config's own grouping (or the divisor of n_head nearest n_head/4), MQA one; distinct, most heads first
    (a config with 1 or 2 heads has fewer lines)."""
    g = gqa_compare_heads(cfg)
    out = [(f"MHA ({cfg.n_head} KV heads)", cfg.n_head)]
    if 1 < g < cfg.n_head:
        out.append((f"GQA ({g} KV heads)", g))
    if cfg.n_head > 1:
        out.append(("MQA (1 KV head)", 1))
    return out


def kv_frame(cfg: GPTConfig, r: dict, points: int = 40) -> pd.DataFrame:
    """KV-cache GiB against sequence length for MHA, GQA and MQA at the chosen batch size and dtype (each value is
    tinygpt.compute.kv_cache_bytes / 2^30)."""
    i = r["inputs"]
    top = max(cfg.block_size, i["seq_len"])
    rows = []
    for label, heads in kv_lines(cfg):
        for k in range(points + 1):
            seq = round(top * k / points)
            rows.append({"sequence length": seq, "GiB": kv_cache_bytes(cfg, i["batch_size"], seq, i["dtype"], heads)
                         / 2 ** 30, "attention": label})
    return pd.DataFrame(rows)


def kv_plot(frame: pd.DataFrame) -> dict:
    """The KV-cache chart's update: its data, a colour per legend label of THIS shape, and shown. A native plot
    in the browser keeps the legend (colour domain) of the data it was first drawn with: after a shape with other
    head counts, the old legend stayed and the lines with new labels were not drawn. It is drawn afresh when it is
    shown again, so a calculation whose legend differs hides it first (kv_hide) and this update shows it."""
    labels = list(dict.fromkeys(frame["attention"]))
    return gr.update(value=frame, color_map=dict(zip(labels, KV_COLORS)), visible=True)


def shown_labels(payload) -> list:
    """The legend labels of the KV chart's current value, as the browser sends it (PlotData or its dict)."""
    if payload is None:
        return []
    d = payload if isinstance(payload, dict) else getattr(payload, "model_dump", lambda: {})()
    cols, data = d.get("columns") or [], d.get("data") or []
    if "attention" not in cols:
        return []
    k = cols.index("attention")
    return list(dict.fromkeys(row[k] for row in data))


def kv_hide(current, *inputs):
    """Before a calculation: hide the KV chart when this shape's legend differs from the one drawn (kv_plot then
    shows it, drawn afresh); otherwise leave it (no flicker)."""
    try:
        cfg = make_config(*inputs[:9], *inputs[16:])
        cfg.validate()
    except (ValueError, TypeError):
        return gr.skip()
    new = [label for label, _ in kv_lines(cfg)]
    return gr.skip() if shown_labels(current) == new else gr.update(visible=False)


@lru_cache(maxsize=1)
def family_figure():
    """Parameters against depth and width for the GPT-2 family and GPT-3, log-log. It does not depend on the
    form, so it is drawn once (matplotlib) and never re-rendered by a handler."""
    fig = new_figure(8, 3.2)
    axes = fig.subplots(1, 2, sharey=True)
    pts = [(n, GPTConfig.from_preset(n)) for n in FAMILY]
    totals = [count_parameters(c)["total"] for _, c in pts]
    for ax, attr, label in ((axes[0], "n_layer", "depth: n_layer"), (axes[1], "n_embd", "width: n_embd (d)")):
        xs = [getattr(c, attr) for _, c in pts]
        ax.plot(xs, totals, "o-", ms=4, color="#4c6ef5")
        for (n, _), x, t in zip(pts, xs, totals):
            last = n == FAMILY[-1]  # GPT-3's label goes to the left so it stays inside the axes
            ax.annotate(f"{n}\n{human(t)}", (x, t), fontsize=7, xytext=(-6 if last else 5, -14),
                        ha="right" if last else "left", textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sorted(set(xs)), [str(x) for x in sorted(set(xs))], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("parameters (log scale)")
    axes[0].set_ylim(6e7, 4e11)
    fig.suptitle("Parameters vs depth and width: GPT-2 small/medium/large/XL and GPT-3", fontsize=10)
    return fig


def json_safe(value):
    """The report for gr.JSON: integers beyond 2^53 (training FLOPs) become floats, since neither orjson nor
    JavaScript holds them exactly; the command line prints them exactly."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2 ** 53:
        return float(value)
    return value


# ---- handlers ------------------------------------------------------------------------------------------
@user_errors
def on_preset(name):
    """Fill the form with a preset's fields (form_values order), and say where they came from. 'custom' keeps the
    fields as they are."""
    if name == CUSTOM:
        return (*[gr.skip()] * len(preset_values(PARAMS["preset"])),
                "A custom shape: type the fields, then press Calculate.")
    return (*preset_values(name), f"Preset **{name}** (sources in tinygpt/config.py).")


def config_status(d: dict, where: str) -> str:
    cfg = from_hf_config(d)
    notes = "".join(f"\n* {n}" for n in hf_config_notes(d))
    return (f"Read the config.json of **{where}** ({hf_family(d)}): {human(count_parameters(cfg)['total'])}"
            f" parameters. The form now holds its shape; press Calculate after changing it.{notes}")


def config_values(d: dict, where: str) -> tuple:
    """form_values of a config.json dict, then a status line (ValueError naming a missing field)."""
    return (*form_values(from_hf_config(d)), config_status(d, where))


@user_errors
def on_config_json(text, file=None):
    """Fill the form from an uploaded config.json (file path) or, without one, the pasted JSON text."""
    if file:
        return config_values(load_config_json(file), "the uploaded file")
    return config_values(parse_config_json(text), "the pasted text")


@user_errors
def on_hub_id(fetch, hub_id):
    """Fill the form from a Hub model's config.json (only that file is downloaded; fetch = fetch_hub_config)."""
    try:
        d = fetch(str(hub_id or "").strip())
    except ConnectionError as e:  # offline: one sentence, not a traceback
        raise UserError(str(e)) from None
    return config_values(d, str(hub_id).strip())


@user_errors
def on_params(n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult,
              dtype, optimizer, batch_size, seq_len, tokens, tflops, mfu, head_dim=None, mlp="gelu",
              norm="layernorm", pos_encoding="learned", qkv_bias="auto", n_experts=0, moe_top_k=1):
    """(summary markdown, breakdown rows, memory table, KV table, report dict); nothing is allocated.
    The architecture options come last (an older call with the first 16 inputs gets GPT-2's)."""
    cfg, r = calculate(n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult,
                       dtype, optimizer, batch_size, seq_len, tokens, tflops, mfu,
                       head_dim, mlp, norm, pos_encoding, qkv_bias, n_experts, moe_top_k)
    md = config_markdown(cfg, r) + "\n\n" + exercise_answers()
    return md, breakdown_rows(cfg, r), memory_frame(r), kv_frame(cfg, r), json_safe(r)


def on_view(*inputs):
    """on_params for the page: the same five outputs, the KV-cache chart as an update that redraws it for this
    shape's legend (kv_plot)."""
    md, rows, mem, kv, js = on_params(*inputs)
    return md, rows, mem, kv_plot(kv), js


def form_of(inputs: list) -> tuple:
    """The form's values (preset_values order) out of on_params' inputs."""
    shape, run, arch = inputs[:9], inputs[9:16], inputs[16:]
    return (*shape, run[3], *arch)


def on_preset_name(*form):
    """The preset box names the shape the fields hold (or 'custom'); it never refills the fields."""
    return matching_preset(*form)


def on_link_view(*inputs):
    """After a link or the course map filled the form: the results, the preset box naming the shape, and where
    the shape came from. The KV chart was hidden by the link (register(remount=...)): it is shown again, also
    when the link's shape is invalid (the summary then says why)."""
    name = matching_preset(*form_of(inputs))
    source = (f"Preset **{name}** (sources in tinygpt/config.py), from the link." if name != CUSTOM else
              "A custom shape, from the link (no preset has exactly these fields).")
    try:
        return (*on_view(*inputs), name, source)
    except gr.Error as e:
        return (f"**{e.message}**", gr.skip(), gr.skip(), gr.update(visible=True), gr.skip(), name, source)


def build(fetch_config=fetch_hub_config):
    """The Parameters & compute tab (needs no model: everything is computed from the configuration).
    fetch_config(hub_id) -> config.json dict; the Hub's by default."""
    with gr.Tab("Parameters & compute", id="calculator"):
        gr.Markdown("How many parameters, how much memory, how many FLOPs and GPU-hours, how big a KV cache — for"
                    " any GPT shape or any Hugging Face model of the GPT-2, LLaMA, Mistral, Qwen2, Gemma or Mixtral"
                    " families, with the formulas. Pick a preset, start from a config.json, or type your own"
                    " configuration. Nothing is allocated, so even GPT-3 answers instantly.")
        P = PARAMS  # the start-up values: tinygpt.defaults, as `python -m tinygpt params` starts
        v = preset_values(P["preset"])
        preset = gr.Dropdown(PRESET_CHOICES, value=P["preset"], label="Preset (fills the fields below)",
                             elem_id="calc-preset")
        with gr.Accordion("Start from a Hugging Face model (Hub id, or its config.json)", open=False):
            with gr.Row():
                hub_id = gr.Textbox(label="Hub id (downloads only config.json, no weights)",
                                    placeholder="mistralai/Mistral-7B-v0.1", elem_id="calc-hub-id", scale=3)
                hub_go = gr.Button("Fetch config.json", elem_id="calc-hub-go", scale=1)
            with gr.Row():
                upload = gr.File(label="Upload a config.json", file_types=[".json"], type="filepath",
                                 elem_id="calc-config-file")
                with gr.Column():
                    pasted = gr.Textbox(label="…or paste a config.json", lines=6, max_lines=12,
                                        placeholder='{"model_type": "llama", "hidden_size": 4096, ...}',
                                        elem_id="calc-config-text")
                    paste_go = gr.Button("Use the pasted config.json", elem_id="calc-config-go")
        source = gr.Markdown(f"Preset **{P['preset']}** (sources in tinygpt/config.py).", elem_id="calc-source")
        with gr.Row():
            n_layer = gr.Number(v[0], label="n_layer", precision=0, elem_id="calc-n-layer")
            n_embd = gr.Number(v[1], label="n_embd (d)", precision=0, elem_id="calc-n-embd")
            n_head = gr.Number(v[2], label="n_head", precision=0, elem_id="calc-n-head")
            n_kv_head = gr.Number(v[3], label="n_kv_head (= n_head: MHA, 1: MQA, between: GQA)", precision=0,
                                  elem_id="calc-n-kv-head")
            block_size = gr.Number(v[4], label="block_size (context)", precision=0, elem_id="calc-block-size")
            vocab_size = gr.Number(v[5], label="vocab_size", precision=0, elem_id="calc-vocab-size")
        with gr.Row():
            bias = gr.Checkbox(v[6], label="Biases")
            tied = gr.Checkbox(v[7], label="Tied embeddings (LM head = wte)")
            ffn_mult = gr.Number(v[8], label="FFN width multiplier (ff = round(mult·d))", elem_id="calc-ffn-mult")
        with gr.Row():
            head_dim = gr.Number(v[10], label="head_dim (0 = n_embd / n_head)", precision=0,
                                 elem_id="calc-head-dim")
            mlp = gr.Radio([("GELU (2 matrices)", "gelu"), ("gated SwiGLU (3)", "gated")], value=v[11], label="MLP",
                           elem_id="calc-mlp")
            norm = gr.Radio([("LayerNorm", "layernorm"), ("RMSNorm", "rmsnorm")], value=v[12], label="Norm",
                            elem_id="calc-norm")
            pos_encoding = gr.Radio([("learned", "learned"), ("sinusoidal", "sinusoidal"), ("RoPE", "rope"),
                                     ("none", "none")], value=v[13], label="Positions", elem_id="calc-pos")
        with gr.Row():
            qkv_bias = gr.Radio([("as Biases", "auto"), ("on (Qwen2)", "on"), ("off", "off")], value=v[14],
                                label="q/k/v biases", elem_id="calc-qkv-bias")
            n_experts = gr.Number(v[15], label="Experts per block (0 = dense MLP)", precision=0,
                                  elem_id="calc-n-experts")
            moe_top_k = gr.Number(v[16], label="Experts per token (top-k)", precision=0, elem_id="calc-moe-top-k")
        with gr.Row():
            dtype = gr.Radio(["fp32", "fp16", "bf16"], value=P["dtype"],
                             label="dtype (fp16/bf16 = mixed precision with fp32 master weights)")
            optimizer = gr.Radio([("AdamW", "adamw"), ("SGD with momentum", "sgd")], value=P["optimizer"],
                                 label="Optimizer")
            batch_size = gr.Number(P["batch_size"], label="Batch size", precision=0)
            seq_len = gr.Number(v[9] if P["seq_len"] is None else P["seq_len"], label="Sequence length",
                                precision=0, elem_id="calc-seq-len")
        with gr.Row():
            tokens = gr.Number(P["tokens"], label="Training tokens D")
            tflops = gr.Number(P["tflops"], label=f"GPU peak TFLOPS (A100: {A100_TFLOPS:g})")
            mfu = gr.Slider(0.05, 1.0, P["mfu"], step=0.01, label="Utilisation (MFU)")
        go = gr.Button("Calculate", variant="primary")
        fields = [n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult]
        arch = [head_dim, mlp, norm, pos_encoding, qkv_bias, n_experts, moe_top_k]
        # new inputs go at the END, so API calls written for the first 16 inputs keep working
        inputs = fields + [dtype, optimizer, batch_size, seq_len, tokens, tflops, mfu] + arch
        form = fields + [seq_len] + arch  # what a preset or a config.json fills (form_values order)
        first = on_params(*[c.value for c in inputs])
        summary = gr.Markdown(first[0], elem_id="calc-summary")
        # wrapped, with the widths set: the exact counts and the TOTAL row fit without scrolling sideways
        table = gr.Dataframe(first[1], headers=["part", "formula", "count (exact)", "human"],
                             datatype=["str", "str", "str", "str"], label="Parameter breakdown",
                             interactive=False, wrap=True, column_widths=["30%", "38%", "20%", "12%"],
                             max_height=1200, elem_id="calc-breakdown")  # every row: TOTAL without scrolling
        with gr.Row():
            mem_plot = gr.BarPlot(first[2], x="what", y="GiB", color="part", color_map=PART_COLORS,
                                  sort=["training", "inference"], title="Memory: training vs inference (GiB)",
                                  x_title="", label="Memory")
            kv_chart = gr.LinePlot(first[3], x="sequence length", y="GiB", color="attention",
                                   color_map=kv_plot(first[3])["color_map"],
                                   title="KV cache vs sequence length (GiB)", label="KV cache", elem_id="calc-kv")
        gr.Plot(family_figure(), label="Parameters vs depth/width (log scale)", format="png")
        with gr.Accordion("All numbers (JSON, same as `python -m tinygpt params --json`)", open=False):
            out_json = gr.JSON(first[4], label="params")
        outputs = [summary, table, mem_plot, kv_chart, out_json]
        # every calculation ends with the preset box naming the shape shown (a preset's, or "custom"); the box
        # refills the fields only when the user picks in it (.input), never when a calculation names the shape
        name = dict(fn=on_preset_name, inputs=form, outputs=[preset], api_visibility="private", queue=False)
        hide = dict(fn=kv_hide, inputs=[kv_chart] + inputs, outputs=[kv_chart], api_visibility="private",
                    queue=False)
        view = dict(fn=on_view, inputs=inputs, outputs=outputs, api_visibility="private")
        go.click(**hide).then(on_view, inputs, outputs, api_name="params").then(**name)
        preset.input(on_preset, [preset], form + [source], api_visibility="private").then(**hide).then(**view)
        hub_go.click(partial(on_hub_id, fetch_config), [hub_id], form + [source], api_name="params_from_hub").then(
            **hide).then(**view).then(**name)
        hub_id.submit(partial(on_hub_id, fetch_config), [hub_id], form + [source], api_visibility="private").then(
            **hide).then(**view).then(**name)
        for event, args in ((paste_go.click, [pasted]), (upload.upload, [pasted, upload])):
            event(on_config_json, args, form + [source], api_visibility="private").then(**hide).then(
                **view).then(**name)
        names = ["n_layer", "n_embd", "n_head", "n_kv_head", "block_size", "vocab_size", "bias", "tied", "ffn_mult",
                 "dtype", "optimizer", "batch_size", "seq_len", "tokens", "tflops", "mfu"] + list(SHARE_ARCH)
        register("calculator", fields=dict(zip(names, inputs)), command=command, run=go,
                 refresh=(on_link_view, inputs, outputs + [preset, source]), remount=[kv_chart])


# the architecture inputs (after the 16 original ones) and their form defaults (a link may omit them)
SHARE_ARCH = {"head_dim": 0, "mlp": "gelu", "norm": "layernorm", "pos_encoding": "learned", "qkv_bias": "auto",
              "n_experts": 0, "moe_top_k": 1}


def command(v: dict) -> str:
    """`python -m tinygpt params --json` with the flags that differ from GPT-2 small and the CLI's defaults: it
    prints the same JSON as the tab (the tab's very large integers arrive as floats, see json_safe)."""
    cfg, r = calculate(*[v[k] for k in ("n_layer", "n_embd", "n_head", "n_kv_head", "block_size", "vocab_size",
                                        "bias", "tied", "ffn_mult", "dtype", "optimizer", "batch_size", "seq_len",
                                        "tokens", "tflops", "mfu")], *[v.get(k, d) for k, d in SHARE_ARCH.items()])
    base, i = GPTConfig.from_preset("gpt2"), r["inputs"]
    shape = {k: getattr(cfg, k) for k in ("n_layer", "n_embd", "n_head", "block_size", "vocab_size")
             if getattr(cfg, k) != getattr(base, k)}
    return cli(
        "params", **shape, n_kv_head=cfg.kv_heads if cfg.kv_heads != cfg.n_head else None,
        ffn_mult=float(v["ffn_mult"]) if cfg.ffn_dim != 4 * cfg.n_embd else None, no_bias=not cfg.bias,
        untied=not cfg.tie_weights, batch_size=i["batch_size"] if i["batch_size"] != 1 else None,
        seq_len=i["seq_len"] if i["seq_len"] != cfg.block_size else None,
        dtype=i["dtype"] if i["dtype"] != "fp32" else None, optimizer=i["optimizer"] if i["optimizer"] != "adamw"
        else None, tokens=i["tokens"] if i["tokens"] != DEFAULT_TOKENS else None,
        tflops=i["tflops"] if i["tflops"] != A100_TFLOPS else None, mfu=i["mfu"] if i["mfu"] != DEFAULT_MFU else None,
        head_dim=cfg.head_size, mlp=cfg.mlp if cfg.mlp != "gelu" else None,
        norm=cfg.norm if cfg.norm != "layernorm" else None,
        pos_encoding=cfg.pos_encoding if cfg.pos_encoding != "learned" else None,
        qkv_bias=cfg.qkv_bias if cfg.qkv_bias else None, no_qkv_bias=cfg.qkv_bias is False and cfg.bias,
        n_experts=cfg.n_experts or None, moe_top_k=cfg.moe_top_k if cfg.n_experts else None, json=True)
