"""Train-from-scratch tab: two tiny GPTs trained side by side (default: causal mask on vs off) with live
loss/accuracy curves, then 500-token samples from each and an explanation that reads the live numbers.

Also the place for the LayerNorm and 1/sqrt(d_k) ablations: each run has its own switches. Either run can be a
Mixture-of-Experts (experts, top-k, load-balancing weight per run): presets compare a dense model with an MoE of
equal active parameters, and an MoE with and without the load-balancing loss; the expert load is drawn over
training and the text's tokens are coloured by the expert that took them.

    run.py      the form checked, the runs trained (on_train)
    figures.py  curves, samples, Explain
    moe.py      the Mixture-of-Experts views (expert load, routing, presets)
"""
from __future__ import annotations

from functools import partial

import gradio as gr

from tinygpt.data import CORPORA
from tinygpt.moe import match_active_params

from ..kit.commands import cli, cli_python
from ..kit.registry import register
from ..kit.sessions import SessionStore
from ..kit.stream import run_controls
from .figures import POS_LABELS, describe_run
from .moe import PRESET_KEYS, check_moe, ffn_column, on_route, preset_values
from .run import STOP, UPLOAD, check_pos, check_settings, on_train, run_config

__all__ = ["build", "command", "on_train", "on_route", "describe_run", "preset_values", "PRESET_KEYS", "UPLOAD",
           "STOP"]


def switches_column(name: str, causal: bool) -> tuple:
    """One run's architecture switches: (causal mask, LayerNorm, 1/√d_k scaling, position encoding)."""
    with gr.Column():
        gr.Markdown(f"**Run {name}**")
        return (gr.Checkbox(causal, label="causal mask"), gr.Checkbox(True, label="LayerNorm"),
                gr.Checkbox(True, label="1/√d_k scaling"),
                gr.Dropdown(list(POS_LABELS), value="learned", label="position encoding",
                            elem_id=f"tr-{name.lower()}-pos"))


def build(sessions: SessionStore):
    with gr.Tab("Train from scratch", id="train"):
        gr.Markdown("Train two tiny GPTs **side by side** on the same data from the same initial weights. By default"
                    " run A has the causal mask and run B does not: watch B's loss collapse towards zero and its"
                    " text fall apart. Switch off LayerNorm or the 1/√d_k scaling to see why they matter, or give both"
                    " runs the causal mask and a different position encoding each (learned vs RoPE vs none).")
        with gr.Row():
            corpus = gr.Radio([*CORPORA, UPLOAD], value=list(CORPORA)[0], label="Corpus")
            upload = gr.File(label="Your .txt (for 'Upload')", file_types=[".txt"], type="filepath")
            tokenizer = gr.Radio(["characters", "GPT-2 BPE"], value="characters", label="Tokenizer")
        with gr.Row():
            n_layer = gr.Slider(1, 8, 4, step=1, label="Layers")
            n_head = gr.Slider(1, 8, 4, step=1, label="Heads")
            n_embd = gr.Slider(16, 256, 128, step=16, label="d_model")
            context = gr.Slider(16, 256, 64, step=16, label="Context")
        with gr.Row():
            embd_p = gr.Slider(0, 0.5, 0.0, step=0.05, label="Embedding dropout")
            attn_p = gr.Slider(0, 0.5, 0.0, step=0.05, label="Attention dropout")
            resid_p = gr.Slider(0, 0.5, 0.0, step=0.05, label="Residual dropout")
        with gr.Row():
            steps = gr.Slider(10, 3000, 500, step=10, label="Steps", elem_id="tr-steps")
            batch = gr.Slider(1, 64, 12, step=1, label="Batch size")
            lr = gr.Number(2e-3, label="Learning rate")
            sample_len = gr.Slider(50, 1000, 500, step=50, label="Sample length", elem_id="tr-sample-len")
            seed = gr.Number(1337, label="Seed", precision=0)
        with gr.Row():
            a_causal, a_ln, a_scale, a_pos = switches_column("A", causal=True)
            b_causal, b_ln, b_scale, b_pos = switches_column("B", causal=False)
        with gr.Row():
            a_experts, a_top_k, a_aux = ffn_column("A")
            b_experts, b_top_k, b_aux = ffn_column("B")
        with gr.Row():
            match_active = gr.Checkbox(False, label="dense run matches the MoE run's active parameters (FFN width)",
                                       elem_id="tr-match")
            preset_dense = gr.Button("Preset: dense vs MoE, equal active parameters", size="sm",
                                     elem_id="tr-preset-moe")
            preset_aux = gr.Button("Preset: MoE with vs without load balancing", size="sm", elem_id="tr-preset-aux")
        go, status, plot = run_controls(STOP, sessions, "Train both", "tr", "Curves")
        samples = gr.HTML(elem_id="tr-samples")
        with gr.Accordion("Which expert took each token (MoE runs)", open=True):
            with gr.Row():
                route_text = gr.Textbox(label="Text to route (empty: each run's prompt and sample)", scale=4,
                                        elem_id="tr-route-text")
                route_go = gr.Button("Colour by expert", scale=1)
            routing = gr.HTML(elem_id="tr-routing")
        with gr.Accordion("Explain", open=True):
            explain_md = gr.Markdown()
        go.click(partial(on_train, sessions),
                 [corpus, upload, tokenizer, n_layer, n_head, n_embd, context, embd_p, attn_p, resid_p, steps, batch,
                  lr, a_causal, a_ln, a_scale, b_causal, b_ln, b_scale, sample_len, seed,
                  a_experts, a_top_k, a_aux, b_experts, b_top_k, b_aux, match_active, a_pos, b_pos],
                 [status, plot, samples, explain_md], api_name="train", concurrency_id="train", concurrency_limit=1
                 ).success(partial(on_route, sessions, "", quiet=True), None, routing, api_visibility="private")
        route_go.click(partial(on_route, sessions), route_text, routing, api_name="moe_routing")
        preset_outputs = [a_causal, a_ln, a_scale, b_causal, b_ln, b_scale, a_experts, a_top_k, a_aux, b_experts,
                          b_top_k, b_aux, match_active]
        preset_dense.click(partial(preset_values, "dense vs MoE"), None, preset_outputs, api_visibility="private",
                           queue=False)
        preset_aux.click(partial(preset_values, "aux on vs off"), None, preset_outputs, api_visibility="private",
                         queue=False)
        register("train", fields={
            "corpus": corpus, "tokenizer": tokenizer, "n_layer": n_layer, "n_head": n_head, "n_embd": n_embd,
            "context": context, "embd_pdrop": embd_p, "attn_pdrop": attn_p, "resid_pdrop": resid_p, "steps": steps,
            "batch_size": batch, "lr": lr, "sample_len": sample_len, "seed": seed, "a_causal": a_causal,
            "a_layernorm": a_ln, "a_attn_scale": a_scale, "b_causal": b_causal, "b_layernorm": b_ln,
            "b_attn_scale": b_scale, "a_experts": a_experts, "a_top_k": a_top_k, "a_aux": a_aux,
            "b_experts": b_experts, "b_top_k": b_top_k, "b_aux": b_aux, "match_active": match_active,
            "a_pos_encoding": a_pos, "b_pos_encoding": b_pos},
            command=command, run=go)


