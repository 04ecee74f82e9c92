"""Sampling tab: generate text with every knob of nanoGPT's sample.py, and see the next-token distribution
before and after temperature / top-k / top-p, with an explanation that reads the live numbers."""
from __future__ import annotations

import time
from functools import lru_cache, partial

import gradio as gr
import torch

import tinygpt
from tinygpt import budget
from tinygpt.budget.estimates import estimate_sampling
from tinygpt.defaults import SAMPLE_TAB
from tinygpt.dtypes import dtype_name
from tinygpt.sampling import DRAWABLE_MIN_P, distribution_summary, encode_prompt, next_token_logits

from .kit.commands import cli
from .kit.registry import register
from .kit.common import (
    check_knobs,
    get_model,
    model_picker,
    new_figure,
    on_model_change,
    sample_cards,
    user_errors,
)

MAX_SAMPLES = 6  # side-by-side columns that stay legible on a projector
MAX_NEW_TOKENS = 500
# Page updates per second for all the users of one batcher together. Each update costs the server a few ms of
# Python (render, diff, send) that holds the interpreter lock the decode loop also needs: 40 users refreshing every
# 0.15 s made the shared steps ~2x slower. Alone a user sees a refresh every 0.15 s; with 40 rows every 1.6 s.
UPDATES_PER_S = 25
MAX_UPDATE_S = 2.0
D = SAMPLE_TAB  # the tab's start-up values (tinygpt.defaults): a 3 × 100-token run of the "one ring" prompt
DEFAULT_PROMPT = D["start"]


def update_interval(every_s: float, requests: int) -> float:
    """Seconds between page updates for one user when `requests` share the batcher: every_s alone, then spread so
    that all users together get about UPDATES_PER_S updates per second (at most MAX_UPDATE_S apart)."""
    return min(MAX_UPDATE_S, max(every_s, requests / UPDATES_PER_S))


