"""Embeddings tab: common vs rare words in the token embedding table `wte` (tokenization, norms, cosine
heatmaps), whole-vocabulary views (norm against id, a PCA map), nearest neighbours, and contextual embeddings
(one word's hidden state in different sentences, layer by layer), with an explanation that reads the numbers."""
from __future__ import annotations

import re
from functools import partial

import gradio as gr
import pandas as pd
import torch

from tinygpt.defaults import EMBED_TAB
from tinygpt.interpret.bert import BERT_NAME, bert_contextual_similarity, load_bert
from tinygpt.interpret.embeddings import (
    POOLS,
    contextual_similarity,
    cosine_matrix,
    mean_off_diagonal,
    nearest_neighbours,
    norm_ranks,
    pca_2d,
    vocab_norms,
    word_vectors,
)

from .kit.commands import cli
from .kit.registry import register
from .kit.common import (
    UserError,
    banner,
    clamp_int,
    get_model,
    model_card,
    model_picker,
    new_figure,
    on_model_change,
    user_errors,
)

D = EMBED_TAB  # the tab's start-up values (tinygpt.defaults)
DEFAULT_COMMON = D["common"]
DEFAULT_RARE = D["rare"]
DEFAULT_WORD = D["ctx_word"]
DEFAULT_SENTENCES = D["ctx_sentences"]
MAX_WORDS = 20  # per group: the heatmap stays readable
MAX_SENTENCES = 8
MAX_SENTENCE_CHARS = 2_000  # a sentence of the contextual section: well within any model's context
MAX_WORD_CHARS = 100  # a word (or short phrase): its label must fit the heatmap, its BPE stays instant
BASELINE_TOKENS = 500  # random vocabulary pairs for the "unrelated tokens" cosine
SAME_MODEL = "the model picked above (GPT)"
CONTEXT_MODELS = [SAME_MODEL, BERT_NAME]


def parse_words(text, group: str) -> list[str]:
    """Words separated by commas or new lines. Raises UserError for an empty or too long list."""
    words = [w.strip() for w in re.split(r"[,\n]", str(text or "")) if w.strip()]
    if not words:
        raise UserError(f"Enter at least one {group} word (separate words with commas).")
    if len(words) > MAX_WORDS:
        raise UserError(f"At most {MAX_WORDS} {group} words, please (got {len(words)}).")
    for w in words:
        check_word(w)
    return words


def check_word(word: str) -> str:
    """A word is at most MAX_WORD_CHARS characters, printable (no control characters)."""
    if len(word) > MAX_WORD_CHARS:
        raise UserError(f"A word here is at most {MAX_WORD_CHARS} characters (one is {len(word):,}).")
    if any(not (ch.isprintable() or ch == " ") for ch in word):
        raise UserError("Words cannot contain control characters (such as tabs or escape codes): type plain text.")
    return word


def check_pool(pool) -> str:
    pool = str(pool or "mean").split()[0].lower()  # the radio shows "mean (...)"/"first (...)"
    if pool not in POOLS:
        raise UserError(f"Represent a multi-token word by 'mean' or 'first' (got {pool!r}).")
    return pool


def random_pair_cosine(model) -> float:
    """Mean cosine between random pairs of vocabulary rows: what 'unrelated' looks like in this table."""
    ids = pca_2d(model)["ids"][:BASELINE_TOKENS]
    return mean_off_diagonal(cosine_matrix(model.transformer.wte.weight[ids].float()))


