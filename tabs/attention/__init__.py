"""Attention tab: the softmax weights of every layer and head for a prompt (a layers x heads grid of small maps),
one head large with the tokens on both axes and the weight on hover, where a chosen query token attends
(bertviz-style), per-head pattern scores, the same head without the causal mask and without 1/sqrt(d_k), the
sqrt(d_k) experiment on random vectors, the model's computational graph with live shapes, and the multi-head
attention source code with a comment on every line and its parameter count.

The analysis itself (one forward pass, cached per prompt) is tinygpt.interpret.attention.analyse / AttentionCache.

    heatmap.py  the grid, the large head and the query view   patterns.py  scores, patterns, the mask in words
    scale.py    the sqrt(d_k) experiment                       explain.py   the code, its parameters, the graph
"""
from __future__ import annotations

import math
from functools import partial

import gradio as gr

from tinygpt import budget
from tinygpt.budget.estimates import estimate_attention
from tinygpt.defaults import ATTENTION_TAB
from tinygpt.interpret.attention import HEAD_VIEWS, AttentionCache, check_model, head_weights, prompt_ids

from ..kit.commands import cli
from ..kit.common import UserError, banner, check_prompt, get_model, model_card, model_picker, user_errors
from ..kit.registry import register
from .explain import code_html, graph_html, params_md
from .heatmap import HEAT_CSS, HEAT_JS, MAX_LABELS, grid_html, heat_html, query_html
from .patterns import mask_md, patterns_md, scores_frame
from .scale import random_figure, scale_md, sharpening_figure

__all__ = ["build", "command", "on_attention", "on_head", "on_model", "AttentionCache", "VIEWS", "MAX_LABELS",
           "heat_html"]

D = ATTENTION_TAB  # the tab's start-up values (tinygpt.defaults)
DEFAULT_PROMPT = D["prompt"]

# the view picker's labels: one per tinygpt.interpret.attention.HEAD_VIEWS entry, in its order
VIEWS = ("mask on: the model's weights", "mask off: what position i could see", "1/√d_k removed: the sharper softmax")
DEFAULT_VIEW = VIEWS[HEAD_VIEWS.index(D["view"])]
# the parts a link (or a course-map row) opens and scrolls to: `section=graph`
SECTIONS = {"head": "attention-section-head", "scale": "attention-section-scale",
            "graph": "attention-section-graph", "code": "attention-section-code"}