def stream_samples(model, tok, prompt, num_samples, max_new_tokens, temperature, top_k, top_p, seed,
                   layers=None, every_s: float = 0.15, batcher=None):
    """Yield (list of continuations, tokens done, queue position) while generating; all samples are one batch.

    With a batcher (tinygpt.batching) the samples join the rows of every other user decoding on this model and
    share their forward passes; position > 0 means waiting for a free row (no tokens yet). Same text either way.
    Updates come every `every_s` seconds, less often when many requests share the batcher (UPDATES_PER_S).
    """
    x = torch.tensor([encode_prompt(tok, prompt, model.config.block_size)] * num_samples, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    new = [[] for _ in range(num_samples)]
    if batcher is None:
        tokens = tinygpt.generate_stream(model, x, max_new_tokens, temperature, top_k, top_p, gen, layers=layers)
    else:
        tokens = batcher.submit(x, max_new_tokens, temperature, top_k, top_p, gen, layers)
    try:
        while batcher is not None and not tokens.wait_started(every_s * 2):
            if tokens.position:  # all rows taken: show the place in the queue
                yield [""] * num_samples, 0, tokens.position
        last = time.perf_counter()
        for step, nxt in enumerate(tokens, 1):
            for row, t in zip(new, nxt[:, 0].tolist()):
                row.append(t)
            elapsed = time.perf_counter() - last
            # the batcher (and its lock) is asked only once the user's own interval has passed, not every token
            due = elapsed >= every_s and (batcher is None or elapsed >= update_interval(every_s, batcher.requests))
            if due or step == max_new_tokens:
                last = time.perf_counter()
                yield [tok.decode(r) for r in new], step, 0
    finally:
        if batcher is not None:
            tokens.cancel()  # Stop pressed or the page closed: the rows leave the batch at the next step


@lru_cache(maxsize=64)
def _cached_logits(model, prompt_ids):
    return next_token_logits(model, prompt_ids)


def distribution(model, tok, prompt, temperature, top_k, top_p, k: int = 20):
    ids = tuple(encode_prompt(tok, prompt, model.config.block_size))
    logits = _cached_logits(model, ids)  # modules hash by identity: one entry per (model, prompt)
    summ = distribution_summary(logits, temperature, top_k, top_p, k)
    summ["pieces"] = [tok.piece(i) for i in summ["ids"]]
    return summ


def distribution_figure(summ, temperature, top_k, top_p):
    fig = new_figure(9, 4.2)
    ax = fig.add_subplot(111)
    n = len(summ["ids"])
    xs = range(n)
    w = 0.4
    ax.bar([x - w / 2 for x in xs], summ["before"], w, label="model (T=1, nothing removed)", color="#9aa5b1")
    ax.bar([x + w / 2 for x in xs], summ["after"], w, label="sampled from (after the knobs)", color="#d9480f")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([repr(p)[1:-1][:12] for p in summ["pieces"]], rotation=60, ha="right", fontsize=9)
    ax.set_ylabel("probability")
    kn = f"T={temperature:g}, top-k={top_k or 'off'}, top-p={top_p or 'off'}"
    ax.set_title(f"Next token, top {n} of {summ['vocab']:,} · {kn}\n"
                 f"kept {summ['kept']:,} tokens holding {summ['kept_mass']:.1%} of the model's probability · "
                 f"effective choices {summ['choices_before']:.1f} → {summ['choices_after']:.1f}", fontsize=10)
    ax.legend(fontsize=9, loc="upper right")
    ax.set_ylim(0, max(max(summ["before"]), max(summ["after"]), 1e-3) * 1.12)
    return fig


def knob_label(t, k, p) -> str:
    """"T=10, top-k=2" / "T=1, top-p=0.9": the knobs of one row of the Explain table."""
    return f"T={t:g}" + (f", top-k={k}" if k else "") + (f", top-p={p:g}" if p else "")


def tail_mass(model, tok, prompt, temperature, k: int) -> float:
    """Probability of the k most likely tokens after the temperature (what top-p works on): the p at which top-p
    keeps the same tokens as top-k = k."""
    ids = tuple(encode_prompt(tok, prompt, model.config.block_size))
    probs = torch.softmax(_cached_logits(model, ids).float() / temperature, -1)
    return float(torch.topk(probs, min(k, probs.numel())).values.sum())


def explain_rows(model, tok, prompt, temperature, top_k, top_p) -> list:
    """[(label, summary)] of the Explain table: the exercise's settings (T=0.1, plain T=1, T=10, T=10 with
    top-k=2), your settings (merged into an equal row), and the other truncation matched to yours: with top-p, the
    top-k that keeps as many tokens; with top-k alone, the top-p that keeps the same probability mass."""
    yours = (float(temperature), top_k or None, top_p or None)
    fixed = [(0.1, None, None), (1.0, None, None), (10.0, None, None), (10.0, 2, None)]
    rows, mine = [], distribution(model, tok, prompt, *yours, 20)
    for knobs in fixed:
        s = distribution(model, tok, prompt, *knobs, 20)
        plain = " (the model's own distribution)" if knobs == (1.0, None, None) else ""
        rows.append((knob_label(*knobs) + (" (your settings)" if knobs == yours else plain), s))
    if yours not in fixed:
        rows.append((knob_label(*yours) + " (your settings)", mine))
    t = yours[0]
    if t > 0 and top_p:  # top-p's nucleus, as a fixed number of tokens
        k = mine["kept"]
        rows.append((knob_label(t, k, None) + f" (as many tokens as your top-p={top_p:g} keeps)",
                     distribution(model, tok, prompt, t, k, None, 20)))
    elif t > 0 and top_k and top_k < mine["vocab"]:  # top-k's tokens, as a probability mass
        p = tail_mass(model, tok, prompt, t, top_k)
        if p < 1.0:
            rows.append((f"T={t:g}, top-p={p:.4g} (the mass your top-k={top_k} keeps at T={t:g})",
                         distribution(model, tok, prompt, t, None, p, 20)))
    return rows


def explain(model, tok, prompt, temperature, top_k, top_p) -> str:
    """The exercise questions answered with this prompt's own numbers."""
    rows = [f"| {label} | {s['top1_after']:.1%} | {s['mass_top_k_after']:.1%} | {s['choices_after']:,.1f} |"
            f" {s['kept']:,} | {s['kept_mass']:.1%} | {s['drawable']:,} |"
            for label, s in explain_rows(model, tok, prompt, temperature, top_k, top_p)]
    mine = distribution(model, tok, prompt, temperature, top_k, top_p, 20)
    if temperature > 0 and top_p:
        versus = (f"* **top-p vs top-k, here:** your top-p={top_p:g} keeps **{mine['kept']:,}** tokens holding"
                  f" {mine['kept_mass']:.1%} of the model's probability; top-k={mine['kept']:,} keeps the same tokens"
                  " for this prompt only. After a prompt where the model is sure, the same top-p keeps a handful of"
                  " tokens; after an open one, hundreds; a fixed top-k keeps the same number every time.")
    elif temperature > 0 and top_k:
        versus = (f"* **top-k vs top-p, here:** your top-k={top_k} keeps {mine['kept']:,} tokens holding"
                  f" {mine['kept_mass']:.1%} of the model's probability (the last row: the top-p that keeps the"
                  " same mass). Top-p adapts the number of tokens to how sure the model is; top-k does not.")
    else:
        versus = ("* **top-p vs top-k:** set top-p below 1 (or top-k above 0) to see the matching other knob as the"
                  " table's last row.")
    s1 = distribution(model, tok, prompt, 1.0, None, None)
    top_piece = repr(s1["pieces"][0])
    vocab = s1["vocab"]
    return "\n".join([
        "### Why the knobs do what they do (numbers for this prompt)",
        f"The model's raw next-token distribution puts **{s1['before'][0]:.1%}** on {top_piece}. Sampling divides "
        "the logits by the temperature T before the softmax: T<1 sharpens the distribution, T>1 flattens it.",
        "",
        "| setting | chance of the top token | chance of one of the model's top 20 | effective choices e^H |"
        f" tokens kept | model's probability kept | tokens with probability above {DRAWABLE_MIN_P:g} |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"The last column counts the tokens that can realistically be drawn: probability above one in a million"
        f" ({DRAWABLE_MIN_P:g}) after the knobs. (At T=0.1 many more tokens keep a tiny non-zero probability;"
        " in float32 the rest underflow to exactly 0.)",
        "",
        "* **T = 0.1 repeats itself**: almost all probability sits on the single most likely token, so sampling is"
        " practically greedy; once a phrase is likely, the same continuation keeps winning and text loops.",
        f"* **T = 10 is noise**: the distribution is nearly uniform over all {vocab:,} tokens, so each step almost"
        " surely picks a token the model considered implausible (see the small 'top 20' share) and errors compound.",
        "* **top-k = 2 at T = 10 is readable again**: top-k removes everything but the 2 most likely tokens *before*"
        " drawing, so even a flattened distribution can only choose between two plausible continuations.",
        "* **top-p** keeps the smallest set of likely tokens whose probability reaches p: fewer choices when the"
        " model is sure, more when it is not.",
        versus,
        "* **max new tokens** is how many tokens are appended; **num samples**"
        " is how many continuations are drawn (as one batch); **start** is the prompt.",
        "* How a token is produced: the prompt's tokens are embedded (token + position), passed through the"
        f" {model.config.n_layer} transformer blocks (masked multi-head self-attention with {model.config.n_head}"
        " heads, then a GELU feed-forward layer, each with LayerNorm and a residual connection), then a final"
        " LayerNorm and the LM head give one logit per vocabulary entry; the knobs above turn those into one draw,"
        " the new token is appended and the loop repeats (the KV cache keeps earlier keys/values).",
    ])


@user_errors
def on_dist(models, name, fast, prompt, temperature, top_k, top_p):
    """Plot + explanation for the prompt's next token under the current knobs."""
    model, tok = get_model(models, name, fast)
    v, _ = check_knobs(prompt, 1, 1, temperature, top_k, top_p, 0)
    summ = distribution(model, tok, v.prompt, v.temperature, v.top_k, v.top_p)
    return (distribution_figure(summ, v.temperature, v.top_k, v.top_p),
            explain(model, tok, v.prompt, v.temperature, v.top_k, v.top_p))


def check_budget(model, tok, v) -> None:
    """Refuse, in one sentence, sampling whose estimate (tinygpt.budget.estimate_sampling: the rows' KV cache and
    the prefill) passes one run's limits. Not through the room's hub: the batcher already shares the work."""
    prompt_tokens = len(encode_prompt(tok, v.prompt, model.config.block_size))
    dtype = dtype_name(model.transformer.wte.weight.dtype, "fp32")
    budget.check(estimate_sampling(model.config, v.num_samples, v.max_new_tokens, prompt_tokens, dtype),
                 budget.limits_from_env())


@user_errors
def on_sample(models, name, fast, prompt, num_samples, max_new_tokens, temperature, top_k, top_p, seed,
              batchers=None):
    """Stream (samples HTML, JSON) while generating; the last JSON holds the full texts and the model used.
    batchers: a tinygpt.batching.Batchers to share forward passes with everyone sampling the same model."""
    v, notes = check_knobs(prompt, num_samples, max_new_tokens, temperature, top_k, top_p, seed, MAX_SAMPLES,
                           MAX_NEW_TOKENS)
    model, tok = get_model(models, name, fast)
    check_budget(model, tok, v)
    batcher = batchers.get(model) if batchers is not None else None
    note = " ".join(notes)
    t0 = time.perf_counter()
    conts, status = [""] * v.num_samples, ""
    texts = [v.prompt + c for c in conts]
    yield sample_cards(v.prompt, conts, status=("Generating… " + note).strip()), {"samples": texts}
    shared = 0  # the most rows of other users decoded in the same forward passes
    for conts, step, queued in stream_samples(model, tok, v.prompt, v.num_samples, v.max_new_tokens, v.temperature,
                                              v.top_k, v.top_p, v.seed, batcher=batcher):
        texts = [v.prompt + c for c in conts]
        if queued:
            status = (f"Waiting for a free row: number {queued} in the queue ({batcher.rows} rows are decoding"
                      f" together; {batcher.max_rows} fit in this model's memory budget). {note}")
            yield sample_cards(v.prompt, conts, status=status.strip()), {"samples": texts}
            continue
        dt = time.perf_counter() - t0
        if batcher is not None:
            shared = max(shared, batcher.rows - v.num_samples)
        together = f" · each step shared with {shared} other rows" if shared > 0 else ""
        status = f"{step}/{v.max_new_tokens} tokens · {step * v.num_samples / dt:.0f} tokens/s{together}. {note}"
        yield sample_cards(v.prompt, conts, status=status.strip()), {"samples": texts}
    yield sample_cards(v.prompt, conts, status=status.strip()), {
        "samples": texts, "model": model.info.name, "fallback": model.info.fallback, "notes": notes,
        "seconds": round(time.perf_counter() - t0, 3)}


def build(models, default_model: str = "gpt2", batchers=None):
    """The Sampling tab. `models` is a tinygpt.ModelCache shared by all tabs; `batchers` a
    tinygpt.batching.Batchers (None = every request decodes on its own, one after another)."""
    with gr.Tab("Sampling", id="sampling"):
        gr.Markdown("Generate text and watch how **temperature**, **top-k** and **top-p** reshape the next-token"
                    " distribution. Same seed + same settings = same text.")
        model_dd, fast, banner_md, card_md, model0 = model_picker(models, default_model, with_fast=True)
        prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt (start)", lines=2, elem_id="sampling-prompt")
        with gr.Row():
            num_samples = gr.Slider(1, MAX_SAMPLES, D["num_samples"], step=1, label="Number of samples")
            max_new = gr.Slider(1, MAX_NEW_TOKENS, D["max_new_tokens"], step=1, label="Max new tokens",
                                elem_id="sampling-max-new")
            seed = gr.Number(D["seed"], label="Seed", precision=0)
        with gr.Row():
            temperature = gr.Slider(0, 15, D["temperature"], step=0.05, label="Temperature (0 = greedy)")
            top_k = gr.Number(D["top_k"], label="Top-k (0 = off)", precision=0)
            top_p = gr.Slider(0.01, 1.0, D["top_p"], step=0.01, label="Top-p (1 = off)")
        with gr.Row():
            go = gr.Button("Generate", variant="primary")
            stop = gr.Button("Stop")
        out_html = gr.HTML(label="Samples", elem_id="sampling-out")
        with gr.Accordion("Raw output (JSON)", open=False):
            out_json = gr.JSON(label="samples")
        # drawn once at start-up so the page opens with the distribution for the default prompt
        fig0, explain0 = on_dist(models, default_model, fast.value, DEFAULT_PROMPT, D["temperature"], D["top_k"],
                                 D["top_p"])
        dist_plot = gr.Plot(fig0, label="Next-token distribution", elem_id="sampling-dist")
        with gr.Accordion("Explain", open=True):
            explain_md = gr.Markdown(explain0)

        knobs = [model_dd, fast, prompt, temperature, top_k, top_p]
        # With a batcher, every request may be in its handler at once: the batcher serialises the model work
        # (one forward pass per step for all of them), so nobody waits for a whole generation to finish.
        queueing = dict(concurrency_id="sample", concurrency_limit=None) if batchers is not None else \
            dict(concurrency_id="model", concurrency_limit=2)
        ev = go.click(partial(on_sample, models, batchers=batchers),
                      [model_dd, fast, prompt, num_samples, max_new, temperature, top_k, top_p, seed],
                      [out_html, out_json], api_name="sample", **queueing)
        go.click(partial(on_dist, models), knobs, [dist_plot, explain_md], api_name="sample_distribution",
                 concurrency_id="model")
        stop.click(None, cancels=[ev])
        for c in (model_dd, fast):
            c.change(partial(on_model_change, models), [model_dd, fast], [banner_md, card_md], api_visibility="private")
        redraw = dict(fn=partial(on_dist, models), inputs=knobs, outputs=[dist_plot, explain_md],
                      api_visibility="private", concurrency_id="model")
        for c in (temperature, top_p):
            c.release(**redraw)
        for c in (prompt, top_k):
            c.submit(**redraw)
        register("sampling", fields={
            "model": model_dd, "fast": fast, "prompt": prompt, "num_samples": num_samples, "max_new_tokens": max_new,
            "temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed},
            command=command, run=go, refresh=(partial(on_dist, models), knobs, [dist_plot, explain_md]))


def command(v: dict) -> str:
    """The Generate button as `python -m tinygpt sample` (same model, seed and knobs -> the same texts)."""
    k, _ = check_knobs(v["prompt"], v["num_samples"], v["max_new_tokens"], v["temperature"], v["top_k"], v["top_p"],
                       v["seed"], MAX_SAMPLES, MAX_NEW_TOKENS)
    return cli("sample", model=v["model"], start=k.prompt, num_samples=k.num_samples,
                     max_new_tokens=k.max_new_tokens, temperature=k.temperature, top_k=k.top_k or 0,
                     top_p=k.top_p or 1.0, seed=k.seed, dtype="bf16" if v.get("fast") else None)
