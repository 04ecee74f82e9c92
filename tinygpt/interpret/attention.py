"""Attention patterns of a loaded model: the softmax weights of every layer and head, scores that name the
common patterns (previous token, first token / attention sink, self), and two "what if" views of one head:
without the causal mask (what position i could see) and without the 1/sqrt(d_k) scale (how much sharper).

    attention_maps(model, idx)   the weights exactly as the forward pass uses them, one (B, nh, T, T) per block
    query_key(model, idx)        q and k of every head, read from each block's own c_attn (after RoPE)
    attention_with_qk(model, idx)  both from one forward pass
    softmax_weights(scores, ...) softmax of q.k^T with a chosen scale, with or without the causal mask
    pattern_scores(att)          previous / first / self weight, entropy, max weight per head
    scale_removed(model, idx)    entropy and max weight of every head with and without the 1/sqrt(d_k) scale
    analyse(model, tok, prompt)  all of the above for one prompt, as the Attention tab shows it (AttentionCache keeps
                                 the last few, so another layer, head or view is instant); head_weights picks one head
"""
from __future__ import annotations

import math
import threading
import weakref
from collections import OrderedDict
from typing import Optional, Sequence

import torch

from ..positions import rope_cos_sin, rope_rotate

PATTERNS = ("previous token", "first token (sink)", "self", "broad", "mixed")
PATTERN_THRESHOLD = 0.5  # a head "is" a pattern when more than half of its weight goes there on average
BROAD_RATIO = 0.8  # entropy above 80% of the uniform row's: the head averages over what it sees
MAX_MAP_BYTES = 1_500_000_000  # attention weights of all heads kept for one prompt (GPT-2 at 1,024 tokens: 0.6 GB)
HEAD_VIEWS = ("model", "no mask", "no scale")  # head_weights: the model's own, without the mask, without 1/sqrt(d_k)


def check_model(model) -> None:
    """One plain sentence for anything that has no attention weights to show."""
    if not hasattr(model, "attention_weights") or not hasattr(model, "config"):
        raise ValueError("This model has no attention weights to show (it is not a tinygpt GPT).")


def as_ids(model, idx) -> torch.Tensor:
    """Token ids as a (B, T) long tensor: a list of ints or a (T,) tensor becomes one row. Checked against the
    model's context length (one plain sentence when it does not fit)."""
    check_model(model)
    x = torch.as_tensor(idx)
    if x.ndim == 1:
        x = x.unsqueeze(0)
    if x.ndim != 2 or x.shape[1] < 1 or x.shape[0] < 1:
        raise ValueError("The token ids must be a (B, T) tensor or a list of at least one id.")
    if x.dtype.is_floating_point or x.dtype == torch.bool:
        raise ValueError("Token ids must be whole numbers.")
    T = x.shape[1]
    if T > model.config.block_size:
        raise ValueError(f"{T} tokens is longer than the model's context ({model.config.block_size} tokens).")
    return x.to(torch.long)


@torch.no_grad()
def attention_maps(model, idx, layers=None) -> list[torch.Tensor]:
    """The softmax attention weights of each block run, exactly as the forward pass uses them.

    idx: (B, T) token ids (a list or a (T,) tensor is one sequence). layers: the blocks to run (None = all).
    Returns one (B, n_head, T, T) tensor per block run: row i holds query i's weights over the keys (they sum
    to 1; above the diagonal they are 0 when the model is causal). For a GPT-2 checkpoint these equal
    transformers' `output_attentions` with eager attention.
    """
    x = as_ids(model, idx)  # checks the model first: one plain sentence for anything without attention
    return model.attention_weights(x, layers)


