"""Efficiency tab: the KV cache measured (latency vs length, bytes vs the calculator), GQA/MQA built from the loaded
model (cache bytes, ms per token, perplexity, optional uptraining), FlashAttention-2's tiling step by step and
benchmarked against standard attention and SDPA (time and measured peak memory), and a forward-pass profile by
component next to the FLOPs the calculator predicts.

Every number is measured when the button is pressed. The KV-cache timing, the attention benchmark and the profile
run through the room's run hub in its "measure" lane (one slot: one timing at a time, identical requests computed
once, each budgeted before it starts, the others shown their place in the queue; shared.py says why); GQA keeps
Gradio's "measure" queue slot.

    kv_cache.py  (a)    gqa.py  (b)    flash.py  (c)    profile.py  (d)    shared.py  Stop, lengths, colours
"""
from __future__ import annotations

import json
import re
from functools import partial

import gradio as gr

from tinygpt.efficiency import lengths_offered
from tinygpt.efficiency.measure import BENCH_LENGTHS, METHODS

from tinygpt.defaults import FLASH, GQA, KV_CACHE, PROFILE_TAB

from ..kit.commands import cli, cli_python
from ..kit.common import model_picker, on_model_change
from ..kit.registry import register
from ..kit.sessions import SessionStore
from .flash import bench_estimate, bench_explain, flash_trace, on_flash_bench, on_flash_step, on_flash_trace, step_by
from .gqa import default_groups, on_gqa, on_uptrain, variants_for
from .kv_cache import DEFAULT_PROMPT, on_kv_cache  # noqa: F401 - DEFAULT_PROMPT: a public name
from .profile import on_profile
from .shared import MEASURE, ROOM, STOP, default_lengths, fresh_stop, on_stop

__all__ = ["build", "command", "on_kv_cache", "on_gqa", "on_uptrain", "on_flash_trace", "on_flash_step", "step_by",
           "on_flash_bench", "bench_explain", "bench_estimate", "SECTIONS",
           "on_profile", "default_groups", "default_lengths", "variants_for",
           "fresh_stop", "on_stop"]


# the parts a link (or a course-map row) opens and scrolls to: `section=kv` ... `section=profile`
SECTIONS = {"kv": "efficiency-section-kv", "gqa": "efficiency-section-gqa", "flash": "efficiency-section-flash",
            "profile": "efficiency-section-profile"}
SECTION_TITLES = {"kv": "KV cache: latency vs sequence length, bytes vs the calculator",
                  "gqa": "GQA / MQA on the loaded model",
                  "flash": "FlashAttention-2: tiling step by step, and the benchmark",
                  "profile": "Forward-pass profile by component"}