# ---- checks -----------------------------------------------------------------------------------------
def check_index(value, n: int, name: str) -> int:
    """A layer/head/query number in 0 .. n-1, or one plain sentence."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a whole number.") from None
    if math.isnan(v) or v != int(v):
        raise UserError(f"{name} must be a whole number.")
    if not 0 <= v < n:
        raise UserError(f"{name} must be between 0 and {n - 1} for this model/prompt (got {int(v)}).")
    return int(v)


def check_view(view) -> str:
    if view in (None, ""):
        return VIEWS[0]
    for v in VIEWS:
        if str(view) == v or str(view).split(":")[0].strip() == v.split(":")[0]:
            return v
    raise UserError(f"The view must be one of: {'; '.join(VIEWS)}.")


def pick_query(query, T: int) -> int:
    """The chosen query token (default: the last one)."""
    if query in (None, ""):
        return T - 1
    return check_index(query, T, "The query token")


# ---- handlers ----------------------------------------------------------------------------------------
def analysed(cache: AttentionCache, models, name, prompt) -> tuple:
    """(model, the prompt's analysis, notes about the prompt): the prompt checked as every tab checks one and its
    analysis budgeted (tinygpt.budget.estimate_attention at the length it is cropped to: refused in one sentence
    when it passes one run's limits), then analysed (or found in the cache)."""
    model, tok = get_model(models, name)
    check_model(model)  # a model without attention weights: that sentence first
    notes: list = []
    prompt = check_prompt(prompt, notes)
    ids, _ = prompt_ids(model, tok, prompt)
    budget.check(estimate_attention(model.config, len(ids)), budget.limits_from_env())
    return model, cache.get(model, tok, prompt), notes


def _head_outputs(model, a, layer, head, query, view):
    c = model.config
    layer = check_index(layer, len(a["maps"]), "Layer")
    head = check_index(head, c.n_head, "Head")
    query = pick_query(query, a["T"])
    view = check_view(view)
    w = head_weights(model, a, layer, head, HEAD_VIEWS[VIEWS.index(view)])
    causal_view = a["causal"] and view != VIEWS[1]
    title = f"Layer {layer}, head {head} · {view}"
    return (heat_html(w, a["tokens"], title, causal_view, query),
            query_html(w, a["tokens"], query, layer, head, causal_view), mask_md(model, a, layer, head, query))


def query_choices(a) -> list:
    return [(f"{i}: {t}", i) for i, t in enumerate(a["tokens"])]


@user_errors
def on_attention(cache: AttentionCache, models, name, prompt, layer=0, head=0, query=None, view=VIEWS[0]):
    """The main action: (status, grid, head heatmap, query view, mask text, scores table, patterns text, query
    picker, scale figure, scale explanation, graph)."""
    model, a, notes = analysed(cache, models, name, prompt)
    if query not in (None, "") and not (isinstance(query, (int, float)) and 0 <= query < a["T"]):
        query = None  # a query of the previous prompt: start from the last token of this one
    heat, bars, mask = _head_outputs(model, a, layer, head, query, view)
    q = pick_query(query, a["T"])
    info = getattr(model, "info", None)
    mname = info.name if info else "model"
    c = model.config
    status = " ".join([f"**{a['T']} tokens**, {c.n_layer} layers × {c.n_head} heads of {mname}."] + notes + a["notes"])
    return (status, grid_html(a, mname), heat, bars, mask, scores_frame(a), patterns_md(a),
            gr.update(choices=query_choices(a), value=q), sharpening_figure(a, mname), scale_md(a, mname),
            graph_html(model, a["T"]))


@user_errors
def on_head(cache: AttentionCache, models, name, prompt, layer, head, query, view):
    """Another layer, head, query or view of the analysed prompt (cached): (head heatmap, query view, mask text)."""
    model, a, _ = analysed(cache, models, name, prompt)
    return _head_outputs(model, a, layer, head, query, view)


@user_errors
def on_model(models, name):
    """(banner, card, layer slider, head slider, graph, code, parameters) for the picked model."""
    model, _ = get_model(models, name)
    c = model.config
    return (banner(model), model_card(model), gr.update(maximum=max(1, c.n_layer - 1), value=0),
            gr.update(maximum=max(1, c.n_head - 1), value=0), graph_html(model), code_html(), params_md(model))


def build(models, default_model: str = "gpt2", cache: AttentionCache | None = None):
    """The Attention tab. `models` is the shared tinygpt.ModelCache."""
    cache = cache or AttentionCache()
    with gr.Tab("Attention", id="attention"):
        gr.HTML(f"<style>{HEAT_CSS}</style>", padding=False)
        gr.Markdown("Where does each token look? The softmax weights of **every layer and head** for your prompt,"
                    " live from the model: a grid to spot patterns, one head large (hover a cell), one query's"
                    " targets, scores that name the patterns, the causal mask and the 1/√d_k scale taken away, the"
                    " model's computational graph and its attention code, commented line by line.")
        model_dd, _, banner_md, card_md, model0 = model_picker(models, default_model)
        c0 = model0.config
        # the default prompt's attention, drawn once at start-up: the page opens on a result, not on empty boxes
        first = on_attention(cache, models, model0.info.name, DEFAULT_PROMPT, D["layer"], D["head"], None,
                             DEFAULT_VIEW)
        (status0, grid0, heat0, bars0, mask0, table0, patterns0, query0, scale0, scale_md0, graph0) = first
        prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt (up to the model's context length)", lines=3,
                            elem_id="att-prompt")
        go = gr.Button("Show attention", variant="primary", elem_id="att-go")
        status = gr.Markdown(status0, elem_id="att-status")
        grid = gr.HTML(grid0, elem_id="att-grid")
        with gr.Column(elem_id=SECTIONS["head"]) as head_section:
            with gr.Row():
                layer = gr.Slider(0, max(1, c0.n_layer - 1), D["layer"], step=1, label="Layer", elem_id="att-layer")
                head = gr.Slider(0, max(1, c0.n_head - 1), D["head"], step=1, label="Head", elem_id="att-head")
                query = gr.Dropdown(query0["choices"], value=query0["value"],
                                    label="Query token (where does it attend?)", elem_id="att-query",
                                    allow_custom_value=False)
            view = gr.Radio(list(VIEWS), value=DEFAULT_VIEW, label="View of this head", elem_id="att-view")
            with gr.Row():
                with gr.Column(scale=3):
                    heat = gr.HTML(heat0, js_on_load=HEAT_JS, elem_id="att-heat")
                with gr.Column(scale=2):
                    bars = gr.HTML(bars0, elem_id="att-bars")
                    mask = gr.Markdown(mask0, elem_id="att-mask")
        patterns = gr.Markdown(patterns0, elem_id="att-patterns")
        table = gr.Dataframe(table0, label="Per-head pattern scores", interactive=False, elem_id="att-table",
                             max_height=420)
        with gr.Column(elem_id=SECTIONS["scale"]) as scale_section:
            gr.Markdown("### Why divide by √d_k?")
            gr.Plot(random_figure(), label="Random q and k with unit-variance entries", elem_id="att-random")
            scale_plot = gr.Plot(scale0, label="The loaded model's heads with and without 1/√d_k",
                                 elem_id="att-scale")
            with gr.Accordion("Explain", open=True):
                scale_text = gr.Markdown(scale_md0, elem_id="att-scale-md")
        with gr.Accordion("Computational graph of the loaded model", open=False,
                          elem_id=SECTIONS["graph"]) as graph_section:
            graph = gr.HTML(graph0, elem_id="att-graph")
        with gr.Accordion("The multi-head attention code, line by line, and its parameters", open=False,
                          elem_id=SECTIONS["code"]) as code_section:
            params = gr.Markdown(params_md(model0), elem_id="att-params")
            code = gr.HTML(code_html(), elem_id="att-code")

        main_in = [model_dd, prompt, layer, head, query, view]
        main_out = [status, grid, heat, bars, mask, table, patterns, query, scale_plot, scale_text, graph]
        go.click(partial(on_attention, cache, models), main_in, main_out, api_name="attention",
                 concurrency_id="model")
        prompt.submit(partial(on_attention, cache, models), main_in, main_out, api_visibility="private",
                      concurrency_id="model")
        head_fn = partial(on_head, cache, models)
        for comp, event in ((layer, "release"), (head, "release"), (query, "input"), (view, "input")):
            getattr(comp, event)(head_fn, main_in, [heat, bars, mask], concurrency_id="model",
                                 **({"api_name": "attention_head"} if comp is layer else {"api_visibility": "private"}))
        model_dd.change(partial(on_model, models), [model_dd],
                        [banner_md, card_md, layer, head, graph, code, params], api_visibility="private")
        register("attention", fields={"model": model_dd, "prompt": prompt, "layer": layer, "head": head,
                                      "view": view}, command=command, run=go,
                 refresh=(partial(on_attention, cache, models), main_in, main_out),
                 sections={"head": head_section, "scale": scale_section, "graph": graph_section,
                           "code": code_section})


def command(v: dict) -> str:
    """Show attention as `python -m tinygpt attention`: the same per-head scores (--json: every weight)."""
    return cli("attention", model=v["model"], text=v["prompt"])
