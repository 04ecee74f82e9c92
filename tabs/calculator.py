"""Parameters & compute tab: exact parameter counts, training/inference memory, FLOPs, GPU-hours and KV cache
(MHA / GQA / MQA) for any GPT shape, with every formula written out. Nothing is ever allocated: all numbers
come from tinygpt.compute.estimate, the same function behind `python -m tinygpt params --json`."""
from __future__ import annotations

import math
from functools import lru_cache

import gradio as gr
import pandas as pd

from tinygpt import GPTConfig, count_parameters, parameter_breakdown
from tinygpt.compute import A100_TFLOPS, DEFAULT_MFU, DEFAULT_TOKENS, estimate, gqa_compare_heads, kv_cache_bytes

from . import share
from .common import UserError, human, human_bytes, human_flops, new_figure, parse_float, user_errors

PRESET_CHOICES = [
    ("GPT-2 small (124M)", "gpt2"), ("GPT-2 medium (350M)", "gpt2-medium"), ("GPT-2 large (774M)", "gpt2-large"),
    ("GPT-2 XL (1.5B)", "gpt2-xl"), ("GPT-3 (175B)", "gpt3"), ("Embedded model (tiny-shakespeare)", "tiny-shakespeare"),
    ("LLaMA-7B-like (32 layers, d=4096, 32 heads)", "llama-7b"),
]
FAMILY = ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt3"]
PART_COLORS = {"weights": "#4c6ef5", "gradients": "#15aabf", "optimizer": "#f59f00", "activations": "#e8590c",
               "kv_cache": "#7048e8"}


