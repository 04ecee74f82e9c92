"""Train-from-scratch tab: two tiny GPTs trained side by side (default: causal mask on vs off) with live
loss/accuracy curves, then 500-token samples from each and an explanation that reads the live numbers.

Also the place for the LayerNorm and 1/sqrt(d_k) ablations: each run has its own switches.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from functools import partial

import gradio as gr
import torch

import tinygpt
from tinygpt.data import (
    CORPORA,
    TextError,
    clean_text,
    decode_upload,
    load_corpus,
    make_tokenizer,
    python_docs,
    read_upload,
    split_tokens,
)

from . import share
from .common import UserError, clamp_int, new_figure, parse_float, sample_cards, stop_session, user_errors
from .sessions import SessionStore, run_jobs

UPLOAD = "Upload a .txt file"
COLORS = {"A": "#1c7ed6", "B": "#e8590c"}


def get_corpus(choice, file, lossy=False) -> tuple[str, str]:
    """(text, note). Tiny Shakespeare falls back to the offline corpus when it cannot be downloaded."""
    if choice == UPLOAD:
        if file is None:
            raise TextError("Choose a .txt file to upload, or pick a built-in corpus.")
        text, _ = clean_text(decode_upload(read_upload(file), lossy), drop_boilerplate=False)
        return text, f"Uploaded text: {len(text):,} characters."
    key = CORPORA.get(choice, choice)
    try:
        text = load_corpus(key)
        return text, f"{choice}: {len(text):,} characters."
    except ConnectionError as e:
        text = python_docs()
        return text, f"{e} Using the offline Python-docs corpus instead ({len(text):,} characters)."


def run_config(vocab, block, n_layer, n_head, n_embd, drops, causal, layernorm, attn_scale):
    return tinygpt.GPTConfig(vocab_size=vocab, block_size=block, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                             embd_pdrop=drops[0], attn_pdrop=drops[1], resid_pdrop=drops[2], causal=bool(causal),
                             layernorm=bool(layernorm), attn_scale=bool(attn_scale))


def describe_run(cfg) -> str:
    off = [n for n, v in (("causal mask", cfg.causal), ("LayerNorm", cfg.layernorm),
                          ("1/√d_k scaling", cfg.attn_scale)) if not v]
    return "full model" if not off else "no " + ", no ".join(off)


def curves_figure(hist: dict, labels: dict):
    fig = new_figure(10, 3.8)
    ax1, ax2 = fig.add_subplot(121), fig.add_subplot(122)
    for name, h in hist.items():
        if not h:
            continue
        c = COLORS[name]
        ax1.plot([e["step"] for e in h], [e["train_loss"] for e in h], color=c, lw=.8, alpha=.5)
        ev = [e for e in h if e["val_loss"] is not None]
        ax1.plot([e["step"] for e in ev], [e["val_loss"] for e in ev], "o-", color=c, label=f"{name}: {labels[name]}")
        ax2.plot([e["step"] for e in ev], [e["val_accuracy"] for e in ev], "o-", color=c, label=f"{name}")
    ax1.set(title="loss (thin: train batch, dots: validation)", xlabel="step", ylabel="nats/token")
    ax2.set(title="validation next-token accuracy", xlabel="step", ylim=(0, 1))
    for ax in (ax1, ax2):
        ax.grid(alpha=.3)
        if any(hist.values()):
            ax.legend(fontsize=8)
    return fig


def samples_html(prompt, samples: dict, labels: dict) -> str:
    return sample_cards(prompt, list(samples.values()), [f"{k}: {labels[k]}" for k in samples])


def explain(results: dict, cfgs: dict, samples: dict, tok_kind: str) -> str:
    lines = ["### What happened (numbers from these two runs)", "",
             "| run | setting | final train loss | final val loss | val accuracy | steps |",
             "|---|---|---|---|---|---|"]
    for k, r in results.items():
        lines.append(f"| {k} | {describe_run(cfgs[k])} | {r['train_loss']:.3f} | {r['val_loss']:.3f} | "
                     f"{r['val_accuracy']:.1%} | {r['steps']} |")
    lines.append("")
    masked = [k for k in results if cfgs[k].causal]
    unmasked = [k for k in results if not cfgs[k].causal]
    if masked and unmasked and results[unmasked[0]]["train_loss"] > 0.7 * results[masked[0]]["train_loss"]:
        a, b = results[masked[0]], results[unmasked[0]]
        lines.append(
            f"* After {b['steps']} steps the unmasked run {unmasked[0]} ({b['train_loss']:.3f}) has not yet pulled "
            f"away from run {masked[0]} ({a['train_loss']:.3f}): it has not discovered that position *t* can simply "
            "read the next token through attention. Train for more steps (a few hundred) and its loss will collapse "
            "towards zero while its generated text stays broken.")
    elif masked and unmasked:
        a, b = results[masked[0]], results[unmasked[0]]
        lines.append(
            f"* **Without the causal mask** run {unmasked[0]} reaches a loss of **{b['train_loss']:.3f}** "
            f"(vs {a['train_loss']:.3f} with the mask): position *t* can attend to position *t+1*, which *is* the "
            f"token it must predict, so it learns to copy the answer instead of predicting it. Its validation loss "
            f"({b['val_loss']:.3f}) is low for the same reason: the future is visible there too.")
        lines.append(
            "* At generation time there is no future to copy: the last position only sees the past, a situation the "
            f"unmasked model never trained for, so its sample is broken (look at run {unmasked[0]}'s text), while "
            "the masked model, trained exactly as it is used, writes plausible "
            f"{'characters' if tok_kind == 'char' else 'tokens'}.")
    for k, r in results.items():
        c = cfgs[k]
        if not c.layernorm:
            lines.append(f"* Run {k} has **no LayerNorm**: activations in the residual stream grow block after block "
                         "and the gradients with them; training is less stable and needs a lower learning rate "
                         f"(final val loss {r['val_loss']:.3f}).")
        if not c.attn_scale:
            lines.append(f"* Run {k} has **no 1/√d_k scaling**: the dot products q·k have a standard deviation of "
                         f"about √d_k = {math.sqrt(c.head_dim):.1f} times larger, so the softmax saturates towards "
                         f"one-hot attention with vanishing gradients (final val loss {r['val_loss']:.3f}).")
    if any(not math.isfinite(r["train_loss"]) for r in results.values()):
        lines.append("* A loss of NaN/inf means training diverged: lower the learning rate.")
    return "\n".join(lines)


@dataclass
class Settings:
    """The checked form: model shape, training length, dropouts (embedding, attention, residual)."""

    n_layer: int
    n_head: int
    n_embd: int
    context: int
    steps: int
    batch_size: int
    lr: float
    drops: tuple
    sample_len: int
    seed: int


def check_settings(n_layer, n_head, n_embd, context, steps, batch, lr, drops, sample_len, seed):
    """(Settings, notes about capped values). Raises UserError."""
    notes: list = []
    st = Settings(n_layer=clamp_int(n_layer, 1, 12, "Layers", notes),
                  n_head=clamp_int(n_head, 1, 16, "Heads", notes),
                  n_embd=clamp_int(n_embd, 8, 512, "d_model", notes),
                  context=clamp_int(context, 8, 512, "Context", notes),
                  steps=clamp_int(steps, 1, 5000, "Steps", notes),
                  batch_size=clamp_int(batch, 1, 128, "Batch size", notes),
                  lr=parse_float(lr, "Learning rate", 1e-7, 1.0),
                  drops=tuple(parse_float(d, "Dropout", 0.0, 0.9) for d in drops),
                  sample_len=clamp_int(sample_len, 1, 2000, "Sample length", notes),
                  seed=clamp_int(seed, 0, 2**31 - 1, "Seed", notes))
    if st.n_embd % st.n_head:
        raise UserError(f"d_model ({st.n_embd}) must be divisible by the number of heads ({st.n_head}).")
    return st, notes


@user_errors
def on_train(sessions: SessionStore, corpus, file, tokenizer, n_layer, n_head, n_embd, context, embd_pdrop,
             attn_pdrop, resid_pdrop, steps, batch, lr, a_causal, a_ln, a_scale, b_causal, b_ln, b_scale, sample_len,
             seed, request: gr.Request = None, progress=gr.Progress()):
    """Stream (status, curves, samples HTML, explanation) while two runs train side by side."""
    st, notes = check_settings(n_layer, n_head, n_embd, context, steps, batch, lr,
                               (embd_pdrop, attn_pdrop, resid_pdrop), sample_len, seed)
    L, T, S, seed = st.n_layer, st.context, st.steps, st.seed
    text, corpus_note = get_corpus(corpus, file)
    tok_kind = "char" if str(tokenizer).lower().startswith("char") else "gpt2"
    tok = make_tokenizer(tok_kind, text)
    data = torch.tensor(tok.encode(text), dtype=torch.long)
    if len(data) < 20 * (T + 2):
        raise UserError(f"The corpus is too short: {len(data):,} tokens; it needs at least {20 * (T + 2):,} for a "
                        f"context of {T} (training windows plus a 10% validation part).")
    train_data, val_data = split_tokens(data, 0.1)
    cfgs = {"A": run_config(tok.vocab_size, T, L, st.n_head, st.n_embd, st.drops, a_causal, a_ln, a_scale),
            "B": run_config(tok.vocab_size, T, L, st.n_head, st.n_embd, st.drops, b_causal, b_ln, b_scale)}
    labels = {k: describe_run(c) for k, c in cfgs.items()}
    entry = sessions.get(request)
    stop = entry["stop"] = threading.Event()
    models = {}
    for k, c in cfgs.items():
        torch.manual_seed(seed)  # same initial weights for both runs: only the switch differs
        models[k] = tinygpt.GPT(c)
    tcfg = tinygpt.TrainConfig(steps=S, batch_size=st.batch_size, context=T, lr=st.lr, warmup=min(100, max(1, S // 10)),
                               eval_interval=max(1, S // 20), eval_batches=4, seed=seed)
    jobs = {k: partial(lambda m, cb, should_stop: tinygpt.train(m, train_data, val_data, tcfg, cb, should_stop),
                       models[k]) for k in models}
    hist = {k: [] for k in models}
    note = " ".join([corpus_note] + notes)
    n_params = models["A"].num_params()
    t0 = time.perf_counter()
    prompt = tok.decode(val_data[:8].tolist())
    yield (f"Training two {L}-layer models ({n_params:,} parameters each) on {len(train_data):,} tokens. {note}",
           curves_figure(hist, labels), samples_html(prompt, {"A": None, "B": None}, labels), "")
    results = {}
    for kind, payload in run_jobs(jobs, stop):
        if kind == "done":
            results = payload
            break
        for name, ev in payload:
            hist[name].append(ev)
        done = min(h[-1]["step"] if h else 0 for h in hist.values())
        el = time.perf_counter() - t0
        left = el / max(done, 1) * (S - done)
        progress((done, S), desc=f"training, ~{left:.0f} s left")
        status = " · ".join(f"{k}: step {h[-1]['step']} loss {h[-1]['train_loss']:.3f}" for k, h in hist.items() if h)
        yield (f"{status} · about {left:.0f} s left. {note}", curves_figure(hist, labels),
               samples_html(prompt, {"A": None, "B": None}, labels), "")
    samples = {}
    x = torch.tensor([tok.encode(prompt)], dtype=torch.long)
    for k, m in models.items():
        out = tinygpt.generate(m, x, st.sample_len, 0.8, None, None, torch.Generator().manual_seed(seed))
        samples[k] = tok.decode(out[0, x.size(1):].tolist())
    secs = time.perf_counter() - t0
    stopped = " (stopped early)" if any(r["stopped"] for r in results.values()) else ""
    entry["trained"] = {k: (m, tok) for k, m in models.items()}
    entry["train_results"] = {k: {key: r[key] for key in ("steps", "train_loss", "val_loss", "val_accuracy")}
                              for k, r in results.items()}
    yield (f"Done{stopped} in {secs:.0f} s. {note}", curves_figure(hist, labels), samples_html(prompt, samples, labels),
           explain(results, cfgs, samples, tok_kind))


def build(sessions: SessionStore):
    with gr.Tab("Train from scratch", id="train"):
        gr.Markdown("Train two tiny GPTs **side by side** on the same data from the same initial weights. By default"
                    " run A has the causal mask and run B does not: watch B's loss collapse towards zero and its"
                    " text fall apart. Switch off LayerNorm or the 1/√d_k scaling to see why they matter.")
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
            with gr.Column():
                gr.Markdown("**Run A**")
                a_causal = gr.Checkbox(True, label="causal mask")
                a_ln = gr.Checkbox(True, label="LayerNorm")
                a_scale = gr.Checkbox(True, label="1/√d_k scaling")
            with gr.Column():
                gr.Markdown("**Run B**")
                b_causal = gr.Checkbox(False, label="causal mask")
                b_ln = gr.Checkbox(True, label="LayerNorm")
                b_scale = gr.Checkbox(True, label="1/√d_k scaling")
        with gr.Row():
            go = gr.Button("Train both", variant="primary")
            stop = gr.Button("Stop")
        status = gr.Markdown(elem_id="tr-status")
        plot = gr.Plot(label="Curves", elem_id="tr-plot")
        samples = gr.HTML(elem_id="tr-samples")
        with gr.Accordion("Explain", open=True):
            explain_md = gr.Markdown()
        go.click(partial(on_train, sessions),
                 [corpus, upload, tokenizer, n_layer, n_head, n_embd, context, embd_p, attn_p, resid_p, steps, batch,
                  lr, a_causal, a_ln, a_scale, b_causal, b_ln, b_scale, sample_len, seed],
                 [status, plot, samples, explain_md], api_name="train", concurrency_id="train", concurrency_limit=1)
        stop.click(partial(stop_session, sessions), None, status, api_visibility="private", queue=False)
        share.register("train", fields={
            "corpus": corpus, "tokenizer": tokenizer, "n_layer": n_layer, "n_head": n_head, "n_embd": n_embd,
            "context": context, "embd_pdrop": embd_p, "attn_pdrop": attn_p, "resid_pdrop": resid_p, "steps": steps,
            "batch_size": batch, "lr": lr, "sample_len": sample_len, "seed": seed, "a_causal": a_causal,
            "a_layernorm": a_ln, "a_attn_scale": a_scale, "b_causal": b_causal, "b_layernorm": b_ln,
            "b_attn_scale": b_scale}, command=command, run=go)


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
        lines = ["# the corpus as a text file", share.cli_python(code)]
    tok = "char" if str(v["tokenizer"]).lower().startswith("char") else "gpt2"
    for run in ("a", "b"):
        lines.append(f"# run {run.upper()}")
        lines.append(share.cli(
            "train", text=text, tokenizer=tok, n_layer=st.n_layer, n_head=st.n_head, n_embd=st.n_embd,
            block_size=st.context, batch_size=st.batch_size, steps=st.steps, lr=st.lr,
            warmup=min(100, max(1, st.steps // 10)), eval_interval=max(1, st.steps // 20), eval_batches=4,
            seed=st.seed, embd_pdrop=st.drops[0], attn_pdrop=st.drops[1], resid_pdrop=st.drops[2],
            no_causal_mask=not v[f"{run}_causal"], no_layernorm=not v[f"{run}_layernorm"],
            no_attn_scale=not v[f"{run}_attn_scale"], out=f"runs/{run.upper()}"))
    return "\n".join(lines)
