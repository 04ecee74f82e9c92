"""Looking at the token embedding table `wte`: word vectors, norms, cosines, neighbours, a 2-D map, and how
one word's hidden state changes with its context.

A word can be several BPE tokens; it is represented by its first token's row of `wte` or by the mean of its
tokens' rows (`pool`). Whole-vocabulary numbers (norms, the PCA map) are cached per model and recomputed only
if `wte` changes in place. All functions are pure: numbers in, numbers out (the UI draws the plots).
"""
from __future__ import annotations

import threading
import weakref
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

POOLS = ("mean", "first")
PCA_SAMPLE = 3000  # tokens in the 2-D map: enough to see the shape, quick to draw
PCA_SEED = 0

_vocab_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> {(what, version): value}
_lock = threading.RLock()  # UI handlers run in threads


def _wte(model) -> torch.Tensor:
    return model.transformer.wte.weight  # (V, C)


def _cached(model, what: str, compute):
    """Per-model cache entry, invalidated when `wte` is modified in place (its _version changes)."""
    w = _wte(model)
    key = (what, w.data_ptr(), w._version)
    with _lock:
        entries = _vocab_cache.setdefault(model, {})
        if key not in entries:
            for k in [k for k in entries if k[0] == what]:  # stale versions of the same quantity
                del entries[k]
            entries[key] = compute()
        return entries[key]


def word_ids(tok, word: str, space: bool = False) -> list[int]:
    """Token ids of one word: exactly as typed, or with a leading space as it appears mid-sentence."""
    ids = tok.encode((" " + word) if space else word)
    if not ids:
        raise ValueError(f"{word!r} gives no tokens.")
    return ids


@torch.no_grad()
def word_vectors(model, tok, words: Sequence[str], pool: str = "mean", space: bool = False) -> list[dict]:
    """One dict per word: word, ids, pieces, token_norms (per token), vector (C,) float32, norm (of vector).

    pool="first": the first token's embedding; pool="mean": the mean of the word's token embeddings.
    For a single-token word both are that token's row of wte.
    """
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {', '.join(POOLS)} (got {pool!r}).")
    words = [w.strip() for w in words if w and w.strip()]
    if not words:
        raise ValueError("Enter at least one word.")
    wte = _wte(model)
    out = []
    for w in words:
        ids = word_ids(tok, w, space)
        rows = wte[torch.tensor(ids)].float()  # (n_tokens, C)
        vec = rows[0] if pool == "first" else rows.mean(0)  # (C,)
        out.append({"word": w, "ids": ids, "pieces": [tok.piece(i) for i in ids],
                    "token_norms": rows.norm(dim=-1).tolist(), "vector": vec, "norm": float(vec.norm())})
    return out


def cosine_matrix(vectors: torch.Tensor) -> torch.Tensor:
    """vectors (N, C) -> (N, N) cosine similarities (1 on the diagonal)."""
    v = F.normalize(vectors.float(), dim=-1)
    return (v @ v.T).clamp(-1.0, 1.0)


def mean_off_diagonal(m: torch.Tensor) -> float:
    """Mean of the off-diagonal entries of a square matrix (nan for 1x1)."""
    n = m.size(0)
    if n < 2:
        return float("nan")
    return float((m.sum() - m.diagonal().sum()) / (n * n - n))


@torch.no_grad()
def vocab_norms(model) -> torch.Tensor:
    """L2 norm of every row of wte, (V,) float32 (cached)."""
    return _cached(model, "norms", lambda: _wte(model).float().norm(dim=-1))


def norm_ranks(model, ids: Sequence[int]) -> list[int]:
    """Rank of each token's norm in the whole vocabulary (1 = largest norm)."""
    norms = vocab_norms(model)
    return [int((norms > norms[i]).sum()) + 1 for i in ids]


