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

from tinygpt.defaults import TRAIN_TAB

from ..kit.commands import cli
from ..kit.registry import register
from ..kit.sessions import SessionStore
from ..kit.stream import run_controls
from .figures import POS_LABELS, describe_run
from .moe import PRESET_KEYS, check_moe, ffn_column, on_route, preset_values
from .run import STOP, UPLOAD, check_pos, check_settings, on_train, run_config, run_drops

__all__ = ["build", "command", "on_train", "on_route", "describe_run", "preset_values", "PRESET_KEYS", "UPLOAD",
           "STOP", "FIELDS"]


D = TRAIN_TAB  # the form's start-up values (tinygpt.defaults)
TOKENIZERS = {"characters": "char", "GPT-2 BPE": "gpt2"}


def corpus_label(key: str) -> str:
    """A corpus's radio label from its tinygpt.data.CORPORA key ("tiny-shakespeare")."""
    return next(label for label, k in CORPORA.items() if k == key)


def switches_column(name: str, causal: bool) -> tuple:
    """One run's architecture switches: (causal mask, LayerNorm, 1/√d_k scaling, position encoding)."""
    gr.Markdown(f"**Run {name}**")
    return (gr.Checkbox(causal, label="causal mask"), gr.Checkbox(D["layernorm"], label="LayerNorm"),
            gr.Checkbox(D["attn_scale"], label="1/√d_k scaling"),
            gr.Dropdown(list(POS_LABELS), value=D["pos_encoding"], label="position encoding",
                        elem_id=f"tr-{name.lower()}-pos"))


def dropout_sliders(prefix: str, label: str, values: tuple) -> tuple:
    """Three dropout rates (embedding, attention, residual) of one run."""
    with gr.Row():
        return tuple(gr.Slider(0, 0.5, v, step=0.05, label=f"{label}{what} dropout", elem_id=f"tr-{prefix}{key}")
                     for v, what, key in zip(values, ("Embedding", "Attention", "Residual"), ("embd", "attn", "resid")))