def command(v: dict) -> str:
    """Runs A and B as two `python -m tinygpt train` lines: same data, initial weights and schedule, so the
    same losses (the samples the tab draws afterwards start from a prompt taken from the held-out text)."""
    st, _ = check_settings(v["n_layer"], v["n_head"], v["n_embd"], v["context"], v["steps"], v["batch_size"], v["lr"],
                           (v["embd_pdrop"], v["attn_pdrop"], v["resid_pdrop"]), v["sample_len"], v["seed"])
    if v["corpus"] == UPLOAD:
        text, lines = "your-text.txt", ["# your uploaded .txt (the tab also cleans it: see tinygpt.data.clean_text)"]
    else:
        key = CORPORA.get(v["corpus"], v["corpus"])
        text = f"{key}.txt"
        code = (f"from tinygpt.data import load_corpus; "
                f"open({text!r}, 'w', encoding='utf-8').write(load_corpus({key!r}))")
        lines = ["# the corpus as a text file", cli_python(code)]
    tok = "char" if str(v["tokenizer"]).lower().startswith("char") else "gpt2"
    notes: list = []
    moe = {run: check_moe(run.upper(), v.get(f"{run}_experts", 0), v.get(f"{run}_top_k", 1), v.get(f"{run}_aux", 0.01),
                          notes) for run in ("a", "b")}
    cfgs = {run.upper(): run_config(256, st.context, st.n_layer, st.n_head, st.n_embd, st.drops, True, True, True,
                                    *moe[run]) for run in ("a", "b")}
    pos = {run: check_pos(v.get(f"{run}_pos_encoding")) for run in ("a", "b")}
    if v.get("match_active"):
        match_active_params(cfgs)  # the dense run's FFN width (independent of the vocabulary)
    for run in ("a", "b"):
        experts, top_k, aux = moe[run]
        n_inner = cfgs[run.upper()].n_inner
        lines.append(f"# run {run.upper()}")
        lines.append(cli(
            "train", text=text, tokenizer=tok, n_layer=st.n_layer, n_head=st.n_head, n_embd=st.n_embd,
            block_size=st.context, batch_size=st.batch_size, steps=st.steps, lr=st.lr,
            warmup=min(100, max(1, st.steps // 10)), eval_interval=max(1, st.steps // 20), eval_batches=4,
            seed=st.seed, embd_pdrop=st.drops[0], attn_pdrop=st.drops[1], resid_pdrop=st.drops[2],
            no_causal_mask=not v[f"{run}_causal"], no_layernorm=not v[f"{run}_layernorm"],
            no_attn_scale=not v[f"{run}_attn_scale"], n_experts=experts or None,
            moe_top_k=top_k if experts else None, moe_aux_weight=aux if experts else None, n_inner=n_inner,
            pos_encoding=None if pos[run] == "learned" else pos[run], out=f"runs/{run.upper()}"))
    return "\n".join(lines)
