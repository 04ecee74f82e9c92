"""Embeddings tab: common vs rare words in the token embedding table `wte` (tokenization, norms, cosine
heatmaps), whole-vocabulary views (norm against id, a PCA map), nearest neighbours, and contextual embeddings
(one word's hidden state in different sentences, layer by layer), with an explanation that reads the numbers.

    handlers.py  start-up values, the inputs checked, the analysis, the handlers (Compare, neighbours, contexts)
    tables.py    the tables, the summary and the Explain, the contextual section's text (GPT and BERT)
    figures.py   the heatmaps, the whole-vocabulary views, the contextual plot (matplotlib)
"""
from __future__ import annotations

from functools import partial

import gradio as gr

from ..kit.commands import cli
from ..kit.registry import register
from ..kit.common import model_picker, on_model_change
from .figures import contextual_figure, heatmap_figure, vocab_figure
from .handlers import (BASELINE_TOKENS, CONTEXT_MODELS, DEFAULT_COMMON, DEFAULT_RARE, DEFAULT_SENTENCES, DEFAULT_WORD,
                       MAX_SENTENCE_CHARS, MAX_SENTENCES, MAX_WORD_CHARS, MAX_WORDS, SAME_MODEL, D, analyse,
                       bert_contextual, check_pool, check_word, offline_md, on_contextual, on_embeddings,
                       on_neighbours, parse_words, probe_sentences, random_pair_cosine)
from .tables import bert_md, contextual_md, explain, summary_md, tokens_frame, words_frame

# every public name of the one-module tab stays importable from tabs.embeddings
__all__ = ["build", "command", "D", "DEFAULT_COMMON", "DEFAULT_RARE", "DEFAULT_WORD", "DEFAULT_SENTENCES", "MAX_WORDS",
           "MAX_SENTENCES", "MAX_SENTENCE_CHARS", "MAX_WORD_CHARS", "BASELINE_TOKENS", "SAME_MODEL", "CONTEXT_MODELS",
           "parse_words", "check_word", "check_pool", "random_pair_cosine", "analyse", "on_embeddings",
           "on_neighbours", "on_contextual", "probe_sentences", "offline_md", "bert_contextual",
           "words_frame", "tokens_frame", "summary_md", "explain", "contextual_md", "bert_md",
           "heatmap_figure", "vocab_figure", "contextual_figure"]


def build(models, default_model: str = "gpt2"):
    """The Embeddings tab. `models` is a tinygpt.ModelCache shared by all tabs."""
    with gr.Tab("Embeddings", id="embeddings"):
        gr.Markdown("Look inside the token embedding table **`wte`** (one row of d_model numbers per token):"
                    " common vs rare words, the whole vocabulary, nearest neighbours, and how context changes a"
                    " word's vector layer by layer.")
        model_dd, _, banner_md, card_md, model0 = model_picker(models, default_model)
        with gr.Row():
            common = gr.Textbox(DEFAULT_COMMON, label="Common words (comma-separated)")
            rare = gr.Textbox(DEFAULT_RARE, label="Rare or made-up words (comma-separated)")
        with gr.Row():
            pool = gr.Radio(["mean", "first"], value=D["pool"], label="A multi-token word is represented by"
                            " (mean of its tokens / first token)")
            space = gr.Checkbox(D["space"], label="Encode with a leading space (as a word in mid-sentence)")
        go = gr.Button("Compare", variant="primary")
        # the exercise's words compared once at start-up: the page opens on the answer, not on empty boxes
        name0 = model0.info.name
        _, _, words0, tokens0, heat0, vocab0, summary0, explain0 = on_embeddings(
            models, name0, DEFAULT_COMMON, DEFAULT_RARE, D["pool"], D["space"])
        summary = gr.Markdown(summary0)
        words_df = gr.Dataframe(words0, label="How each word tokenizes", interactive=False, elem_id="emb-words")
        tokens_df = gr.Dataframe(tokens0, label="Per token: id, norm, rank", interactive=False)
        heat = gr.Plot(heat0, label="Cosine similarity", elem_id="emb-heat")
        vocab = gr.Plot(vocab0, label="Whole vocabulary", elem_id="emb-vocab")
        with gr.Accordion("Explain", open=True):
            explain_md = gr.Markdown(explain0)
        gr.Markdown("### Nearest neighbours (cosine in `wte`)")
        with gr.Row():
            nn_word = gr.Textbox(D["neighbour_word"], label="Word or token", scale=2)
            nn_k = gr.Slider(1, 50, D["neighbours"], step=1, label="Neighbours", scale=1)
            nn_go = gr.Button("Find neighbours", scale=1)
        nn_df = gr.Dataframe(on_neighbours(models, name0, D["neighbour_word"], D["neighbours"], D["pool"],
                                           D["space"]), label="Nearest tokens", interactive=False)
        gr.Markdown("### Contextual embeddings: the same word in different sentences")
        with gr.Row():
            ctx_word = gr.Textbox(DEFAULT_WORD, label="Word", scale=1)
            ctx_sent = gr.Textbox(DEFAULT_SENTENCES, label="Sentences (one per line)", lines=3, scale=3)
            ctx_model = gr.Dropdown(CONTEXT_MODELS, value=SAME_MODEL, allow_custom_value=True, scale=1,
                                    label="Model for this section (BERT: a bidirectional encoder)")
        ctx_go = gr.Button("Compare contexts")
        ctx_fig0, ctx_md0 = on_contextual(models, name0, DEFAULT_WORD, DEFAULT_SENTENCES, SAME_MODEL)
        ctx_plot = gr.Plot(ctx_fig0, label="Cosine between contexts, per layer", elem_id="emb-context")
        ctx_md = gr.Markdown(ctx_md0, elem_id="emb-context-md")

        go.click(partial(on_embeddings, models), [model_dd, common, rare, pool, space],
                 [banner_md, card_md, words_df, tokens_df, heat, vocab, summary, explain_md], api_name="embeddings",
                 concurrency_id="model")
        nn_go.click(partial(on_neighbours, models), [model_dd, nn_word, nn_k, pool, space], [nn_df],
                    api_name="embeddings_neighbours", concurrency_id="model")
        nn_word.submit(partial(on_neighbours, models), [model_dd, nn_word, nn_k, pool, space], [nn_df],
                       api_visibility="private", concurrency_id="model")
        ctx_go.click(partial(on_contextual, models), [model_dd, ctx_word, ctx_sent, ctx_model], [ctx_plot, ctx_md],
                     api_name="embeddings_contextual", concurrency_id="model")
        model_dd.change(partial(on_model_change, models), [model_dd], [banner_md, card_md], api_visibility="private")
        register("embeddings", fields={
            "model": model_dd, "common": common, "rare": rare, "pool": pool, "space": space, "nn_word": nn_word,
            "nn_k": nn_k, "ctx_word": ctx_word, "ctx_sentences": ctx_sent, "ctx_model": ctx_model},
            command=command, run=[go, nn_go, ctx_go])


def command(v: dict) -> str:
    """The Compare button as `python -m tinygpt embed` (the same ids, norms and cosines; --json for all)."""
    words = parse_words(v["common"], "common") + parse_words(v["rare"], "rare")
    return cli("embed", model=v["model"], words=",".join(words), pool=check_pool(v["pool"]),
                     space=bool(v["space"]))
