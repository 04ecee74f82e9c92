"""Efficiency tab: the KV cache measured (latency vs length, bytes vs the calculator), GQA/MQA built from the loaded
model (cache bytes, ms per token, perplexity, optional uptraining), FlashAttention-2's tiling step by step and
benchmarked against standard attention and SDPA (time and measured peak memory), and a forward-pass profile by
component next to the FLOPs the calculator predicts.

Every number is measured when the button is pressed. Heavy measurements (GQA, the attention benchmark, the profile)
share one queue slot (concurrency_id "measure"): one runs at a time and the others show their queue position.

    kv_cache.py  (a)    gqa.py  (b)    flash.py  (c)    profile.py  (d)    shared.py  Stop, lengths, colours
"""
from __future__ import annotations

import re
from functools import partial

import gradio as gr

from tinygpt.efficiency import lengths_offered
from tinygpt.efficiency.measure import BENCH_LENGTHS, METHODS

from ..kit.commands import cli
from ..kit.common import model_picker, on_model_change
from ..kit.registry import register
from ..kit.sessions import SessionStore
from .flash import bench_explain, on_flash_bench, on_flash_step, on_flash_trace, step_by
from .gqa import default_groups, on_gqa, on_uptrain, variants_for
from .kv_cache import DEFAULT_PROMPT, on_kv_cache
from .profile import on_profile
from .shared import MEASURE, STOP, default_lengths, fresh_stop, on_stop

__all__ = ["build", "command", "on_kv_cache", "on_gqa", "on_uptrain", "on_flash_trace", "on_flash_step", "step_by",
           "on_flash_bench", "bench_explain", "on_profile", "default_groups", "default_lengths", "variants_for",
           "fresh_stop", "on_stop"]