def whole(value, name: str) -> int:
    """A whole number from a gr.Number (which may hand over 12.0); sign and size are checked by the config."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number.") from None
    if not math.isfinite(v) or not v.is_integer():
        raise UserError(f"{name} must be a whole number (got {value!r}).")
    return int(v)


def preset_values(name: str) -> tuple:
    """Field values for a preset: n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied,
    FFN multiplier, sequence length (the full context)."""
    c = GPTConfig.from_preset(str(name or ""))  # a cleared dropdown gives None: report it as unknown
    return (c.n_layer, c.n_embd, c.n_head, c.kv_heads, c.block_size, c.vocab_size, c.bias, c.tie_weights,
            c.ffn_dim / c.n_embd, c.block_size)


def make_config(n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult) -> GPTConfig:
    """GPTConfig from the form; GPTConfig.validate() supplies the plain sentence for impossible shapes."""
    mult = parse_float(ffn_mult, "FFN width multiplier")
    if mult <= 0:
        raise UserError("FFN width multiplier must be above 0 (4 is GPT-2's).")
    d = whole(n_embd, "n_embd")
    return GPTConfig(n_layer=whole(n_layer, "n_layer"), n_embd=d, n_head=whole(n_head, "n_head"),
                     n_kv_head=None if n_kv_head in (None, "") else whole(n_kv_head, "n_kv_head"),
                     block_size=whole(block_size, "block_size"), vocab_size=whole(vocab_size, "vocab_size"),
                     n_inner=round(mult * d), bias=bool(bias), tie_weights=bool(tied))


def calculate(n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult,
              dtype, optimizer, batch_size, seq_len, tokens, tflops, mfu):
    """(config, report dict). Raises ValueError (incl. UserError) with a plain message."""
    cfg = make_config(n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult)
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
        f"* **Pre-training the 7B LLaMA-like shape ({human(n7)} parameters) on 1T tokens**: 6·N·D ="
        f" {human_flops(6 * f['compute_params'] * 10 ** 12)}; with the attention term at 4096 tokens"
        f" **{human_flops(f['train_total'])}**. On A100s (312 TFLOPS): **{e7['gpu_hours_at_full_utilisation']:,.0f}"
        f" GPU-hours** at 100% utilisation, **{e7['gpu_hours']:,.0f}** at {DEFAULT_MFU:.0%} (a typical MFU).",
        f"* **KV cache of the 7B shape at 4096 tokens, fp16, batch 1**: 2 (K,V) · {l7.n_layer} layers · 4096 tokens"
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
    rows += [
        ("one block (sum of the per-block rows)", "4d² + 2·d·kv + 2·d·ff (+ biases, LN)", p["per_block"]),
        (f"all {L} blocks", "L · one block", L * p["per_block"]),
        ("attention (all blocks)", "L · (Q + K + V + out)", p["attention"]),
        ("feed-forward (all blocks)", "L · (c_fc + c_proj)", p["feed_forward"]),
        ("TOTAL (exact)", "embeddings + blocks + ln_f + LM head", p["total"]),
        (f"12·L·d² approximation ({ap['error_vs_total']:+.1%} vs total, {ap['error_vs_non_embedding']:+.1%}"
         " vs non-embedding)", f"12·{L}·{cfg.n_embd}²", ap["12_n_layer_d2"]),
    ]
    return [[name, formula, f"{count:,}", human(count)] for name, formula, count in rows]


def config_markdown(cfg: GPTConfig, r: dict) -> str:
    p, m, f, i = r["params"], r["memory_bytes"], r["flops"], r["inputs"]
    bpp, act, kv = r["bytes_per_param"], r["activation_bytes"], r["kv_cache_by_attention"]
    mixed = i["dtype"] != "fp32"
    opt = ("AdamW: m and v in fp32 = 8 B/parameter, plus one 4-byte step counter per tensor"
           if i["optimizer"] == "adamw" else
           "SGD with momentum: one fp32 momentum buffer = 4 B/parameter (plain SGD, momentum 0, keeps 0 B)")
    s, b = i["seq_len"], i["batch_size"]
    return "\n".join([
        f"### This configuration: {human(p['total'])} parameters ({p['total']:,})",
        f"V = vocab {cfg.vocab_size:,}, d = n_embd {cfg.n_embd}, L = n_layer {cfg.n_layer}, a = n_head {cfg.n_head},"
        f" kv = n_kv_head·head_dim = {cfg.kv_heads}·{cfg.head_dim}, ff = FFN width {cfg.ffn_dim}.",
        f"* Attention holds **{r['shares']['attention']:.1%}** and the feed-forward"
        f" **{r['shares']['feed_forward']:.1%}** of the block parameters. The 12·L·d² rule"
        f" (4d² attention + 8d² MLP per block) is {r['approximation']['error_vs_total']:+.1%} off the exact"
        " total (it ignores embeddings, biases and LayerNorms).",
        f"* **Training memory** ({i['dtype']}{', mixed precision' if mixed else ''}, {i['optimizer']}, batch {b},"
        f" {s} tokens) = **{human_bytes(m['training_total'])}**: weights {bpp['weights']} B/param"
        f"{' (2 B 16-bit copy + 4 B fp32 master copy)' if mixed else ''} = {human_bytes(m['weights'])}; gradients"
        f" {bpp['gradients']} B/param = {human_bytes(m['gradients'])}; {opt} = {human_bytes(m['optimizer'])};"
        f" activations ≈ {human_bytes(m['activations'])}.",
        "* Activations are an **estimate** (Korthikanti et al. 2022, no recomputation, standard attention, 1-byte"
        " dropout masks), e = bytes per element: per layer e·s·b·(6d + 2kv + 2ff) + 2e·a·s²·b + (2s·b·d + a·s²·b),"
        " which for 16-bit (e=2), kv=d, ff=4d is the paper's s·b·d·(34 + 5·a·s/d); plus 2e·s·b·d + 4·s·b·V"
        f" outside the blocks (fp32 logits). Here: {human_bytes(act['per_layer'])} per layer. FlashAttention"
        " would drop the s² terms.",
        f"* **Inference memory** = weights at {4 if not mixed else 2} B/param ({human_bytes(m['inference_weights'])},"
        f" no gradients, optimizer or master copy) + KV cache at batch {b}, {s} tokens"
        f" ({human_bytes(m['kv_cache'])}) = **{human_bytes(m['inference'])}** (transient activations not counted).",
        f"* **KV cache** = 2 · L · batch · seq · n_kv_head · head_dim · bytes ="
        f" **{human_bytes(r['kv_cache_bytes'])}** ({r['kv_cache_bytes']:,} B). MHA ({cfg.n_head} KV heads)"
        f" {human_bytes(kv['mha'])}, GQA"
        f" ({kv['gqa_kv_heads']} KV heads) {human_bytes(kv['gqa'])}, MQA (1) {human_bytes(kv['mqa'])}.",
        f"* **FLOPs** (Kaplan et al. 2020): N = non-embedding parameters + the LM head's V·d ="
        f" {f['compute_params']:,} (embedding lookups are not matmuls; the LM-head matmul runs even when tied)."
        f" Per token: inference 2N + 2·L·s·d = {human_flops(f['per_token_inference'])}, training"
        f" 3× that = 6N + 6·L·s·d = {human_flops(f['per_token_train'])}. The attention term 2·L·s·d counts the"
        " causal half of QKᵀ and A·V (a kernel computing the full s×s square does twice that).",
        f"* **Training on D = {i['tokens']:,} tokens**: {human_flops(f['train_total'])} ="
        f" **{r['gpu_hours']:,.0f} GPU-hours** at {i['tflops']:g} TFLOPS × {i['mfu']:.0%} utilisation"
        f" ({r['gpu_hours_at_full_utilisation']:,.0f} at 100%); GPU-hours = FLOPs / (TFLOPS·10¹²·MFU) / 3600.",
    ])


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


def kv_frame(cfg: GPTConfig, r: dict, points: int = 40) -> pd.DataFrame:
    """KV-cache GiB against sequence length for MHA, GQA and MQA at the chosen batch size and dtype."""
    i = r["inputs"]
    top = max(cfg.block_size, i["seq_len"])
    g = gqa_compare_heads(cfg)
    rows = []
    for label, heads in ((f"MHA ({cfg.n_head} KV heads)", cfg.n_head), (f"GQA ({g} KV heads)", g),
                         ("MQA (1 KV head)", 1)):
        for k in range(points + 1):
            seq = round(top * k / points)
            rows.append({"sequence length": seq, "GiB": kv_cache_bytes(cfg, i["batch_size"], seq, i["dtype"], heads)
                         / 2 ** 30, "attention": label})
    return pd.DataFrame(rows)


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
    """Fill the form with a preset's fields."""
    return preset_values(name)