def analyse(model, tok, common, rare, pool="mean", space=False) -> dict:
    """Vectors, norms and cosines of both groups, plus the summary numbers the tables and text use."""
    groups = {}
    for name, words in (("common", common), ("rare", rare)):
        rows = word_vectors(model, tok, words, pool, space)
        cos = cosine_matrix(torch.stack([r["vector"] for r in rows]))  # (N, N)
        groups[name] = {"rows": rows, "cos": cos, "mean_norm": sum(r["norm"] for r in rows) / len(rows),
                        "mean_cos": mean_off_diagonal(cos),
                        "tokens_per_word": sum(len(r["ids"]) for r in rows) / len(rows),
                        "mean_id": sum(i for r in rows for i in r["ids"]) / sum(len(r["ids"]) for r in rows)}
    norms = vocab_norms(model)
    V = norms.numel()
    tenth = max(1, V // 10)
    return {"groups": groups, "pool": pool, "space": space, "vocab": V, "vocab_mean_norm": float(norms.mean()),
            "first_tenth_norm": float(norms[:tenth].mean()), "last_tenth_norm": float(norms[-tenth:].mean()),
            "random_cos": random_pair_cosine(model)}


def words_frame(a) -> pd.DataFrame:
    rows = []
    for g, d in a["groups"].items():
        for r in d["rows"]:
            rows.append([g, r["word"], " | ".join(repr(p) for p in r["pieces"]), ", ".join(map(str, r["ids"])),
                         len(r["ids"]), round(r["norm"], 4)])
    return pd.DataFrame(rows, columns=["group", "word", "pieces", "token ids", "tokens",
                                       f"norm ({a['pool']} of tokens)"])


def tokens_frame(model, a) -> pd.DataFrame:
    """One row per token: id, norm, where its id falls in the vocabulary and where its norm ranks."""
    V = a["vocab"]
    rows = []
    for g, d in a["groups"].items():
        for r in d["rows"]:
            for i, p, n, nr in zip(r["ids"], r["pieces"], r["token_norms"], norm_ranks(model, r["ids"])):
                rows.append([g, r["word"], repr(p), i, f"{100 * i / V:.1f}%", round(n, 4), f"{nr:,} of {V:,}"])
    return pd.DataFrame(rows, columns=["group", "word", "piece", "id", "id rank (share of vocab before it)",
                                       "norm", "norm rank (1 = largest)"])


def heatmap_figure(a):
    fig = new_figure(11, 4.6)
    offdiag = [float(v) for d in a["groups"].values() for i, row in enumerate(d["cos"].tolist())
               for j, v in enumerate(row) if i != j]
    lo = min([0.0] + offdiag)  # one shared colour scale so the two groups can be compared by eye
    for k, (g, d) in enumerate(a["groups"].items()):
        ax = fig.add_subplot(1, 2, k + 1)
        m = d["cos"].numpy()
        im = ax.imshow(m, cmap="viridis", vmin=lo, vmax=1.0)
        labels = [r["word"] for r in d["rows"]]
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=9)
        ax.set_yticks(range(len(labels)), labels, fontsize=9)
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if m[i, j] > lo + 0.6 * (1 - lo) else "white")
        ax.set_title(f"{g} words: mean norm {d['mean_norm']:.3f}, mean cosine {d['mean_cos']:.3f}", fontsize=10)
    fig.colorbar(im, ax=fig.axes, shrink=0.8, label="cosine similarity")
    return fig