def build(models, sessions: SessionStore, default_model: str = "gpt2"):
    """The Efficiency tab: KV cache, GQA/MQA, FlashAttention-2, forward-pass profile."""
    with gr.Tab("Efficiency", id="efficiency"):
        gr.Markdown("Where inference time and memory go, **measured on this machine**: the KV cache, grouped-query"
                    " attention, FlashAttention's tiling, and a forward pass broken down by component. Heavy"
                    " measurements run one at a time; if another is running, yours waits and shows its place in"
                    " the queue.")
        model_dd, fast, banner_md, card_md, model0 = model_picker(models, default_model, with_fast=True)
        for c in (model_dd, fast):
            c.change(partial(on_model_change, models), [model_dd, fast], [banner_md, card_md], api_visibility="private")
        c0 = model0.config

        with gr.Accordion("KV cache: latency vs sequence length, bytes vs the calculator", open=True):
            with gr.Row():
                kv_prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt", scale=3)
                kv_n = gr.Slider(8, 256, 64, step=8, label="Tokens to time", scale=2)
                kv_go = gr.Button("Measure", scale=1)
            kv_plot = gr.Plot(label="Latency per token", elem_id="eff-kv")
            kv_md = gr.Markdown(elem_id="eff-kv-md")

        with gr.Accordion("GQA / MQA on the loaded model", open=False):
            gr.Markdown("Build MHA, GQA and MQA versions of the loaded model (key/value heads mean-pooled in groups,"
                        " the GQA paper's starting point) and measure each: the KV cache it allocates next to the"
                        " calculator's formula, ms per generated token, and perplexity on a reference passage.")
            with gr.Row():
                groups = gr.Number(default_groups(c0.n_head), label="KV heads for the GQA line (divides n_head)",
                                   precision=0, elem_id="eff-gqa-groups")
                gqa_lens = gr.Textbox(default_lengths(c0.block_size), label="Sequence lengths")
                gqa_batch = gr.Slider(1, 16, 1, step=1, label="Batch")
                gqa_go = gr.Button("Measure MHA / GQA / MQA")
                STOP.wire(gr.Button("Stop"), sessions, gr.Markdown())
            gqa_plot = gr.Plot(label="KV cache and speed", elem_id="eff-gqa-plot")
            gqa_table = gr.Dataframe(headers=["variant", "KV heads", "seq len", "bytes allocated", "calculator bytes",
                                              "equal", "ms / token", "perplexity"], interactive=False,
                                     elem_id="eff-gqa-table")
            gqa_md = gr.Markdown(elem_id="eff-gqa-md")
            gr.Markdown("**Uptraining (optional):** train a private copy of the grouped model briefly on text like"
                        " the model's own, and watch its held-out loss approach the original's.")
            with gr.Row():
                up_steps = gr.Slider(1, 200, 30, step=1, label="Steps", elem_id="eff-up-steps")
                up_lr = gr.Number(1e-3, label="Learning rate")
                up_go = gr.Button("Uptrain")
                up_status = gr.Markdown(elem_id="eff-up-status")
                STOP.wire(gr.Button("Stop"), sessions, up_status)
            up_plot = gr.Plot(label="Uptraining", elem_id="eff-up-plot")
            up_md = gr.Markdown(elem_id="eff-up-md")

        with gr.Accordion("FlashAttention-2: tiling step by step, and the benchmark", open=False):
            gr.Markdown("A small random example: the queries are cut into blocks (rows), the keys and values into"
                        " blocks (columns). For each Q block, the K/V blocks are visited one by one, keeping a running"
                        " max m and sum l per query instead of the whole score matrix.")
            with gr.Row():
                fl_T = gr.Slider(2, 64, 16, step=1, label="Tokens")
                fl_bq = gr.Slider(1, 32, 4, step=1, label="Query block")
                fl_bk = gr.Slider(1, 32, 4, step=1, label="Key/value block")
                fl_hs = gr.Slider(1, 64, 8, step=1, label="Head size")
                fl_causal = gr.Checkbox(True, label="Causal")
                fl_seed = gr.Number(0, label="Seed", precision=0)
                fl_go = gr.Button("Trace")
            trace = gr.State(None)
            fl_check = gr.Markdown(elem_id="eff-flash-check")
            with gr.Row():
                fl_prev = gr.Button("◀ Previous")
                fl_step = gr.Slider(1, 2, 1, step=1, label="Step", elem_id="eff-flash-step")
                fl_next = gr.Button("Next ▶")
            with gr.Row():
                fl_plot = gr.Plot(label="Tiles", elem_id="eff-flash-plot", scale=1)
                fl_md = gr.Markdown(elem_id="eff-flash-md")
            offered, offer_note = lengths_offered()
            gr.Markdown("**Benchmark (the exercise):** standard attention vs the tiled version vs PyTorch's SDPA at"
                        " 1,024 / 4,096 / 16,384 tokens, 1 head, float32, causal. Each case runs in its own process"
                        f" so its peak memory is measured, not computed. {offer_note} Large cases take a while"
                        " (the tiled loop runs in Python); Stop ends the running case.")
            with gr.Row():
                b_lens = gr.CheckboxGroup([f"{T:,}" for T in BENCH_LENGTHS if T in offered],
                                          value=[f"{T:,}" for T in BENCH_LENGTHS if T in offered][:1],
                                          label="Sequence lengths", elem_id="eff-bench-lens")
                b_methods = gr.CheckboxGroup(list(METHODS), value=list(METHODS), label="Methods",
                                             elem_id="eff-bench-methods")
                b_hs = gr.Slider(8, 256, 64, step=8, label="Head size")
                b_rep = gr.Slider(1, 5, 1, step=1, label="Timed repeats (after 1 warm-up)")
            with gr.Row():
                b_go = gr.Button("Run benchmark", variant="primary")
                b_status = gr.Markdown()
                STOP.wire(gr.Button("Stop"), sessions, b_status)
            b_table = gr.Dataframe(headers=["T", "method", "ms", "peak extra MiB (measured)", "predicted MiB"],
                                   interactive=False, elem_id="eff-bench-table")
            b_plot = gr.Plot(label="Time and memory", elem_id="eff-bench-plot")
            b_md = gr.Markdown(elem_id="eff-bench-md")

        with gr.Accordion("Forward-pass profile by component", open=False):
            gr.Markdown("Time one forward pass with hooks on the modules, at several sequence lengths, and set each"
                        " component's share of the time next to its share of the FLOPs (the calculator's formulas).")
            with gr.Row():
                p_batch = gr.Slider(1, 64, 1, step=1, label="Batch")
                p_lens = gr.Textbox(default_lengths(c0.block_size), label="Sequence lengths", elem_id="eff-prof-lens")
                p_rep = gr.Slider(1, 20, 5, step=1, label="Repeats (median; 2 warm-up runs excluded)")
                p_go = gr.Button("Profile", variant="primary")
                p_status = gr.Markdown()
                STOP.wire(gr.Button("Stop"), sessions, p_status)
            p_plot = gr.Plot(label="Time vs FLOPs share", elem_id="eff-prof-plot")
            p_table = gr.Dataframe(headers=["T", "component", "ms", "time %", "FLOPs", "FLOPs %", "GFLOP/s"],
                                   interactive=False, elem_id="eff-prof-table")
            with gr.Accordion("Explain", open=True):
                p_md = gr.Markdown(elem_id="eff-prof-md")

        kv_go.click(partial(on_kv_cache, models), [model_dd, fast, kv_prompt, kv_n], [kv_plot, kv_md],
                    api_name="kv_cache", concurrency_id="model")
        gqa_go.click(partial(on_gqa, models, sessions), [model_dd, fast, groups, gqa_lens, gqa_batch],
                     [gqa_plot, gqa_table, gqa_md], api_name="gqa", **MEASURE)
        up_go.click(partial(on_uptrain, models, sessions), [model_dd, groups, up_steps, up_lr],
                    [up_status, up_plot, up_md], api_name="gqa_uptrain", concurrency_id="train", concurrency_limit=1)
        fl_go.click(on_flash_trace, [fl_T, fl_bq, fl_bk, fl_hs, fl_causal, fl_seed],
                    [trace, fl_step, fl_plot, fl_md, fl_check], api_name="flash_attention")
        fl_step.change(on_flash_step, [trace, fl_step], [fl_plot, fl_md], api_visibility="private")
        fl_prev.click(partial(step_by, delta=-1), [trace, fl_step], fl_step, api_visibility="private", queue=False)
        fl_next.click(partial(step_by, delta=1), [trace, fl_step], fl_step, api_visibility="private", queue=False)
        b_go.click(partial(on_flash_bench, sessions), [b_lens, b_methods, b_hs, b_rep], [b_table, b_plot, b_md],
                   api_name="flash_benchmark", **MEASURE)
        p_go.click(partial(on_profile, models, sessions), [model_dd, fast, p_batch, p_lens, p_rep],
                   [p_plot, p_table, p_md], api_name="profile", **MEASURE)
        register("efficiency", fields={
            "model": model_dd, "fast": fast, "kv_prompt": kv_prompt, "kv_tokens": kv_n, "groups": groups,
            "gqa_lengths": gqa_lens, "gqa_batch": gqa_batch, "flash_tokens": fl_T, "flash_block_q": fl_bq,
            "flash_block_k": fl_bk, "flash_head_size": fl_hs, "flash_causal": fl_causal, "flash_seed": fl_seed,
            "bench_head_size": b_hs, "bench_repeats": b_rep, "profile_batch": p_batch, "profile_lengths": p_lens,
            "profile_repeats": p_rep}, command=command, run=p_go)


def command(v: dict) -> str:
    """The forward-pass profile as `python -m tinygpt profile`, one line per sequence length (the KV-cache, GQA and
    FlashAttention sections have no command of their own: their functions are in tinygpt.efficiency)."""
    lens = [t for t in re.split(r"[,;\s]+", str(v["profile_lengths"])) if t]
    return "\n".join(cli("profile", model=v["model"], batch=int(v["profile_batch"]), seq_len=int(t),
                               repeats=int(v["profile_repeats"]), dtype="bf16" if v["fast"] else None, json=True)
                     for t in lens if t.isdigit()) or None