@user_errors
def on_params(n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult,
              dtype, optimizer, batch_size, seq_len, tokens, tflops, mfu):
    """(summary markdown, breakdown rows, memory table, KV table, report dict); nothing is allocated."""
    cfg, r = calculate(n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult,
                       dtype, optimizer, batch_size, seq_len, tokens, tflops, mfu)
    md = config_markdown(cfg, r) + "\n\n" + exercise_answers()
    return md, breakdown_rows(cfg, r), memory_frame(r), kv_frame(cfg, r), json_safe(r)


def build():
    """The Parameters & compute tab (needs no model: everything is computed from the configuration)."""
    with gr.Tab("Parameters & compute", id="calculator"):
        gr.Markdown("How many parameters, how much memory, how many FLOPs and GPU-hours, how big a KV cache — for"
                    " any GPT shape, with the formulas. Pick a preset or type your own configuration."
                    " Nothing is allocated, so even GPT-3 answers instantly.")
        v = preset_values("gpt2")
        preset = gr.Dropdown(PRESET_CHOICES, value="gpt2", label="Preset (fills the fields below)")
        with gr.Row():
            n_layer = gr.Number(v[0], label="n_layer", precision=0, elem_id="calc-n-layer")
            n_embd = gr.Number(v[1], label="n_embd (d)", precision=0)
            n_head = gr.Number(v[2], label="n_head", precision=0)
            n_kv_head = gr.Number(v[3], label="n_kv_head (= n_head: MHA, 1: MQA, between: GQA)", precision=0)
            block_size = gr.Number(v[4], label="block_size (context)", precision=0)
            vocab_size = gr.Number(v[5], label="vocab_size", precision=0)
        with gr.Row():
            bias = gr.Checkbox(v[6], label="Biases")
            tied = gr.Checkbox(v[7], label="Tied embeddings (LM head = wte)")
            ffn_mult = gr.Number(v[8], label="FFN width multiplier (ff = round(mult·d))")
        with gr.Row():
            dtype = gr.Radio(["fp32", "fp16", "bf16"], value="fp32",
                             label="dtype (fp16/bf16 = mixed precision with fp32 master weights)")
            optimizer = gr.Radio([("AdamW", "adamw"), ("SGD with momentum", "sgd")], value="adamw",
                                 label="Optimizer")
            batch_size = gr.Number(1, label="Batch size", precision=0)
            seq_len = gr.Number(v[9], label="Sequence length", precision=0)
        with gr.Row():
            tokens = gr.Number(DEFAULT_TOKENS, label="Training tokens D")
            tflops = gr.Number(A100_TFLOPS, label="GPU peak TFLOPS (A100: 312)")
            mfu = gr.Slider(0.05, 1.0, DEFAULT_MFU, step=0.01, label="Utilisation (MFU)")
        go = gr.Button("Calculate", variant="primary")
        fields = [n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult]
        inputs = fields + [dtype, optimizer, batch_size, seq_len, tokens, tflops, mfu]
        first = on_params(*v[:9], "fp32", "adamw", 1, v[9], DEFAULT_TOKENS, A100_TFLOPS, DEFAULT_MFU)
        summary = gr.Markdown(first[0], elem_id="calc-summary")
        table = gr.Dataframe(first[1], headers=["part", "formula", "count (exact)", "human"],
                             datatype=["str", "str", "str", "str"], label="Parameter breakdown",
                             interactive=False)
        with gr.Row():
            mem_plot = gr.BarPlot(first[2], x="what", y="GiB", color="part", color_map=PART_COLORS,
                                  sort=["training", "inference"], title="Memory: training vs inference (GiB)",
                                  x_title="", label="Memory")
            kv_plot = gr.LinePlot(first[3], x="sequence length", y="GiB", color="attention",
                                  title="KV cache vs sequence length (GiB)", label="KV cache")
        gr.Plot(family_figure(), label="Parameters vs depth/width (log scale)", format="png")
        with gr.Accordion("All numbers (JSON, same as `python -m tinygpt params --json`)", open=False):
            out_json = gr.JSON(first[4], label="params")
        outputs = [summary, table, mem_plot, kv_plot, out_json]
        go.click(on_params, inputs, outputs, api_name="params")
        preset.change(on_preset, [preset], fields + [seq_len], api_visibility="private").then(
            on_params, inputs, outputs, api_visibility="private")
        names = ["n_layer", "n_embd", "n_head", "n_kv_head", "block_size", "vocab_size", "bias", "tied", "ffn_mult",
                 "dtype", "optimizer", "batch_size", "seq_len", "tokens", "tflops", "mfu"]
        share.register("calculator", fields=dict(zip(names, inputs)), command=command, run=go,
                       refresh=(on_params, inputs, outputs))