def build(models, sessions: SessionStore, default_model: str = "gpt2"):
    """The Efficiency tab: KV cache, GQA/MQA, FlashAttention-2, forward-pass profile. Start-up values come from
    tinygpt.defaults (KV_CACHE, GQA, FLASH, PROFILE_TAB)."""
    with gr.Tab("Efficiency", id="efficiency"):
        gr.Markdown("Where inference time and memory go, **measured on this machine**: the KV cache, grouped-query"
                    " attention, FlashAttention's tiling, and a forward pass broken down by component. Heavy"
                    " measurements run one at a time; if another is running, yours waits and shows its place in"
                    " the queue (the same measurement asked by several people runs once, for all of them).")
        model_dd, fast, banner_md, card_md, model0 = model_picker(models, default_model, with_fast=True)
        for c in (model_dd, fast):
            c.change(partial(on_model_change, models), [model_dd, fast], [banner_md, card_md], api_visibility="private")
        c0 = model0.config
        K, G, F, P = KV_CACHE, GQA, FLASH, PROFILE_TAB

        with gr.Accordion(SECTION_TITLES["kv"], open=True, elem_id=SECTIONS["kv"]) as kv_section:
            with gr.Row():
                kv_prompt = gr.Textbox(K["prompt"], label="Prompt", scale=3)
                kv_n = gr.Slider(8, 256, K["n_new"], step=8, label="Tokens to time", scale=2)
                kv_go = gr.Button("Measure", scale=1)
                kv_stop = gr.Button("Stop", scale=1)
            kv_plot = gr.Plot(label="Latency per token", elem_id="eff-kv", elem_classes="tg-until-run")
            kv_md = gr.Markdown("*Press **Measure** to time greedy decoding with and without the cache (a few"
                                " seconds).*", elem_id="eff-kv-md")
            STOP.wire(kv_stop, sessions, kv_md)

        with gr.Accordion(SECTION_TITLES["gqa"], open=False, elem_id=SECTIONS["gqa"]) as gqa_section:
            gr.Markdown("Build MHA, GQA and MQA versions of the loaded model (key/value heads mean-pooled in groups,"
                        " the GQA paper's starting point) and measure each: the KV cache it allocates next to the"
                        " calculator's formula, ms per generated token, and perplexity on a reference passage.")
            with gr.Row():
                groups = gr.Number(default_groups(c0.n_head) if G["n_kv_head"] is None else G["n_kv_head"],
                                   label="KV heads for the GQA line (divides n_head)", precision=0,
                                   elem_id="eff-gqa-groups")
                gqa_lens = gr.Textbox(default_lengths(c0.block_size) if G["seq_lens"] is None else G["seq_lens"],
                                      label="Sequence lengths")
                gqa_batch = gr.Slider(1, 16, G["batch"], step=1, label="Batch")
                gqa_go = gr.Button("Measure MHA / GQA / MQA")
                STOP.wire(gr.Button("Stop"), sessions, gr.Markdown())
            gqa_plot = gr.Plot(label="KV cache and speed", elem_id="eff-gqa-plot", elem_classes="tg-until-run")
            gqa_table = gr.Dataframe(headers=["variant", "KV heads", "seq len", "bytes allocated", "calculator bytes",
                                              "equal", "ms / token", "perplexity"], interactive=False,
                                     elem_id="eff-gqa-table", elem_classes="tg-until-run")
            gqa_md = gr.Markdown("*Press **Measure MHA / GQA / MQA**: the table and plot appear here.*",
                                 elem_id="eff-gqa-md")
            gr.Markdown("**Uptraining (optional):** train a private copy of the grouped model briefly on text like"
                        " the model's own, and watch its held-out loss approach the original's.")
            with gr.Row():
                up_steps = gr.Slider(1, 200, G["uptrain_steps"], step=1, label="Steps", elem_id="eff-up-steps")
                up_lr = gr.Number(G["uptrain_lr"], label="Learning rate")
                up_go = gr.Button("Uptrain")
                up_status = gr.Markdown(elem_id="eff-up-status")
                STOP.wire(gr.Button("Stop"), sessions, up_status)
            up_plot = gr.Plot(label="Uptraining", elem_id="eff-up-plot", elem_classes="tg-until-run")
            up_md = gr.Markdown(elem_id="eff-up-md")

        with gr.Accordion(SECTION_TITLES["flash"], open=False, elem_id=SECTIONS["flash"]) as flash_section:
            offered, offer_note = lengths_offered()
            gr.Markdown("**Benchmark (the exercise):** standard attention vs the tiled version vs PyTorch's SDPA at"
                        " 1,024 / 4,096 / 16,384 tokens, 1 head, float32, causal. Each case runs in its own process"
                        f" so its peak memory is measured, not computed. {offer_note} Large cases take a while"
                        " (the tiled loop runs in Python); Stop ends the running case.")
            with gr.Row():
                b_lens = gr.CheckboxGroup(length_choices(offered), value=[
                    length_text(T) for T in F["bench_lengths"] if T in offered], label="Sequence lengths",
                    elem_id="eff-bench-lens")
                b_methods = gr.CheckboxGroup(list(METHODS), value=list(METHODS), label="Methods",
                                             elem_id="eff-bench-methods")
                b_hs = gr.Slider(8, 256, F["bench_head_size"], step=8, label="Head size")
                b_rep = gr.Slider(1, 5, F["bench_repeats"], step=1, label="Timed repeats (after 1 warm-up)")
            b_estimate = gr.Markdown(bench_estimate(b_lens.value, b_methods.value, b_hs.value, b_rep.value),
                                     elem_id="eff-bench-estimate")
            with gr.Row():
                b_go = gr.Button("Run benchmark", variant="primary")
                b_status = gr.Markdown()
                STOP.wire(gr.Button("Stop"), sessions, b_status)
            b_table = gr.Dataframe(headers=["T", "method", "ms", "peak extra MiB (measured)", "predicted MiB"],
                                   interactive=False, elem_id="eff-bench-table", elem_classes="tg-until-run")
            b_plot = gr.Plot(label="Time and memory", elem_id="eff-bench-plot", elem_classes="tg-until-run")
            b_md = gr.Markdown(elem_id="eff-bench-md")
            gr.Markdown("**The tiling, step by step:** a small random example: the queries are cut into blocks"
                        " (rows), the keys and values into blocks (columns). For each Q block, the K/V blocks are"
                        " visited one by one, keeping a running max m and sum l per query instead of the whole score"
                        " matrix.")
            with gr.Row():
                fl_T = gr.Slider(2, 64, F["tokens"], step=1, label="Tokens")
                fl_bq = gr.Slider(1, 32, F["block_q"], step=1, label="Query block")
                fl_bk = gr.Slider(1, 32, F["block_k"], step=1, label="Key/value block")
                fl_hs = gr.Slider(1, 64, F["head_size"], step=1, label="Head size")
                fl_causal = gr.Checkbox(F["causal"], label="Causal")
                fl_seed = gr.Number(F["seed"], label="Seed", precision=0)
                fl_go = gr.Button("Trace")
            # the default example traced at start-up: the tiles and the first step show before anything is pressed
            trace0, fig0, md0, check0 = flash_trace(F["tokens"], F["block_q"], F["block_k"], F["head_size"],
                                                    F["causal"], F["seed"])
            trace = gr.State(trace0)
            fl_check = gr.Markdown(check0, elem_id="eff-flash-check")
            with gr.Row():
                fl_prev = gr.Button("◀ Previous")
                fl_step = gr.Slider(1, len(trace0["steps"]), 1, step=1, label="Step", elem_id="eff-flash-step")
                fl_next = gr.Button("Next ▶")
            with gr.Row():
                fl_plot = gr.Plot(fig0, label="Tiles", elem_id="eff-flash-plot", scale=1)
                fl_md = gr.Markdown(md0, elem_id="eff-flash-md")

        with gr.Accordion(SECTION_TITLES["profile"], open=False, elem_id=SECTIONS["profile"]) as profile_section:
            gr.Markdown("Time one forward pass with hooks on the modules, at several sequence lengths, and set each"
                        " component's share of the time next to its share of the FLOPs (the calculator's formulas).")
            with gr.Row():
                p_batch = gr.Slider(1, 64, P["batch"], step=1, label="Batch")
                p_lens = gr.Textbox(default_lengths(c0.block_size) if P["seq_len"] is None else str(P["seq_len"]),
                                    label="Sequence lengths", elem_id="eff-prof-lens")
                p_rep = gr.Slider(1, 20, P["repeats"], step=1, label="Repeats (median; 2 warm-up runs excluded)")
                p_go = gr.Button("Profile", variant="primary")
                p_status = gr.Markdown()
                STOP.wire(gr.Button("Stop"), sessions, p_status)
            p_plot = gr.Plot(label="Time vs FLOPs share", elem_id="eff-prof-plot", elem_classes="tg-until-run")
            p_table = gr.Dataframe(headers=["T", "component", "ms", "time %", "FLOPs", "FLOPs %", "GFLOP/s"],
                                   interactive=False, elem_id="eff-prof-table", elem_classes="tg-until-run")
            with gr.Accordion("Explain", open=True):
                p_md = gr.Markdown("*Press **Profile**: the time and FLOPs shares per component appear here, with"
                                   " what they mean.*", elem_id="eff-prof-md")

        kv_go.click(partial(on_kv_cache, models, sessions), [model_dd, fast, kv_prompt, kv_n], [kv_plot, kv_md],
                    api_name="kv_cache", **ROOM)
        gqa_go.click(partial(on_gqa, models, sessions), [model_dd, fast, groups, gqa_lens, gqa_batch],
                     [gqa_plot, gqa_table, gqa_md], api_name="gqa", **MEASURE)
        up_go.click(partial(on_uptrain, models, sessions), [model_dd, groups, up_steps, up_lr],
                    [up_status, up_plot, up_md], api_name="gqa_uptrain", concurrency_id="gqa_uptrain",
                    concurrency_limit=None)  # the room's run hub schedules uptraining runs
        fl_go.click(on_flash_trace, [fl_T, fl_bq, fl_bk, fl_hs, fl_causal, fl_seed],
                    [trace, fl_step, fl_plot, fl_md, fl_check], api_name="flash_attention")
        fl_step.change(on_flash_step, [trace, fl_step], [fl_plot, fl_md], api_visibility="private")
        fl_prev.click(partial(step_by, delta=-1), [trace, fl_step], fl_step, api_visibility="private", queue=False)
        fl_next.click(partial(step_by, delta=1), [trace, fl_step], fl_step, api_visibility="private", queue=False)
        bench_in = [b_lens, b_methods, b_hs, b_rep]
        for c in bench_in:  # the estimate follows the choices before anything runs
            c.change(bench_estimate, bench_in, b_estimate, api_visibility="private", queue=False)
        b_go.click(partial(on_flash_bench, sessions), bench_in, [b_table, b_plot, b_md],
                   api_name="flash_benchmark", **ROOM)
        p_go.click(partial(on_profile, models, sessions), [model_dd, fast, p_batch, p_lens, p_rep],
                   [p_plot, p_table, p_md], api_name="profile", **ROOM)
        register("efficiency", fields={
            "model": model_dd, "fast": fast, "kv_prompt": kv_prompt, "kv_tokens": kv_n, "groups": groups,
            "gqa_lengths": gqa_lens, "gqa_batch": gqa_batch, "flash_tokens": fl_T, "flash_block_q": fl_bq,
            "flash_block_k": fl_bk, "flash_head_size": fl_hs, "flash_causal": fl_causal, "flash_seed": fl_seed,
            "bench_lengths": b_lens, "bench_methods": b_methods,
            "bench_head_size": b_hs, "bench_repeats": b_rep, "profile_batch": p_batch, "profile_lengths": p_lens,
            "profile_repeats": p_rep}, command=command,
            run={"kv": kv_go, "gqa": gqa_go, "flash": b_go, "profile": p_go},
            refresh=(bench_estimate, bench_in, [b_estimate]),
            sections={"kv": kv_section, "gqa": gqa_section, "flash": flash_section, "profile": profile_section})