def build(sessions: SessionStore):
    with gr.Tab("Train from scratch", id="train"):
        gr.Markdown("Train a tiny GPT, or two **side by side** on the same data from the same initial weights. By"
                    " default run A has the causal mask and run B does not: watch B's loss collapse towards zero and"
                    " its text fall apart. Switch off LayerNorm or the 1/√d_k scaling, give each run its own dropout"
                    " rates, or give both runs the causal mask and a different position encoding each (learned vs"
                    " RoPE vs none). Switch run B off to train one model.")
        with gr.Row():
            corpus = gr.Radio([*CORPORA, UPLOAD], value=corpus_label(D["corpus"]), label="Corpus")
            upload = gr.File(label="Your .txt (for 'Upload')", file_types=[".txt"], type="filepath")
            tokenizer = gr.Radio(list(TOKENIZERS), value=next(k for k, v in TOKENIZERS.items() if v == D["tokenizer"]),
                                 label="Tokenizer")
        with gr.Row():
            n_layer = gr.Slider(1, 8, D["n_layer"], step=1, label="Layers")
            n_head = gr.Slider(1, 8, D["n_head"], step=1, label="Heads")
            n_embd = gr.Slider(16, 256, D["n_embd"], step=16, label="d_model")
            context = gr.Slider(16, 256, D["block_size"], step=16, label="Context")
        with gr.Row():
            steps = gr.Slider(10, 3000, D["steps"], step=10, label="Steps", elem_id="tr-steps")
            batch = gr.Slider(1, 64, D["batch_size"], step=1, label="Batch size")
            lr = gr.Number(D["lr"], label="Learning rate")
            sample_len = gr.Slider(50, 1000, D["sample_len"], step=50, label="Sample length", elem_id="tr-sample-len")
            seed = gr.Number(D["seed"], label="Seed", precision=0)
        with gr.Row():
            with gr.Column():
                a_causal, a_ln, a_scale, a_pos = switches_column("A", causal=D["causal"])
                embd_p, attn_p, resid_p = dropout_sliders("a-", "", (D["embd_pdrop"], D["attn_pdrop"],
                                                                      D["resid_pdrop"]))
            with gr.Column():
                compare_b = gr.Checkbox(D["compare_b"], label="train run B beside A (compare)",
                                        elem_id="tr-compare-b")
                b_causal, b_ln, b_scale, b_pos = switches_column("B", causal=D["b_causal"])
                b_own = gr.Checkbox(D["b_own_dropout"], label="B has its own dropout rates (off: A's)",
                                    elem_id="tr-b-own-dropout")
                b_embd_p, b_attn_p, b_resid_p = dropout_sliders("b-", "B: ", (D["b_embd_pdrop"], D["b_attn_pdrop"],
                                                                               D["b_resid_pdrop"]))
        with gr.Row():
            a_experts, a_top_k, a_aux = ffn_column("A")
            b_experts, b_top_k, b_aux = ffn_column("B")
        with gr.Row():
            match_active = gr.Checkbox(D["match_active"],
                                       label="dense run matches the MoE run's active parameters (FFN width)",
                                       elem_id="tr-match")
            preset_dense = gr.Button("Preset: dense vs MoE, equal active parameters", size="sm",
                                     elem_id="tr-preset-moe")
            preset_aux = gr.Button("Preset: MoE with vs without load balancing", size="sm", elem_id="tr-preset-aux")
        go, status, plot = run_controls(STOP, sessions, run_label(D["compare_b"]), "tr", "Curves")
        samples = gr.HTML(elem_id="tr-samples")
        with gr.Accordion("Which expert took each token (MoE runs)", open=True):
            with gr.Row():
                route_text = gr.Textbox(label="Text to route (empty: each run's prompt and sample)", scale=4,
                                        elem_id="tr-route-text")
                route_go = gr.Button("Colour by expert", scale=1)
            routing = gr.HTML(elem_id="tr-routing")
        with gr.Accordion("Explain", open=True):
            explain_md = gr.Markdown(elem_id="tr-explain")
        compare_b.change(lambda on: gr.update(value=run_label(on)), compare_b, go, queue=False,
                         api_visibility="private")
        # new inputs go last. Its own queue without a limit: the room's run hub schedules the runs (tabs/kit/runs.py),
        # and a student following a run someone else started only waits on that run
        go.click(partial(on_train, sessions),
                 [corpus, upload, tokenizer, n_layer, n_head, n_embd, context, embd_p, attn_p, resid_p, steps, batch,
                  lr, a_causal, a_ln, a_scale, b_causal, b_ln, b_scale, sample_len, seed,
                  a_experts, a_top_k, a_aux, b_experts, b_top_k, b_aux, match_active, a_pos, b_pos,
                  compare_b, b_own, b_embd_p, b_attn_p, b_resid_p],
                 [status, plot, samples, explain_md], api_name="train", concurrency_id="train",
                 concurrency_limit=None
                 ).success(partial(on_route, sessions, "", quiet=True), None, routing, api_visibility="private")
        route_go.click(partial(on_route, sessions), route_text, routing, api_name="moe_routing")
        preset_outputs = [a_causal, a_ln, a_scale, b_causal, b_ln, b_scale, a_experts, a_top_k, a_aux, b_experts,
                          b_top_k, b_aux, match_active]
        preset_dense.click(partial(preset_values, "dense vs MoE"), None, preset_outputs, api_visibility="private",
                           queue=False)
        preset_aux.click(partial(preset_values, "aux on vs off"), None, preset_outputs, api_visibility="private",
                         queue=False)
        register("train", fields=dict(zip(FIELDS, [
            corpus, tokenizer, n_layer, n_head, n_embd, context, embd_p, attn_p, resid_p, steps, batch, lr,
            sample_len, seed, a_causal, a_ln, a_scale, b_causal, b_ln, b_scale, a_experts, a_top_k, a_aux,
            b_experts, b_top_k, b_aux, match_active, a_pos, b_pos, compare_b, b_own, b_embd_p, b_attn_p,
            b_resid_p])), command=command, run=go)