def command(v: dict) -> str:
    """`python -m tinygpt params --json` with the flags that differ from GPT-2 small and the CLI's defaults: it
    prints the same JSON as the tab (the tab's very large integers arrive as floats, see json_safe)."""
    cfg, r = calculate(*[v[k] for k in ("n_layer", "n_embd", "n_head", "n_kv_head", "block_size", "vocab_size",
                                        "bias", "tied", "ffn_mult", "dtype", "optimizer", "batch_size", "seq_len",
                                        "tokens", "tflops", "mfu")])
    base, i = GPTConfig.from_preset("gpt2"), r["inputs"]
    shape = {k: getattr(cfg, k) for k in ("n_layer", "n_embd", "n_head", "block_size", "vocab_size")
             if getattr(cfg, k) != getattr(base, k)}
    return share.cli(
        "params", **shape, n_kv_head=cfg.kv_heads if cfg.kv_heads != cfg.n_head else None,
        ffn_mult=float(v["ffn_mult"]) if cfg.ffn_dim != 4 * cfg.n_embd else None, no_bias=not cfg.bias,
        untied=not cfg.tie_weights, batch_size=i["batch_size"] if i["batch_size"] != 1 else None,
        seq_len=i["seq_len"] if i["seq_len"] != cfg.block_size else None,
        dtype=i["dtype"] if i["dtype"] != "fp32" else None, optimizer=i["optimizer"] if i["optimizer"] != "adamw"
        else None, tokens=i["tokens"] if i["tokens"] != DEFAULT_TOKENS else None,
        tflops=i["tflops"] if i["tflops"] != A100_TFLOPS else None, mfu=i["mfu"] if i["mfu"] != DEFAULT_MFU else None,
        json=True)