def length_text(T: int) -> str:
    return f"{T:,}"


def length_choices(offered) -> list:
    """Every benchmark length as a choice (value "1,024", as the API has always taken); one this machine cannot
    hold says so in its label (running it answers with the reason)."""
    return [(length_text(T) if T in offered else f"{T:,} (not offered here)", length_text(T)) for T in BENCH_LENGTHS]


def _python(code: str) -> str:
    return cli_python(code)


def _q(value) -> str:
    """A Python literal in double quotes (json's, which Python reads): no '"'"' in the shell-quoted line."""
    return json.dumps(value)


def _load(v: dict) -> str:
    dtype = ", dtype=torch.bfloat16" if v.get("fast") else ""
    return f"import json, torch, tinygpt; m, tok = tinygpt.load_model({_q(str(v['model']))}{dtype}); "


def kv_command(v: dict) -> str:
    """The KV-cache measurement: tinygpt.efficiency.kv_cache_latency on the same model, prompt and length."""
    return _python(_load(v) + "from tinygpt.efficiency import kv_cache_latency; "
                   "from tinygpt.sampling import encode_prompt; "
                   f"r = kv_cache_latency(m, encode_prompt(tok, {_q(str(v['kv_prompt']))}), {int(v['kv_tokens'])}); "
                   'print(json.dumps({k: r[k] for k in ("cached_s", "nocache_s", "same_tokens")}))')