# The link keys, in register()'s order. embd_pdrop, attn_pdrop, resid_pdrop are run A's rates and, unless
# b_own_dropout is on, run B's too (what they meant before dropout was per run: old links keep their meaning).
FIELDS = ("corpus", "tokenizer", "n_layer", "n_head", "n_embd", "context", "embd_pdrop", "attn_pdrop", "resid_pdrop",
          "steps", "batch_size", "lr", "sample_len", "seed", "a_causal", "a_layernorm", "a_attn_scale", "b_causal",
          "b_layernorm", "b_attn_scale", "a_experts", "a_top_k", "a_aux", "b_experts", "b_top_k", "b_aux",
          "match_active", "a_pos_encoding", "b_pos_encoding", "compare_b", "b_own_dropout", "b_embd_pdrop",
          "b_attn_pdrop", "b_resid_pdrop")


def run_label(compare: bool) -> str:
    return "Train both" if compare else "Train run A"


def command(v: dict) -> str:
    """Run A (and B when compared) as plain `python -m tinygpt train` lines: same corpus, initial weights and
    schedule, so the same losses (the samples the tab draws afterwards start from a prompt taken from the held-out
    text)."""
    st, _ = check_settings(v["n_layer"], v["n_head"], v["n_embd"], v["context"], v["steps"], v["batch_size"], v["lr"],
                           (v["embd_pdrop"], v["attn_pdrop"], v["resid_pdrop"]), v["sample_len"], v["seed"])
    drops = run_drops(st, v.get("b_own_dropout", D["b_own_dropout"]),
                      tuple(v.get(f"b_{k}_pdrop", D[f"b_{k}_pdrop"]) for k in ("embd", "attn", "resid")))
    if v["corpus"] == UPLOAD:
        source = dict(text="your-text.txt")
        lines = ["# your uploaded .txt, cleaned as the tab cleans it (tinygpt.data.clean_text)"]
    else:
        source, lines = dict(corpus=CORPORA.get(v["corpus"], v["corpus"])), []
    tok = TOKENIZERS.get(v["tokenizer"], "char" if str(v["tokenizer"]).lower().startswith("char") else "gpt2")
    runs = ("a", "b") if v.get("compare_b", D["compare_b"]) else ("a",)
    notes: list = []
    moe = {run: check_moe(run.upper(), v.get(f"{run}_experts", 0), v.get(f"{run}_top_k", 1), v.get(f"{run}_aux", 0.01),
                          notes) for run in runs}
    cfgs = {run.upper(): run_config(256, st.context, st.n_layer, st.n_head, st.n_embd, drops[run.upper()], True, True,
                                    True, *moe[run]) for run in runs}
    pos = {run: check_pos(v.get(f"{run}_pos_encoding")) for run in runs}
    if v.get("match_active") and len(cfgs) == 2:
        match_active_params(cfgs)  # the dense run's FFN width (independent of the vocabulary)
    for run in runs:
        experts, top_k, aux = moe[run]
        n_inner = cfgs[run.upper()].n_inner
        e, a, r = drops[run.upper()]
        if len(runs) > 1:
            lines.append(f"# run {run.upper()}")
        lines.append(cli(
            "train", **source, tokenizer=tok, n_layer=st.n_layer, n_head=st.n_head, n_embd=st.n_embd,
            block_size=st.context, batch_size=st.batch_size, steps=st.steps, lr=st.lr,
            warmup=min(100, max(1, st.steps // 10)), eval_interval=max(1, st.steps // 20),
            eval_batches=D["eval_batches"], seed=st.seed, embd_pdrop=e, attn_pdrop=a, resid_pdrop=r,
            no_causal_mask=not v[f"{run}_causal"], no_layernorm=not v[f"{run}_layernorm"],
            no_attn_scale=not v[f"{run}_attn_scale"], n_experts=experts or None,
            moe_top_k=top_k if experts else None, moe_aux_weight=aux if experts else None, n_inner=n_inner,
            pos_encoding=None if pos[run] == "learned" else pos[run], out=f"runs/{run.upper()}"))
    return "\n".join(lines)