@torch.no_grad()
def nearest_neighbours(model, tok, word: str, k: int = 10, pool: str = "mean", space: bool = False) -> dict:
    """The k tokens whose wte rows have the highest cosine with the word's vector (its own tokens excluded).

    Returns {word, ids, pieces, neighbours: [{id, piece, cosine}]}.
    """
    wv = word_vectors(model, tok, [word], pool, space)[0]
    wte = _wte(model)
    # cosine = (wte @ q) / (|wte_i| |q|); the matvec avoids a normalised (V, C) copy of the table
    scores = (wte.float() @ wv["vector"]) / (vocab_norms(model).clamp_min(1e-12) * max(wv["norm"], 1e-12))  # (V,)
    scores[torch.tensor(wv["ids"])] = float("-inf")
    k = max(1, min(int(k), scores.numel() - len(set(wv["ids"]))))
    top = torch.topk(scores, k)
    return {"word": wv["word"], "ids": wv["ids"], "pieces": wv["pieces"],
            "neighbours": [{"id": int(i), "piece": tok.piece(int(i)), "cosine": float(s)}
                           for s, i in zip(top.values.tolist(), top.indices.tolist())]}


def sample_ids(vocab_size: int, n: int = PCA_SAMPLE, seed: int = PCA_SEED) -> torch.Tensor:
    """A fixed, seeded sample of token ids, sorted, (min(n, V),)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(vocab_size, generator=g)[:min(n, vocab_size)].sort().values


@torch.no_grad()
def _pca_fit(model, n: int, seed: int) -> dict:
    ids = sample_ids(_wte(model).size(0), n, seed)
    x = _wte(model)[ids].float()  # (n, C)
    mean = x.mean(0)  # (C,)
    xc = x - mean
    # eigenvectors of the C x C covariance: deterministic (unlike randomized PCA) and cheap for C <= 1600
    cov = xc.T @ xc / max(len(ids) - 1, 1)  # (C, C)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    comps = evecs[:, [-1, -2]] if evecs.size(1) > 1 else torch.cat([evecs, torch.zeros_like(evecs)], 1)  # (C, 2)
    # fix each axis' sign (an eigenvector's sign is arbitrary) so the map looks the same every time
    signs = torch.sign(comps[comps.abs().argmax(0), torch.arange(2)])
    comps = comps * torch.where(signs == 0, torch.ones_like(signs), signs)
    total = float(evals.clamp_min(0).sum())
    top = evals.flip(0)[:2].clamp_min(0)
    explained = [float(v) / total if total > 0 else 0.0 for v in top.tolist()] + [0.0] * (2 - top.numel())
    return {"ids": ids, "xy": xc @ comps, "mean": mean, "components": comps, "explained": explained}


@torch.no_grad()
def pca_2d(model, chosen_ids: Sequence[int] = (), n: int = PCA_SAMPLE, seed: int = PCA_SEED) -> dict:
    """A 2-D PCA map of wte, fitted on a fixed seeded sample of n token ids (cached per model).

    The chosen ids are projected onto the same two axes (added to the sample if missing).
    Returns {ids (n,), xy (n, 2), chosen_ids, chosen_xy (k, 2), explained: [ratio PC1, ratio PC2]}.
    """
    fit = _cached(model, f"pca:{n}:{seed}", lambda: _pca_fit(model, n, seed))
    chosen = torch.tensor(list(chosen_ids), dtype=torch.long)
    chosen_xy = (_wte(model)[chosen].float() - fit["mean"]) @ fit["components"] if len(chosen) else \
        torch.zeros(0, 2)
    return {"ids": fit["ids"], "xy": fit["xy"], "chosen_ids": chosen.tolist(), "chosen_xy": chosen_xy,
            "explained": fit["explained"]}


def find_word(ids: Sequence[int], candidates: Sequence[Sequence[int]]) -> Optional[list[int]]:
    """Positions of the last occurrence of any candidate token sequence in ids (None if absent)."""
    ids = list(ids)
    for cand in candidates:
        n = len(cand)
        for s in range(len(ids) - n, -1, -1):
            if ids[s:s + n] == list(cand):
                return list(range(s, s + n))
    return None


@torch.no_grad()
def contextual_similarity(model, tok, sentences: Sequence[str], word: str) -> dict:
    """How similar one word's hidden state is across sentences, layer by layer.

    The word is looked for with a leading space (mid-sentence) and as typed; its vector in each sentence is
    the mean of its tokens' residual-stream states. Layers: "wte" (the static row, identical everywhere),
    "embed" (wte + wpe: differs only by position), then the output of each block.
    Returns {layers: [names], cos: (L+2, S, S), mean_cos: [per layer], baseline: [per layer], positions}.
    baseline = mean cosine between the word and the other tokens of the sentences (position 0 excluded: the
    first token is an outlier 'attention sink'), i.e. what "unrelated" looks like at that depth.
    """
    word, sentences = word_and_sentences(word, sentences)
    cands = [tok.encode(" " + word), tok.encode(word)]
    block = model.config.block_size
    stages, positions = [], []
    for k, s in enumerate(sentences, 1):
        ids = tok.encode(s)
        if len(ids) > block:
            raise ValueError(f"Sentence {k} is {len(ids)} tokens; this model's context is {block}.")
        pos = find_word(ids, cands)
        if pos is None:
            raise ValueError(f"Sentence {k} does not contain {word!r} (the match is case-sensitive).")
        positions.append(pos)
        hidden = model.hidden_states(torch.tensor([ids]))  # list of (1, T, C)
        wte_row = model.transformer.wte.weight[torch.tensor(ids)[pos]].float().mean(0)  # (C,)
        states = [wte_row] + [h[0, pos].float().mean(0) for h in hidden]  # L+2 of (C,)
        rest = [i for i in range(1, len(ids)) if i not in pos]
        ctx = [model.transformer.wte.weight[torch.tensor(ids)[rest]].float()] + \
            [h[0, rest].float() for h in hidden]  # (T_rest, C) per layer
        stages.append((states, ctx))
    names = ["wte (static)", "embed (wte+wpe)"] + [f"block {i}" for i in range(len(stages[0][0]) - 2)]
    return stage_similarity(word, sentences, positions, stages, names)


def word_and_sentences(word: str, sentences: Sequence[str]) -> tuple[str, list[str]]:
    """The inputs of a contextual comparison (GPT-2's or BERT's): a word and at least two non-empty sentences."""
    sentences = [s.strip() for s in sentences if s and s.strip()]
    word = (word or "").strip()
    if not word:
        raise ValueError("Enter the word to follow across sentences.")
    if len(sentences) < 2:
        raise ValueError("Enter at least two sentences (one per line) that contain the word.")
    return word, sentences


def stage_similarity(word, sentences, positions, stages, names) -> dict:
    """Cosine similarity of one word's vectors across sentences, stage by stage (shared by GPT-2 and BERT).

    stages: one (states, ctx) per sentence; states[l] is the word's (C,) vector at stage l, ctx[l] the (T_rest, C)
    vectors of the sentence's other tokens at that stage (their mean cosine with the word is the "unrelated"
    baseline). Returns {word, sentences, layers: names, cos: (L, S, S), mean_cos, baseline, positions}.
    """
    n_stages = len(stages[0][0])
    cos = torch.stack([cosine_matrix(torch.stack([st[li] for st, _ in stages])) for li in range(n_stages)])
    baseline = []
    for li in range(n_stages):
        sims = [F.cosine_similarity(ctx[li], st[li][None], dim=-1) for st, ctx in stages if len(ctx[li])]  # (T_rest,)
        baseline.append(float(torch.cat(sims).mean()) if sims else float("nan"))
    return {"word": word, "sentences": sentences, "layers": names, "cos": cos,
            "mean_cos": [mean_off_diagonal(c) for c in cos], "baseline": baseline, "positions": positions}