def gqa_command(v: dict) -> str:
    """MHA / GQA / MQA measured: tinygpt.efficiency.compare_kv_heads with the tab's KV heads, lengths and batch."""
    lens = [int(t) for t in re.split(r"[,;\s]+", str(v["gqa_lengths"])) if t.isdigit()]
    return _python(_load(v) + "from tinygpt.efficiency import compare_kv_heads; "
                   "from tinygpt.interpret.pruning import default_reference; "
                   f"heads = sorted({{m.config.n_head, {int(v['groups'])}, 1}}, reverse=True); "
                   f"r = compare_kv_heads(m, tok, heads, {lens}, default_reference(m.info.name), "
                   f"{int(v['gqa_batch'])}); "
                   'print(json.dumps([{k: x[k] for k in ("label", "n_kv_head", "perplexity")} for x in r]))')


def flash_command(v: dict) -> str:
    """The benchmark: tinygpt.efficiency.measure_attention for every ticked length and method (a child process
    each, as in the tab)."""
    lens = [int(str(t).replace(",", "")) for t in (v.get("bench_lengths") or [])]
    methods = [m for m in METHODS if m in (v.get("bench_methods") or [])]
    if not lens or not methods:
        raise ValueError("tick at least one sequence length and one method")
    return _python("import json; from tinygpt.efficiency import measure_attention; "
                   f"print(json.dumps([measure_attention(m, T, head_dim={int(v['bench_head_size'])}, "
                   f"repeats={int(v['bench_repeats'])}) for T in {lens} for m in {_q(methods)}]))")


def profile_command(v: dict) -> str | None:
    """The forward-pass profile as `python -m tinygpt profile`, one line per sequence length."""
    lens = [t for t in re.split(r"[,;\s]+", str(v["profile_lengths"])) if t]
    return "\n".join(cli("profile", model=v["model"], batch=int(v["profile_batch"]), seq_len=int(t),
                         repeats=int(v["profile_repeats"]), dtype="bf16" if v["fast"] else None, json=True)
                     for t in lens if t.isdigit()) or None


SECTION_COMMANDS = {"kv": kv_command, "gqa": gqa_command, "flash": flash_command, "profile": profile_command}


def command(v: dict) -> str | None:
    """The section's own command (v["section"]: the section a link opened or whose button ran): the profile as
    `python -m tinygpt profile`, the KV cache, GQA and the benchmark as `python -c` lines calling the same
    tinygpt.efficiency functions. Without a section, every section's command under a comment naming it."""
    section = v.get("section")
    if section in SECTION_COMMANDS:
        return SECTION_COMMANDS[section](v)
    parts = []
    for name, make in SECTION_COMMANDS.items():
        try:
            line = make(v)
        except ValueError as e:
            line = f"# ({e})"
        if line:
            parts.append(f"# {SECTION_TITLES[name]}\n{line}")
    return "\n\n".join(parts) or None
