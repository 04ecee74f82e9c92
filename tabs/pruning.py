"""Layer pruning tab: run only some transformer blocks (even, odd, first half, ...) on the same prompt with the
same seed, side by side with the full model, with measured perplexity, repetition, distinct-2, length and speed,
a logit lens showing where in depth the prediction forms, and an explanation that reads the numbers."""
from __future__ import annotations

from functools import partial

import gradio as gr
import pandas as pd

from tinygpt.defaults import PRUNE
from tinygpt.interpret.pruning import (
    CONFIGS,
    REFERENCE_TEXTS,
    default_reference,
    logit_lens,
    named_layers,
    run_configuration,
)

from .kit.commands import cli
from .kit.registry import register
from .kit.common import (
    UserError,
    banner,
    check_knobs,
    get_model,
    model_card,
    model_picker,
    new_figure,
    sample_cards,
    user_errors,
)

MAX_NEW_TOKENS = 200
MAX_REFERENCE_CHARS = 4000  # ~1,000 GPT-2 tokens: a few seconds per configuration on GPT-2 on a CPU
D = PRUNE  # the tab's start-up values (tinygpt.defaults)
DEFAULT_CONFIGS = list(D["configs"])
PROMPTS = {"gpt2": "The Eiffel Tower is located in the city of",
           "shakespeare": "First Citizen:\nBefore we proceed any further, hear me"}


def default_prompt(model_name: str) -> str:
    return PROMPTS["shakespeare"] if "shakespeare" in str(model_name).lower() else PROMPTS["gpt2"]


def resolve_configs(model, selected, custom) -> tuple[list, list]:
    """[(label, layers)] in the order of CONFIGS, the full model always first (it is the baseline)."""
    notes = []
    selected = [str(s).strip().lower() for s in (selected or [])]
    if not selected:
        raise UserError("Choose at least one configuration to compare with the full model.")
    unknown = [s for s in selected if s not in CONFIGS]
    if unknown:
        raise UserError(f"Unknown configuration {unknown[0]!r}; choose from {', '.join(CONFIGS)}.")
    if "full" not in selected:
        notes.append("The full model was added as the baseline.")
    n = model.config.n_layer
    out = []
    for name in CONFIGS:
        if name == "full" or name in selected:
            layers = named_layers(name, n, custom)  # ValueError with a plain sentence for bad custom lists
            out.append((f"{name} [{','.join(map(str, layers))}]", layers))
    return out, notes


def metrics_frame(results) -> pd.DataFrame:
    full = results[0]["perplexity"]
    rows = [[r["label"], len(r["layers"]), round(r["perplexity"], 2), round(r["perplexity"] / full, 2),
             round(r["loss"], 4), round(r["accuracy"], 3), round(r["repetition"], 3), round(r["distinct_2"], 3),
             r["length_to_eot"], round(r["ms_per_token"], 1)] for r in results]
    return pd.DataFrame(rows, columns=["configuration", "blocks run", "perplexity", "× full", "loss (nats)",
                                       "top-1 accuracy", "repetition (3-grams)", "distinct-2",
                                       "tokens until end-of-text", "ms / token"])


def perplexity_figure(results, ref_tokens: int, context: int):
    fig = new_figure(8, 3.8)
    ax = fig.add_subplot(111)
    labels = [r["label"] for r in results]
    ppl = [r["perplexity"] for r in results]
    bars = ax.bar(range(len(ppl)), ppl, color=["#2b8a3e"] + ["#d9480f"] * (len(ppl) - 1))
    for b, v in zip(bars, ppl):
        ax.annotate(f"{v:,.1f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=9)
    ax.set_yscale("log")  # pruned models can be orders of magnitude worse
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=9)
    ax.set_ylabel("perplexity (log scale, lower is better)")
    ax.set_title(f"Perplexity on the reference passage ({ref_tokens} predicted tokens, windows of {context})",
                 fontsize=10)
    ax.set_ylim(1, max(ppl) * 3)  # perplexity >= 1: bars start at 1 on the log axis
    return fig


def lens_frame(lens) -> pd.DataFrame:
    rows = [[r["stage"], repr(r["top_piece"]), float(f"{r['top_prob']:.3g}"), float(f"{r['answer_prob']:.3g}"),
             r["answer_rank"]] for r in lens["rows"]]
    return pd.DataFrame(rows, columns=["after", "top prediction", "its probability",
                                       f"P({lens['answer_piece']!r})", "rank of the final answer"])


