"""`python -m tinygpt embed | attention`: look inside a model (the Embeddings and Attention tabs' commands):
token ids, embedding norms and cosines of words; every layer's and head's attention weights for a text."""
from __future__ import annotations

from ..defaults import ATTENTION, EMBED
from .common import emit, load, model_options, read_start, say


def cmd_embed(a) -> int:
    import torch

    from ..interpret.embeddings import cosine_matrix, word_vectors

    words = [w.strip() for w in str(a.words).split(",") if w.strip()]
    if not words:
        raise ValueError("--words needs at least one word, e.g. --words dog,city,xqzt")
    model, tok = load(a)
    rows = word_vectors(model, tok, words, pool=a.pool, space=a.space)
    cos = cosine_matrix(torch.stack([r["vector"] for r in rows]))  # (N, N)
    report = {"model": model.info.name, "fallback": model.info.fallback, "pool": a.pool, "space": a.space,
              "words": [{k: r[k] for k in ("word", "ids", "pieces", "norm")} for r in rows],
              "cosine": [[round(v, 6) for v in row] for row in cos.tolist()]}
    width = max(len(w) for w in words)
    lines = [f"{r['word']:>{width}}  norm {r['norm']:.4f}  ids {r['ids']}  pieces {r['pieces']}" for r in rows]
    lines += [f"cosine ({a.pool} of each word's tokens):"]
    lines += [f"{w:>{width}}  " + " ".join(f"{v:+.3f}" for v in row) for w, row in zip(words, cos.tolist())]
    return emit(a, report, lines)


def cmd_attention(a) -> int:
    import torch

    from ..interpret.attention import attention_maps, head_patterns

    text = read_start(a.text)
    if not text.strip():
        raise ValueError("--text is empty: give the text whose attention to show.")
    model, tok = load(a)
    ids = tok.encode(text)
    if not ids:
        raise ValueError("--text gives no tokens.")
    block = model.config.block_size
    if len(ids) > block:
        say(f"note: {len(ids)} tokens is longer than the context; kept the first {block}.")
        ids = ids[:block]
    layers = model.check_layers(a.layers)
    maps = attention_maps(model, torch.tensor([ids]), layers)  # per block: (1, nh, T, T)
    report = {"tokens": [tok.piece(i) for i in ids],
              "weights": [[[[round(w, 6) for w in row] for row in head] for head in m[0].float().tolist()]
                          for m in maps]}

    def lines(_):
        yield f"{len(ids)} tokens: " + " | ".join(repr(t) for t in report["tokens"])
        yield "layer head  previous  first(sink)  self  max-weight  entropy  pattern"
        for r in head_patterns(maps, layers, model.config.causal):
            yield (f"{r['layer']:>5} {r['head']:>4}  {r['previous']:8.3f}  {r['first']:11.3f}  {r['self']:4.3f}  "
                   f"{r['max_weight']:10.3f}  {r['entropy']:7.3f}  {r['pattern']}")
    return emit(a, report, lines)


def register(sub) -> None:
    e = sub.add_parser("embed", parents=[model_options()],
                       help="token ids, embedding norms and cosine similarities of words")
    e.add_argument("--words", required=True, help="comma-separated, e.g. dog,city,xqzt")
    e.add_argument("--pool", choices=["first", "mean"], default=EMBED["pool"],
                   help="a multi-token word is its first token's embedding or the mean of its tokens'")
    e.add_argument("--space", action="store_true", default=EMBED["space"],
                   help="encode ' word' (as mid-sentence) instead of 'word'")
    e.set_defaults(func=cmd_embed)

    w = sub.add_parser("attention", parents=[model_options()],
                       help="attention weights of every layer and head for a text (--json: [layer][head][query][key])")
    w.add_argument("--text", required=True, help="the text, or FILE:path to read it from a file")
    w.add_argument("--layers", default=ATTENTION["layers"], help="blocks to run and show, e.g. 0,5 (default: all)")
    w.set_defaults(func=cmd_attention)