@torch.no_grad()
def query_key(model, idx, layers=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """q and k of every head of each block run, float32 (B, n_head, T, head_dim) each, as the block computes them.

    Each block's input is the residual stream the forward pass gives it (model.hidden_states); q and k come
    from the block's own ln_1 and c_attn, are split into heads, rotated by RoPE when the model uses it, and
    (grouped-query attention) each k head is repeated for the query heads that share it. So
    softmax_weights(q @ k^T, block.attn.scale) is attention_maps(...) (tests check it to 1e-6).
    """
    x = as_ids(model, idx)
    layers = model.check_layers(layers)
    return _qk_from_inputs(model, model.hidden_states(x, layers), layers)


@torch.no_grad()
def attention_with_qk(model, idx, layers=None) -> tuple[list, list]:
    """(attention_maps(...), query_key(...)) from ONE forward pass: the pass records the weights and each block's
    input, and q, k are recomputed from those inputs with the block's ln_1 and c_attn only."""
    x = as_ids(model, idx)
    layers = model.check_layers(layers)
    hidden, maps = [], []
    model._run(x, layers, hidden=hidden, attn=maps)  # the forward pass of attention_maps, inputs kept
    return maps, _qk_from_inputs(model, hidden, layers)


def _qk_from_inputs(model, hidden: list, layers: list) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """hidden[s] is the residual stream entering the s-th block run: its q and k heads, as the block makes them."""
    c = model.config
    T = hidden[0].shape[1]
    rope = rope_cos_sin(torch.arange(T), c.head_dim, c.rope_base) if c.pos_encoding == "rope" else None
    out = []
    for slot, i in enumerate(layers):
        block = model.transformer.h[i]
        attn = block.attn
        B = hidden[slot].shape[0]
        qkv = attn.c_attn(block.ln_1(hidden[slot]))  # (B, T, A + 2 * kv)
        A, kv = attn.n_head * attn.hs, attn.n_kv_head * attn.hs
        q, k, _ = qkv.split([A, kv, kv], dim=2)
        q = q.view(B, T, attn.n_head, attn.hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, attn.n_kv_head, attn.hs).transpose(1, 2)  # (B, nkv, T, hs)
        if rope is not None:
            q, k = rope_rotate(q, *rope), rope_rotate(k, *rope)
        if attn.n_kv_head != attn.n_head:
            k = k.repeat_interleave(attn.n_head // attn.n_kv_head, dim=1)  # (B, nh, T, hs)
        out.append((q.float(), k.float()))
    return out


def raw_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """q (..., T, hs), k (..., S, hs) -> the raw dot products q.k^T (..., T, S), before any scale or mask."""
    return q @ k.transpose(-2, -1)


def softmax_weights(scores: torch.Tensor, scale: float = 1.0, causal: bool = True) -> torch.Tensor:
    """softmax(scale * scores) over the keys (last axis); causal: key j > query i gets weight 0 (the mask).

    scores (..., T, T). With scale = 1/sqrt(head_dim) and the model's causal flag this is the forward pass;
    scale = 1 is the same head without the 1/sqrt(d_k); causal=False shows what each query could see."""
    att = scores.float() * scale
    if causal:
        T, S = att.shape[-2:]
        visible = torch.ones(T, S, dtype=torch.bool, device=att.device).tril(diagonal=S - T)  # (T, S)
        att = att.masked_fill(~visible, float("-inf"))
    return torch.softmax(att, dim=-1)


def _queries(T: int) -> slice:
    """The queries scored: 1 .. T-1 (query 0 sees only itself under the mask, which says nothing)."""
    return slice(1, None) if T > 1 else slice(0, None)


def pattern_scores(att: torch.Tensor, causal: bool = True) -> dict:
    """Numbers that name the common patterns of attention weights att (..., T, T), each (...,) float32.

    Means over the queries i = 1 .. T-1 (query 0 can only look at itself when causal; a single-token prompt
    uses query 0):
      previous     weight on key i - 1 (previous-token heads, the first half of induction circuits)
      first        weight on key 0 (the "attention sink": heads park unused weight on the first token)
      self         weight on key i itself (the diagonal)
      max_weight   the largest weight of the row (1 = one-hot)
      entropy      -sum w log w in nats (0 = one-hot)
      entropy_ratio  entropy / ln(number of visible keys): 1 = uniform over what the query may see
    For query 1, key i - 1 is key 0, so `previous` and `first` both count it.
    """
    att = torch.as_tensor(att).float()
    if att.ndim < 2 or att.shape[-1] != att.shape[-2] or att.shape[-1] < 1:
        raise ValueError("Attention weights must be square (..., T, T) matrices.")
    T = att.shape[-1]
    rows = _queries(T)
    idx = torch.arange(T)
    ent = -torch.special.xlogy(att, att).sum(-1)  # (..., T)
    visible = (idx + 1 if causal else torch.full((T,), T)).float()  # keys query i may see
    max_ent = visible.log()
    ratio = torch.where(max_ent > 0, ent / max_ent.clamp_min(1e-12), torch.zeros_like(ent))
    prev = att[..., idx[1:], idx[:-1]] if T > 1 else torch.zeros(att.shape[:-2] + (1,))  # (..., T-1)
    return {
        "previous": prev.mean(-1),
        "first": att[..., rows, 0].mean(-1),
        "self": att.diagonal(dim1=-2, dim2=-1)[..., rows].mean(-1),
        "max_weight": att.max(-1).values[..., rows].mean(-1),
        "entropy": ent[..., rows].mean(-1),
        "entropy_ratio": ratio[..., rows].mean(-1),
    }


def name_pattern(previous: float, first: float, self_: float, entropy_ratio: float) -> str:
    """One name for a head from its scores: the pattern holding most of the weight if that is more than half,
    'broad' when it spreads its weight almost uniformly, otherwise 'mixed'."""
    best, name = max((previous, "previous token"), (first, "first token (sink)"), (self_, "self"))
    if best > PATTERN_THRESHOLD:
        return name
    return "broad" if entropy_ratio > BROAD_RATIO else "mixed"


def head_patterns(maps: Sequence[torch.Tensor], layers: Optional[Sequence[int]] = None, causal: bool = True) \
        -> list[dict]:
    """One row per (layer, head) for a list of (B, nh, T, T) maps (batch averaged): layer, head, previous, first,
    self, max_weight, entropy, entropy_ratio (floats) and pattern (its name)."""
    layers = list(range(len(maps))) if layers is None else list(layers)
    per = [{k: v.mean(0) if v.ndim > 1 else v for k, v in pattern_scores(att, causal).items()} for att in maps]
    return pattern_rows({k: torch.stack([p[k] for p in per]) for k in per[0]}, layers)


def pattern_rows(scores: dict, layers: Sequence[int]) -> list[dict]:
    """Rows {layer, head, previous, first, self, max_weight, entropy, entropy_ratio, pattern} from pattern scores
    stacked per layer: {name: (n_layers, nh)} (as scale_removed's "scaled" and "unscaled")."""
    rows = []
    for li, layer in enumerate(layers):
        for h in range(scores["entropy"].shape[1]):
            r = {"layer": int(layer), "head": h, **{k: float(v[li, h]) for k, v in scores.items()}}
            r["pattern"] = name_pattern(r["previous"], r["first"], r["self"], r["entropy_ratio"])
            rows.append(r)
    return rows


def future_weight(unmasked: torch.Tensor) -> torch.Tensor:
    """For weights computed without the causal mask (..., T, T): the weight each query puts on later keys
    (j > i), (..., T). What the mask takes away: with the mask it is exactly 0."""
    T = unmasked.shape[-1]
    future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)
    return (unmasked.float() * future).sum(-1)


@torch.no_grad()
def scale_removed(model, idx, layers=None, qk: Optional[list] = None, maps: Optional[list] = None) -> dict:
    """How much sharper every head becomes when its scores are not divided by sqrt(d_k).

    For each block run and head the softmax is recomputed from the model's own q.k^T (query_key) twice: with
    the block's scale (the real weights) and with scale 1 (the scores sqrt(head_dim) times larger). Returns
    {layers, head_dim, factor (= 1 / the model's scale), causal,
     scaled: {previous, first, self, max_weight, entropy, entropy_ratio} (the names of pattern_scores) each
     (n_layers_run, nh) float32, batch averaged; unscaled: {...} likewise,
     score_std: (n_layers_run,) std of the scaled visible scores}. Means over queries 1 .. T-1 as pattern_scores.
    qk, maps: the outputs of query_key / attention_maps for these ids when already computed (attention_with_qk
    gives both from one pass); the model's own weights then stand for the scaled softmax.
    """
    layers = model.check_layers(layers)
    if qk is None:
        maps, qk = attention_with_qk(model, idx, layers)
    c = model.config
    out = {"layers": layers, "head_dim": c.head_dim, "causal": c.causal, "scaled": {}, "unscaled": {},
           "score_std": []}
    keys = ("previous", "first", "self", "max_weight", "entropy", "entropy_ratio")
    per = {"scaled": {k: [] for k in keys}, "unscaled": {k: [] for k in keys}}
    scale = None
    for slot, ((q, k), i) in enumerate(zip(qk, layers)):
        scale = model.transformer.h[i].attn.scale
        s = raw_scores(q, k)  # (B, nh, T, T)
        T = s.shape[-1]
        vis = torch.ones(T, T, dtype=torch.bool)
        vis = vis.tril() if c.causal else vis
        out["score_std"].append(float(s[..., vis].std()) * scale if vis.sum() > 1 else 0.0)
        for label, sc in (("scaled", scale), ("unscaled", 1.0)):
            w = maps[slot].float() if label == "scaled" and maps is not None else softmax_weights(s, sc, c.causal)
            p = pattern_scores(w, c.causal)
            for key in keys:
                per[label][key].append(p[key].mean(0))  # (nh,) batch averaged
    for label in per:
        out[label] = {k: torch.stack(v) for k, v in per[label].items()}  # (L, nh)
    out["factor"] = 1.0 / scale if scale else 1.0
    out["score_std"] = torch.tensor(out["score_std"])
    return out


def scale_summary(res: dict) -> dict:
    """Plain numbers from scale_removed: the means over all heads with and without the scale, and the head
    whose entropy drops the most."""
    s, u = res["scaled"], res["unscaled"]
    drop = s["entropy"] - u["entropy"]  # (L, nh)
    flat = int(drop.argmax())
    nh = drop.shape[1]
    return {"entropy_scaled": float(s["entropy"].mean()), "entropy_unscaled": float(u["entropy"].mean()),
            "max_weight_scaled": float(s["max_weight"].mean()), "max_weight_unscaled": float(u["max_weight"].mean()),
            "ratio_scaled": float(s["entropy_ratio"].mean()), "ratio_unscaled": float(u["entropy_ratio"].mean()),
            "sharper_share": float((u["entropy"] < s["entropy"] - 1e-6).float().mean()),
            "most_layer": res["layers"][flat // nh], "most_head": flat % nh, "most_drop": float(drop.max()),
            "most_before": float(s["entropy"].flatten()[flat]), "most_after": float(u["entropy"].flatten()[flat]),
            "factor": res["factor"], "head_dim": res["head_dim"],
            "sqrt_head_dim": math.sqrt(res["head_dim"])}


__all__ = ["PATTERNS", "as_ids", "attention_maps", "attention_with_qk", "check_model", "future_weight",
           "head_patterns", "name_pattern", "pattern_rows", "pattern_scores", "query_key", "raw_scores",
           "scale_removed", "scale_summary", "softmax_weights"]


# ---- one prompt analysed (what the Attention tab shows), and a cache of the last few ---------------------------
def token_label(piece: str) -> str:
    """A token as shown on an axis: new lines and tabs visible, a leading space as '␣'."""
    s = piece.replace("\n", "\\n").replace("\t", "\\t")
    return "␣" + s[1:] if s.startswith(" ") else s


def prompt_ids(model, tok, prompt: str) -> tuple[list[int], list[str]]:
    """(ids, notes): the prompt tokenized, cropped to the context and to the memory budget (MAX_MAP_BYTES for the
    weights of every head), each crop said in one sentence of `notes`."""
    check_model(model)
    notes: list = []
    ids = tok.encode(prompt)
    if not ids:
        raise ValueError("The prompt gives no tokens: type some text.")
    c = model.config
    if len(ids) > c.block_size:
        notes.append(f"The prompt has {len(ids):,} tokens, more than the model's context of {c.block_size:,}: "
                     f"cropped to its first {c.block_size:,} tokens.")
        ids = ids[:c.block_size]
    cap = int(math.sqrt(MAX_MAP_BYTES / (4 * c.n_layer * c.n_head)))
    if len(ids) > cap:
        notes.append(f"Cropped to the first {cap:,} tokens: the weights of all {c.n_layer * c.n_head:,} heads at "
                     f"{len(ids):,} tokens would need more than {MAX_MAP_BYTES / 1e9:.1f} GB.")
        ids = ids[:cap]
    return ids, notes


@torch.no_grad()
def analyse(model, tok, prompt: str) -> dict:
    """Everything about one prompt's attention: tokens, the weights of every head (nh, T, T) per layer, q and k
    per layer, the pattern rows (with each head's entropy and largest weight without the scale), the scale-removed
    scores and their summary. `model` is held weakly (the cache must not keep an evicted model alive)."""
    ids, notes = prompt_ids(model, tok, prompt)
    x = as_ids(model, ids)  # (1, T)
    maps1, qk = attention_with_qk(model, x)  # one forward pass: per layer (1, nh, T, T), and (q, k) (1, nh, T, hs)
    maps = [m[0].float() for m in maps1]  # per layer (nh, T, T)
    sr = scale_removed(model, x, qk=qk, maps=maps1)  # pattern scores with the scale (the model's) and without
    rows = pattern_rows(sr["scaled"], sr["layers"])
    for r in rows:  # the same head without the scale, next to its other scores
        r["entropy_unscaled"] = float(sr["unscaled"]["entropy"][r["layer"], r["head"]])
        r["max_weight_unscaled"] = float(sr["unscaled"]["max_weight"][r["layer"], r["head"]])
    return {"model": weakref.ref(model), "ids": ids, "tokens": [token_label(tok.piece(i)) for i in ids],
            "notes": notes, "maps": maps, "qk": [(q[0], k[0]) for q, k in qk], "rows": rows, "scale": sr,
            "summary": scale_summary(sr), "causal": model.config.causal, "T": len(ids)}


def head_weights(model, a: dict, layer: int, head: int, view: str = "model") -> torch.Tensor:
    """(T, T) weights of one head of an analysis `a`, in one of HEAD_VIEWS: the model's own ("model"), without
    the causal mask ("no mask": what position i could see), or without the 1/sqrt(d_k) scale ("no scale")."""
    if view not in HEAD_VIEWS:
        raise ValueError(f"The view must be one of {', '.join(HEAD_VIEWS)} (got {view!r}).")
    if view == "model":
        return a["maps"][layer][head]
    q, k = a["qk"][layer]
    s = raw_scores(q[head], k[head])  # (T, T)
    if view == "no mask":
        return softmax_weights(s, model.transformer.h[layer].attn.scale, causal=False)
    return softmax_weights(s, 1.0, causal=a["causal"])


class AttentionCache:
    """The last few analysed (model, prompt) pairs, so picking another layer, head, query or view is instant.
    Shared by all users (the models are shared and read-only); at most `size` entries, the newest kept."""

    def __init__(self, size: int = 2):
        self.size = size
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model, tok, prompt: str) -> dict:
        """analyse(model, tok, prompt), from the cache when this model and prompt were the last few analysed."""
        key = (id(model), str(prompt))
        with self._lock:
            hit = self._data.get(key)
            if hit is not None and hit["model"]() is model:
                self._data.move_to_end(key)
                return hit
        entry = analyse(model, tok, prompt)
        with self._lock:
            self._data[key] = entry
            while len(self._data) > self.size:
                self._data.popitem(last=False)
        return entry