def lens_figure(lens):
    fig = new_figure(8, 3.6)
    ax = fig.add_subplot(111)
    xs = list(range(len(lens["rows"])))
    ax.plot(xs, [r["answer_prob"] for r in lens["rows"]], marker="o", color="#1c7ed6",
            label=f"P(final answer {lens['answer_piece']!r})")
    ax.plot(xs, [r["top_prob"] for r in lens["rows"]], marker=".", ls="--", color="#868e96",
            label="P(top prediction at that depth)")
    for x, r in zip(xs, lens["rows"]):
        ax.annotate(repr(r["top_piece"])[1:-1][:10], (x, r["top_prob"]), fontsize=8, xytext=(0, 6),
                    textcoords="offset points", ha="center")
    ax.set_xticks(xs, [r["stage"] for r in lens["rows"]], rotation=30, ha="right", fontsize=9)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("probability")
    ax.set_title("Logit lens (full model): final LayerNorm + LM head applied after each block", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def _pct(x: float) -> str:
    return f"{x:.1%}" if x >= 0.001 else f"{x:.1e}"


def explain(model, results, lens) -> str:
    full = results[0]
    n = model.config.n_layer
    by = {r["label"].split(" [")[0]: r for r in results}
    lines = ["### What pruning did (measured on this prompt and passage)",
             f"The full model runs all {n} blocks: perplexity **{full['perplexity']:,.1f}** on the reference passage,"
             f" repetition {full['repetition']:.1%}, distinct-2 {full['distinct_2']:.2f},"
             f" {full['ms_per_token']:.1f} ms per token."]
    for r in results[1:]:
        ratio = r["perplexity"] / full["perplexity"]
        speed = full["ms_per_token"] / r["ms_per_token"] if r["ms_per_token"] > 0 else float("nan")
        eot = f" It emitted end-of-text after **{r['length_to_eot']}** tokens" + \
            (" (shorter than the full model's)." if r["length_to_eot"] < full["length_to_eot"] else ".") \
            if r["length_to_eot"] < len(r["new_ids"]) else ""
        rep = "more repetitive than" if r["repetition"] > full["repetition"] else "less repetitive than" \
            if r["repetition"] < full["repetition"] else "as repetitive as"
        lines.append(
            f"* **{r['label']}** ({len(r['layers'])} of {n} blocks): perplexity **{r['perplexity']:,.1f}**,"
            f" **×{ratio:,.2f}** the full model's; repetition {r['repetition']:.1%} ({rep} the full"
            f" model), distinct-2 {r['distinct_2']:.2f}; {speed:.1f}× the full model's speed.{eot}")
    worst = max(results, key=lambda r: r["perplexity"])
    ratios = [r["perplexity"] / full["perplexity"] for r in results[1:]]
    lines.append("")
    if ratios and max(ratios) > 1.5:
        lines.append(
            f"* **Less coherent?** Perplexity measures it: how many tokens the model is effectively choosing"
            f" between at each step. The worst configuration here is **{worst['label']}** (×"
            f"{worst['perplexity'] / full['perplexity']:,.1f}). Every block *adds* its output to the residual"
            " stream and was trained on the stream produced by all blocks before it; skipping blocks hands the next"
            " one a stream it has never seen, and the final LayerNorm + LM head read an unfinished stream.")
    elif ratios:
        lines.append(
            "* **Barely any change** in perplexity (at most ×"
            f"{max(ratios):.2f}): this model's blocks add little to the stream (for example an untrained model, or"
            " a model whose blocks learned little), so removing them changes little.")
    if "first half" in by and "last half" in by:
        a, b = by["first half"]["perplexity"], by["last half"]["perplexity"]
        lines.append(f"* **Which half matters?** First half ×{a / full['perplexity']:,.2f} vs last half"
                     f" ×{b / full['perplexity']:,.2f}: the "
                     + ("early blocks carry more here (they turn token embeddings into the features later blocks"
                        " rely on)." if a < b else "late blocks carry more here."))
    if len(results) > 1:
        fastest = min(results[1:], key=lambda r: r["ms_per_token"])
        lines.append(f"* **Speed:** each block is the same amount of work, so time per token falls with the number"
                     f" of blocks run (the embeddings and LM head cost the same everywhere); fastest here:"
                     f" {fastest['label']} at {fastest['ms_per_token']:.1f} ms vs {full['ms_per_token']:.1f} ms."
                     " Timings on a shared CPU are noisy.")
    rows = lens["rows"]
    formed = next((k for k, r in enumerate(rows) if all(q["answer_rank"] == 1 for q in rows[k:])), len(rows) - 1)
    lines.append(
        f"* **Logit lens:** the full model's next token after the prompt is **{lens['answer_piece']!r}**"
        f" (probability {_pct(rows[-1]['answer_prob'])}). Reading the stream early, it is the top prediction from"
        f" **{rows[formed]['stage']}** on; its probability after the embeddings alone is"
        f" {_pct(rows[0]['answer_prob'])}. "
        + ("It only appears at the very end, so cutting late blocks loses it." if formed == len(rows) - 1 and
           formed > 0 else
           "It is already the top guess from the embeddings alone (a guess from the last token by itself, like a"
           " bigram); the blocks only change how sure the model is." if formed == 0 else
           f"It forms part-way through the depth (after {formed} of {len(rows) - 1} blocks), so the blocks after"
           " that mostly sharpen it."))
    return "\n".join(lines)


def _continuations(prompt, results, configs):
    done = {r["label"]: r["text"][len(prompt):] for r in results}
    return [done.get(label) for label, _ in configs]


# ---- handlers ------------------------------------------------------------------------------------
def on_model(models, name, prompt, reference):
    """Banner and card; swap the prompt and passage to the new model's defaults unless the user edited them."""
    model, _ = get_model(models, name, False)
    if prompt in PROMPTS.values():
        prompt = default_prompt(model.info.name)
    if reference in REFERENCE_TEXTS.values():
        reference = default_reference(model.info.name)
    return banner(model), model_card(model), prompt, reference


@user_errors
def on_prune(models, name, selected, custom, prompt, max_new_tokens, temperature, top_k, seed, reference,
             batchers=None):
    """Stream (banner, samples HTML, metrics table, perplexity chart, lens table, lens chart, explanation, JSON),
    one configuration at a time. batchers (tinygpt.batching.Batchers): generate through the model's batcher
    (everyone running the same blocks at the same time shares forward passes) and compute each (blocks,
    passage) perplexity and each prompt's logit lens once for the whole room."""
    v, notes = check_knobs(prompt, 1, max_new_tokens, temperature, top_k, 1.0, seed, max_tokens=MAX_NEW_TOKENS)
    reference = str(reference or "").strip()
    if not reference:
        raise UserError("Paste a reference passage: perplexity is measured on it.")
    if len(reference) > MAX_REFERENCE_CHARS:
        notes.append(f"Reference passage shortened to its first {MAX_REFERENCE_CHARS:,} characters.")
        reference = reference[:MAX_REFERENCE_CHARS]
    model, tok = get_model(models, name, False)
    configs, more = resolve_configs(model, selected, custom)
    notes += more
    batcher = batchers.get(model) if batchers is not None else None
    shared = batchers.shared if batchers is not None else None
    lens = logit_lens(model, tok, v.prompt) if shared is None else \
        shared.get(("logit_lens", model, v.prompt), lambda: logit_lens(model, tok, v.prompt))
    p = v.prompt
    gen_args = (v.max_new_tokens, v.temperature, v.top_k, None, v.seed, reference, batcher, shared)
    if batcher is None:  # warm-up: fair ms/token (a batcher's loop is warm, and times forward passes only)
        run_configuration(model, tok, p, None, 1, v.temperature, v.top_k, None, v.seed)
    results = []
    titles = [label for label, _ in configs]
    yield (banner(model), sample_cards(p, _continuations(p, results, configs), titles, "Running " + titles[0] + "…"),
           None, None, lens_frame(lens), lens_figure(lens), "", {})
    for k, (label, layers) in enumerate(configs):
        r = run_configuration(model, tok, p, layers, *gen_args)
        r["label"] = label
        results.append(r)
        status = f"Running {titles[k + 1]}…" if k + 1 < len(configs) else \
            f"Same prompt, seed {v.seed}, T={v.temperature:g}, top-k={v.top_k or 'off'}. " + " ".join(notes)
        ppl_ctx = min(model.config.block_size, 128)
        ref_tokens = len(tok.encode(reference)) - 1
        yield (banner(model), sample_cards(p, _continuations(p, results, configs), titles, status.strip()),
               metrics_frame(results), perplexity_figure(results, ref_tokens, ppl_ctx), lens_frame(lens),
               lens_figure(lens) if k + 1 == len(configs) else gr.skip(),
               explain(model, results, lens) if k + 1 == len(configs) else "",
               {"model": model.info.name, "fallback": model.info.fallback, "notes": notes, "logit_lens": lens,
                "configurations": [{key: r[key] for key in ("label", "layers", "text", "perplexity", "loss",
                                                            "accuracy", "repetition", "distinct_2",
                                                            "length_to_eot", "ms_per_token")} for r in results]})


def build(models, default_model: str = "gpt2", batchers=None):
    """The Layer pruning tab. `models` is a tinygpt.ModelCache shared by all tabs; `batchers` a
    tinygpt.batching.Batchers shared with the Sampling tab (None = every run on its own, one at a time)."""
    with gr.Tab("Layer pruning", id="pruning"):
        gr.Markdown("Run only some of the transformer blocks and compare with the full model on the **same prompt,"
                    " seed and sampling settings**. The shared model is never modified: blocks are skipped at run"
                    " time.")
        model_dd, _, banner_md, card_md, model0 = model_picker(models, default_model)
        with gr.Row():
            configs = gr.CheckboxGroup(list(CONFIGS), value=DEFAULT_CONFIGS, label="Configurations", scale=3)
            custom = gr.Textbox(D["custom"], label="Custom blocks (e.g. 0,1,5)", scale=1)
        prompt = gr.Textbox(default_prompt(model0.info.name), label="Prompt", lines=2)
        with gr.Row():
            max_new = gr.Slider(1, MAX_NEW_TOKENS, D["max_new_tokens"], step=1, label="Max new tokens")
            temperature = gr.Slider(0, 2, D["temperature"], step=0.05, label="Temperature (0 = greedy)")
            top_k = gr.Number(D["top_k"], label="Top-k (0 = off)", precision=0)
            seed = gr.Number(D["seed"], label="Seed", precision=0)
        with gr.Accordion("Reference passage for perplexity (editable)", open=False):
            reference = gr.Textbox(default_reference(model0.info.name), lines=8, show_label=False)
        with gr.Row():
            go = gr.Button("Run configurations", variant="primary", scale=3)
            stop = gr.Button("Stop", scale=1)
        out_html = gr.HTML()
        metrics = gr.Dataframe(label="Measured per configuration", interactive=False, elem_id="prune-metrics")
        ppl_plot = gr.Plot(label="Perplexity per configuration", elem_id="prune-ppl")
        with gr.Row():
            lens_df = gr.Dataframe(label="Logit lens (full model)", interactive=False)
            lens_plot = gr.Plot(label="Logit lens")
        with gr.Accordion("Explain", open=True):
            explain_md = gr.Markdown("*Press **Run configurations**: the explanation reads the measured numbers of"
                                     " every configuration.*")
        with gr.Accordion("Raw output (JSON)", open=False):
            out_json = gr.JSON()

        # with a batcher the model work is serialised by it (and by its shared results): no limit on runs
        queueing = dict(concurrency_id="prune", concurrency_limit=None) if batchers is not None else \
            dict(concurrency_id="model")
        ev = go.click(partial(on_prune, models, batchers=batchers),
                      [model_dd, configs, custom, prompt, max_new, temperature, top_k, seed, reference],
                      [banner_md, out_html, metrics, ppl_plot, lens_df, lens_plot, explain_md, out_json],
                      api_name="prune", **queueing)
        stop.click(None, cancels=[ev])  # configurations already shown stay on screen
        model_dd.change(partial(on_model, models), [model_dd, prompt, reference],
                        [banner_md, card_md, prompt, reference], api_visibility="private")
        register("pruning", fields={
            "model": model_dd, "configs": configs, "custom": custom, "prompt": prompt, "max_new_tokens": max_new,
            "temperature": temperature, "top_k": top_k, "seed": seed, "reference": reference},
            command=command, run=go)


def command(v: dict) -> str:
    """One `python -m tinygpt sample --layers ...` per configuration: the same texts as the cards (the CLI has
    no perplexity per configuration)."""
    k, _ = check_knobs(v["prompt"], 1, v["max_new_tokens"], v["temperature"], v["top_k"], 1.0, v["seed"],
                       max_tokens=MAX_NEW_TOKENS)
    chosen = [str(c).strip().lower() for c in (v["configs"] or [])]
    lines = []
    for name in CONFIGS:
        if name == "full" or name in chosen:
            layers = None if name == "full" else str(v["custom"]).replace(" ", "") if name == "custom" else \
                name.replace(" ", "-")
            lines.append(f"# {name}\n" + cli(
                "sample", model=v["model"], start=k.prompt, num_samples=1, max_new_tokens=k.max_new_tokens,
                temperature=k.temperature, top_k=k.top_k or 0, seed=k.seed, layers=layers))
    return "\n".join(lines)