def vocab_figure(model, tok, a):
    """Left: every token's norm against its id. Right: a PCA map of a fixed sample, chosen tokens labelled."""
    fig = new_figure(12, 4.8)
    norms = vocab_norms(model)
    V = norms.numel()
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(range(V), norms.numpy(), ",", color="#9aa5b1", alpha=0.6, rasterized=True)
    nb = min(50, V)  # a median line: the trend is hard to see in a cloud of 50k points
    edges = torch.linspace(0, V, nb + 1).long().tolist()
    mids = [(lo + hi) / 2 for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]
    meds = [float(norms[lo:hi].median()) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]
    ax.plot(mids, meds, color="black", lw=1.2, label="median norm per id bin")
    colours = {"common": "#1c7ed6", "rare": "#e03131"}
    chosen = []
    for g, d in a["groups"].items():
        ids = [i for r in d["rows"] for i in r["ids"]]
        pieces = [p for r in d["rows"] for p in r["pieces"]]
        ax.scatter(ids, norms[ids].numpy(), s=28, color=colours[g], label=f"{g} tokens", zorder=3)
        for i, p in dict(zip(ids, pieces)).items():  # each distinct token labelled once
            ax.annotate(repr(p)[1:-1], (i, float(norms[i])), fontsize=7, xytext=(3, 3), textcoords="offset points")
        chosen += [(i, p, g) for i, p in zip(ids, pieces)]
    ax.set_xlabel("token id (GPT-2: roughly merge order, so earlier = more frequent)")
    ax.set_ylabel("L2 norm of the wte row")
    ax.set_title(f"Norm of all {V:,} token embeddings", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    ax2 = fig.add_subplot(1, 2, 2)
    p = pca_2d(model, [c[0] for c in chosen])
    xy = p["xy"].numpy()
    ax2.scatter(xy[:, 0], xy[:, 1], s=3, color="#ced4da", rasterized=True, label=f"{len(xy):,} sampled tokens")
    cxy = p["chosen_xy"].numpy()
    for (_, piece, g), (x, y) in zip(chosen, cxy):
        ax2.scatter([x], [y], s=28, color=colours[g], zorder=3)
        ax2.annotate(repr(piece)[1:-1], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ex = p["explained"]
    ax2.set_xlabel(f"PC1 ({ex[0]:.1%} of variance)")
    ax2.set_ylabel(f"PC2 ({ex[1]:.1%} of variance)")
    ax2.set_title("2-D PCA of wte (fixed seeded sample)", fontsize=10)
    ax2.legend(fontsize=8, loc="upper right")
    return fig


def summary_md(a) -> str:
    c, r = a["groups"]["common"], a["groups"]["rare"]
    return "\n".join([
        "| group | words | tokens per word | mean norm | mean off-diagonal cosine | mean token id |",
        "|---|---|---|---|---|---|",
        *[f"| {g} | {len(d['rows'])} | {d['tokens_per_word']:.1f} | {d['mean_norm']:.4f} | {d['mean_cos']:.3f} |"
          f" {d['mean_id']:,.0f} |" for g, d in (("common", c), ("rare", r))],
        f"| whole vocabulary | {a['vocab']:,} tokens | | {a['vocab_mean_norm']:.4f} | {a['random_cos']:.3f} "
        f"(random pairs) | |",
    ])


def _cmp(x: float, y: float, more: str, less: str) -> str:
    return more if x > y else less


def explain(model, a) -> str:
    c, r = a["groups"]["common"], a["groups"]["rare"]
    pool = "the mean of its tokens' rows" if a["pool"] == "mean" else "its first token's row"
    ratio = c["mean_norm"] / r["mean_norm"] if r["mean_norm"] > 0 else float("inf")
    multi = [w["word"] for w in r["rows"] if len(w["ids"]) > 1]
    tied = getattr(model.config, "tie_weights", False)
    lines = [
        "### What the numbers say (live, for this model)",
        f"* **Tokenization first.** The common words take **{c['tokens_per_word']:.1f}** tokens per word on average,"
        f" the rare ones **{r['tokens_per_word']:.1f}**"
        + (f" ({', '.join(multi)} are split into several pieces)" if multi else "") + ". The tokenizer gives whole"
        " rows of `wte` only to strings that were frequent in its training text; a rare or made-up word is spelled"
        f" out of generic fragments, and here it is represented by {pool}.",
        f"* **Ids.** The common tokens have a mean id of {c['mean_id']:,.0f}, the rare ones' pieces"
        f" {r['mean_id']:,.0f} (of {a['vocab']:,}). GPT-2's ids follow the order in which BPE merges were learned,"
        " so low ids are short, very frequent strings. "
        + _cmp(c["mean_id"], r["mean_id"],
               "The rare words' pieces have the lower ids: they are short letter groups learned early, while each"
               " common word is a whole-word token merged later.",
               "The common words' tokens have the lower ids: they were merged early because they are frequent."),
        f"* **Norms.** Mean norm: common **{c['mean_norm']:.4f}**, rare **{r['mean_norm']:.4f}** (ratio"
        f" {ratio:.2f}); the whole vocabulary averages {a['vocab_mean_norm']:.4f}, the first tenth of ids"
        f" {a['first_tenth_norm']:.4f} and the last tenth {a['last_tenth_norm']:.4f}. "
        + _cmp(c["mean_norm"], r["mean_norm"], "The common words have the longer vectors here",
               "The rare words have the longer vectors here")
        + ("; a mean of several fragment vectors is also shorter than its parts when they point in different"
           " directions." if a["pool"] == "mean" and multi else "."),
        f"* **Cosines.** Mean off-diagonal cosine: common **{c['mean_cos']:.3f}**, rare **{r['mean_cos']:.3f}**;"
        f" random pairs of tokens average **{a['random_cos']:.3f}**. "
        + _cmp(r["mean_cos"], c["mean_cos"],
               "The rare words look more alike than the common ones: they are built from the same kind of"
               " letter-fragment tokens, so their vectors share directions instead of carrying distinct meanings.",
               "The common words are at least as alike as the rare ones here.")
        + (" Random pairs well above 0 mean the table is *anisotropic*: every row shares a common direction, so"
           " only differences from that baseline carry meaning." if a["random_cos"] > 0.1 else
           " Random pairs near 0 mean the rows point in roughly independent directions (as in an untrained"
           " table), so any cosine clearly above 0 is a real similarity."),
        "* **How the capacity is spent.** Every one of the"
        f" {a['vocab']:,} rows costs {model.config.n_embd} parameters, but only frequent tokens get enough"
        " gradient updates to move far from their random start and to spread out by meaning; rare tokens stay"
        " close together near the typical vector, and rare *words* get no row at all and must be assembled by the"
        " later layers from fragments." + (" Because `wte` is tied to the output layer, a row's length and direction"
                                           " also decide how easily that token is predicted." if tied else ""),
        "* **Static vs contextual.** A row of `wte` is the same wherever the token appears; the contextual section"
        " below measures whether the blocks then pull the *same* token apart according to its sentence.",
    ]
    if model.config.n_embd < 256:
        lines.append(f"* This model has only d_model = {model.config.n_embd}, so its table is coarser than"
                     " GPT-2's 768 dimensions; a small model trained on a small text has seen few of these words.")
    return "\n".join(lines)


def contextual_figure(res, who: str = ""):
    fig = new_figure(9, 4.2)
    ax = fig.add_subplot(111)
    cos, S = res["cos"], len(res["sentences"])
    xs = list(range(len(res["layers"])))
    for i in range(S):
        for j in range(i + 1, S):
            ax.plot(xs, cos[:, i, j].tolist(), marker="o", lw=1.2, label=f"sentence {i + 1} vs {j + 1}")
    ax.plot(xs, res["mean_cos"], color="black", lw=2.2, label="mean over pairs")
    ax.plot(xs, res["baseline"], color="#868e96", ls="--", lw=1.5, label="baseline: word vs other tokens")
    ax.set_xticks(xs, res["layers"], rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("cosine similarity")
    ax.set_title(f"{who + ': ' if who else ''}{res['word']!r} in {S} sentences: static row, then the hidden state"
                 " after each block", fontsize=10)
    ax.axhline(1.0, color="#ced4da", lw=0.8)
    ax.legend(fontsize=8, loc="best")
    return fig


def contextual_md(res) -> str:
    names, mean, base = res["layers"], res["mean_cos"], res["baseline"]
    lowest = min(range(2, len(mean)), key=lambda k: mean[k]) if len(mean) > 2 else len(mean) - 1
    rows = [f"| {n} | {m:.3f} | {b:.3f} |" for n, m, b in zip(names, mean, base)]
    gap_embed, gap_last = mean[1] - base[1], mean[-1] - base[-1]
    if mean[lowest] < mean[1] - 0.02:
        blocks = (f"The blocks mix in the preceding words and pull the occurrences apart: the lowest similarity is"
                  f" after **{names[lowest]} ({mean[lowest]:.3f})**, and the last block ends at **{mean[-1]:.3f}**.")
    else:
        blocks = (f"Here the blocks do **not** pull the occurrences apart (lowest {mean[lowest]:.3f} after"
                  f" {names[lowest]}, last block {mean[-1]:.3f}): this model has not learned to tell these senses"
                  " apart; a larger trained model such as GPT-2 does.")
    return "\n".join([
        "| stage | mean cosine between sentences | baseline (word vs other tokens) |", "|---|---|---|", *rows, "",
        f"**Static vs contextual.** In `wte` the word is one row, identical in every sentence (cosine"
        f" {mean[0]:.3f}). Adding position embeddings changes it only by position ({mean[1]:.3f}). {blocks}"
        f" Measured against the baseline (how similar the word is to *other* tokens at the same depth; hidden"
        f" states share large common directions, so judge against it, not against 0), the gap goes from"
        f" {gap_embed:.3f} after the embeddings to {gap_last:.3f} after the last block. GPT only sees the words"
        " *before* a token, so the sense-giving words must come earlier in the sentence.",
    ])


# ---- handlers ------------------------------------------------------------------------------------
@user_errors
def on_embeddings(models, name, common, rare, pool, space):
    """(banner, card, words table, tokens table, heatmaps, vocabulary views, summary, explanation)."""
    common_w, rare_w = parse_words(common, "common"), parse_words(rare, "rare")
    pool = check_pool(pool)
    model, tok = get_model(models, name, False)
    a = analyse(model, tok, common_w, rare_w, pool, bool(space))
    return (banner(model), model_card(model), words_frame(a), tokens_frame(model, a), heatmap_figure(a),
            vocab_figure(model, tok, a), summary_md(a), explain(model, a))


@user_errors
def on_neighbours(models, name, word, k, pool, space):
    """Nearest tokens to a word by cosine in wte, as a table."""
    if not str(word or "").strip():
        raise UserError("Type a word or token to find its neighbours.")
    k = clamp_int(k, 1, 50, "Number of neighbours", [])
    model, tok = get_model(models, name, False)
    res = nearest_neighbours(model, tok, check_word(str(word).strip()), k, check_pool(pool), bool(space))
    rows = [[n + 1, repr(x["piece"]), x["id"], round(x["cosine"], 4)] for n, x in enumerate(res["neighbours"])]
    return pd.DataFrame(rows, columns=["rank", "piece", "id", "cosine"])


@user_errors
def on_contextual(models, name, word, sentences, ctx_model=SAME_MODEL):
    """Per-layer cosine between one word's hidden states in several sentences: (figure, markdown).
    ctx_model: the picked GPT (default), bert-base-uncased, or a directory with a BERT saved by save_pretrained."""
    lines = [s for s in str(sentences or "").splitlines() if s.strip()]
    if len(lines) > MAX_SENTENCES:
        raise UserError(f"At most {MAX_SENTENCES} sentences, please.")
    if any(len(s) > MAX_SENTENCE_CHARS for s in lines):
        raise UserError(f"A sentence here is at most {MAX_SENTENCE_CHARS:,} characters.")
    check_word(str(word or "").strip())
    model, tok = get_model(models, name, False)
    if str(ctx_model or "").strip() not in ("", SAME_MODEL):
        return bert_contextual(models, model, tok, lines, str(word or ""), str(ctx_model).strip())
    res = contextual_similarity(model, tok, lines, str(word or ""))
    return contextual_figure(res), contextual_md(res)


def probe_sentences(lines, word: str) -> list[str]:
    """The same words before the word, different words after it: "The channel, <rest of sentence i>"."""
    tails = [re.sub(re.escape(word), "", s, flags=re.I).strip(" ,.") for s in lines]
    return [f"The {word}, {t}" for t in tails]


def offline_md(ctx_model: str) -> str:
    """What the BERT option says when the Hugging Face Hub cannot be reached: one sentence."""
    return (f"⚠️ **BERT ({ctx_model}) cannot be shown here:** it must be downloaded from the Hugging Face Hub, and"
            " this server is offline (it cannot reach the Hub).")


def bert_contextual(models, model, tok, lines, word, ctx_model):
    """BERT's per-layer plot, explained against the picked GPT on the same sentences and on a probe."""
    try:
        bert, btok = load_bert(ctx_model, getattr(models, "hub_timeout", 5.0))
    except ConnectionError:  # offline (or the Hub is down): one plain sentence, no exception names
        return None, offline_md(ctx_model)
    except OSError as e:
        raise UserError(f"{ctx_model} could not be loaded: {str(e).splitlines()[0] if str(e) else e}") from None
    res = bert_contextual_similarity(bert, btok, lines, word)
    try:
        gpt = contextual_similarity(model, tok, lines, word)
        probe = probe_sentences(lines, word)
        pb, pg = bert_contextual_similarity(bert, btok, probe, word), contextual_similarity(model, tok, probe, word)
    except ValueError:  # e.g. the GPT's case-sensitive match fails: show BERT alone
        gpt = pb = pg = None
    name = getattr(getattr(model, "info", None), "name", "GPT")
    return contextual_figure(res, f"BERT ({ctx_model.rstrip('/').split('/')[-1]})"), bert_md(res, gpt, pb, pg, name)


def bert_md(res, gpt, pb, pg, gpt_name: str) -> str:
    """The table for BERT plus the encoder-vs-decoder comparison, read from the numbers."""
    names, mean, base = res["layers"], res["mean_cos"], res["baseline"]
    low = min(range(1, len(mean)), key=lambda k: mean[k])
    rows = [f"| {n} | {m:.3f} | {b:.3f} |" for n, m, b in zip(names, mean, base)]
    out = ["| BERT stage | mean cosine between sentences | baseline (word vs other tokens) |", "|---|---|---|",
           *rows, "",
           f"**BERT** ({len(names) - 2} encoder layers) takes {res['word']!r} from **{mean[1]:.3f}** after its"
           f" embedding layer to **{mean[low]:.3f}** at {names[low]} (last layer {mean[-1]:.3f}; the baseline there"
           f" is {base[-1]:.3f})."]
    if gpt is not None:
        g = gpt["mean_cos"]
        glow = min(range(1, len(g)), key=lambda k: g[k])
        out.append(f"The GPT ({gpt_name}) on the same sentences goes from {g[1]:.3f} to {g[glow]:.3f} at"
                   f" {gpt['layers'][glow]} (last block {g[-1]:.3f}).")
    if pb is not None and pg is not None:
        same = pg["mean_cos"][-1] > 0.9999
        out += ["", "**Bidirectional encoder vs causal decoder.** A probe keeps the words *before*"
                f" {res['word']!r} the same and changes only the words after it ({pb['sentences'][0]!r}, ...)."
                f" The GPT's vectors for it: mean cosine **{pg['mean_cos'][-1]:.4f}** after its last block"
                + (" — identical, because in a causal decoder position *t* is computed from positions ≤ *t* only,"
                   " so words that come later cannot change it." if same else
                   " — it should be 1: a causal decoder only reads earlier positions.")
                + f" BERT's: **{pb['mean_cos'][-1]:.4f}** after its last layer"
                + (": every position of an encoder attends to the whole sentence, left *and* right, so the words"
                   " after the word change its vector too. That is why an encoder such as BERT is the usual tool"
                   " for contextual word embeddings, while a GPT reads (and generates) left to right."
                   if pb["mean_cos"][-1] < pg["mean_cos"][-1] else
                   " (this BERT barely reacts to the words after the word: an untrained or tiny model).")]
    return "\n".join(out)


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
