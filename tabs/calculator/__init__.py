"""Parameters & compute tab: exact parameter counts, training/inference memory, FLOPs, GPU-hours and KV cache
(MHA / GQA / MQA) for any GPT shape — GPT-2 blocks or LLaMA-style ones (decoupled head size, gated MLP, RMSNorm,
RoPE, untied head, q/k/v biases, Mixture-of-Experts) — with every formula written out. A Hugging Face config.json
(Hub id, upload or paste) fills the form. Nothing is ever allocated: all numbers come from
tinygpt.compute.estimate, the same function behind `python -m tinygpt params --json`.

    handlers.py  presets, the form's values <-> GPTConfig, calculate, and the event handlers (Calculate, the
                 preset box, config.json, links)
    tables.py    the summary markdown, the parameter breakdown, the exercise answers, json_safe
    figures.py   the memory and KV-cache charts (native plots) and the parameters-vs-size figure (matplotlib)
"""
from __future__ import annotations

from functools import partial

import gradio as gr

from tinygpt import GPTConfig
from tinygpt.compute import A100_TFLOPS, DEFAULT_MFU, DEFAULT_TOKENS
from tinygpt.hf_config import fetch_hub_config

from tinygpt.defaults import PARAMS

from ..kit.commands import cli
from ..kit.registry import register
from .figures import (FAMILY, KV_COLORS, PART_COLORS, family_figure, kv_frame, kv_lines, kv_plot, memory_frame,
                      shown_labels)
from .handlers import (ARCH_DEFAULTS, CUSTOM, PRESET_CHOICES, PRESET_TITLES, QKV_BIAS, calculate, config_status,
                       config_values, form_of, form_values, kv_hide, make_config, matching_preset, on_config_json,
                       on_hub_id, on_link_view, on_params, on_preset, on_preset_name, on_view, preset_label,
                       preset_shapes, preset_values, shape_key, whole)
from .tables import architecture_line, breakdown_rows, config_markdown, exercise_answers, json_safe

# every name of the one-module calculator stays importable from tabs.calculator
__all__ = ["build", "command", "SHARE_ARCH", "fetch_hub_config",
           "PRESET_TITLES", "QKV_BIAS", "ARCH_DEFAULTS", "CUSTOM", "PRESET_CHOICES", "preset_label", "whole",
           "form_values", "preset_values", "shape_key", "preset_shapes", "matching_preset", "make_config", "calculate",
           "exercise_answers", "breakdown_rows", "architecture_line", "config_markdown", "json_safe",
           "FAMILY", "PART_COLORS", "KV_COLORS", "memory_frame", "kv_lines", "kv_frame", "kv_plot", "shown_labels",
           "kv_hide", "family_figure",
           "on_preset", "config_status", "config_values", "on_config_json", "on_hub_id", "on_params", "on_view",
           "form_of", "on_preset_name", "on_link_view"]


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
