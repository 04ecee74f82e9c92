"""The Embeddings tab's inputs and handlers: the start-up values and limits, the word lists checked, both groups
analysed (vectors, norms, cosines), and the handlers for Compare, nearest neighbours and the contextual section (the
picked GPT, or BERT when it can be downloaded)."""
from __future__ import annotations

import re

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
    pca_2d,
    vocab_norms,
    word_vectors,
)

from ..kit.common import UserError, banner, clamp_int, get_model, model_card, user_errors
from .figures import contextual_figure, heatmap_figure, vocab_figure
from .tables import bert_md, contextual_md, explain, summary_md, tokens_frame, words_frame

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
