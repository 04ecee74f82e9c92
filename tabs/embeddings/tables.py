"""The Embeddings tab's tables and text read from the numbers: how each word tokenizes, per-token ids and norms,
the summary table, the Explain, and the contextual section's table and reading (GPT, and BERT next to it)."""
from __future__ import annotations

import pandas as pd

from tinygpt.interpret.embeddings import norm_ranks


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
