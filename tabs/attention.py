"""Attention tab: the softmax weights of every layer and head for a prompt (a layers x heads grid of small maps),
one head large with the tokens on both axes and the weight on hover, where a chosen query token attends
(bertviz-style), per-head pattern scores, the same head without the causal mask and without 1/sqrt(d_k), the
sqrt(d_k) experiment on random vectors, the model's computational graph with live shapes, and the multi-head
attention source code with a comment on every line and its parameter count."""
from __future__ import annotations

import base64
import html
import io
import json
import math
import threading
import weakref
from collections import OrderedDict
from functools import lru_cache, partial

import gradio as gr
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image

from tinygpt.interpret.attention import (
    PATTERN_THRESHOLD,
    as_ids,
    attention_with_qk,
    check_model,
    future_weight,
    pattern_rows,
    raw_scores,
    scale_removed,
    scale_summary,
    softmax_weights,
)
from tinygpt.interpret.attention_code import attention_parameters, commented_source
from tinygpt.interpret.graph import graph_svg, model_graph
from tinygpt.interpret.softmax_scale import scale_experiment

from . import share
from .common import UserError, banner, check_prompt, get_model, human, model_card, model_picker, new_figure, user_errors

DEFAULT_PROMPT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be"
                  " in want of a wife. However little known the feelings or views of such a man may be on his first"
                  " entering a neighbourhood, this truth is so well fixed in the minds of the surrounding families.")
VIEWS = ("mask on: the model's weights", "mask off: what position i could see", "1/√d_k removed: the sharper softmax")
MAX_MAP_BYTES = 1_500_000_000  # attention weights of all heads kept for one prompt (GPT-2 at 1,024 tokens: 0.6 GB)
MAX_LABELS = 32  # axis labels per heatmap axis: at 256+ tokens every n-th token is labelled
TOP_KEYS = 10
GAMMA = 0.5  # colour = weight ** 0.5: small weights stay visible next to a dominant one
CMAP = colormaps["Blues"]

HEAT_CSS = """
.tg-heat {position: relative; max-width: 760px;}
.tg-heat svg {width: 100%; height: auto; display: block;}
.tg-heat-tip {position: absolute; display: none; pointer-events: none; background: #212529; color: #fff;
              padding: 3px 8px; border-radius: 4px; font: 13px var(--font-mono, monospace); white-space: pre;
              z-index: 10;}
.tg-heat-cap {font-size: 13px; opacity: .8;}
.tg-chips {line-height: 2; font-family: var(--font-mono); font-size: 14px;}
.tg-chip {padding: 1px 2px; border-radius: 3px; white-space: pre;}
.tg-chip-q {outline: 2px solid #e8590c;}
.tg-chip-future {border-bottom: 2px dashed #e8590c;}
.tg-bar {display: grid; grid-template-columns: 190px 1fr 64px; gap: 8px; align-items: center; font-size: 13px;}
.tg-bar-fill {height: 14px; background: #1c7ed6; border-radius: 3px;}
.tg-code {font-size: 13px; border-collapse: collapse; width: 100%;}
.tg-code td {vertical-align: top; padding: 1px 8px; border-bottom: 1px solid var(--border-color-primary);}
.tg-code td.ln {opacity: .5; text-align: right;}
.tg-code td.src {font-family: var(--font-mono); white-space: pre; font-size: 12px;}
.tg-code td.cm {color: #2b8a3e; min-width: 380px; width: 42%;}
.tg-code-wrap {overflow-x: auto;}
"""

# Hover a cell of the large heatmap: the weights travel once as uint16 (weight * 65535, base64) in data-w, the
# tokens as JSON in data-tokens; one delegated listener on the component reads them (no per-cell elements, so
# 1,024 x 1,024 maps stay light).
HEAT_JS = """
element.addEventListener('mousemove', (e) => {
  const tip = element.querySelector('.tg-heat-tip');
  const hit = e.target.closest ? e.target.closest('.tg-heat-hit') : null;
  if (!tip) return;
  if (!hit) { tip.style.display = 'none'; return; }
  const box = hit.closest('.tg-heat');
  if (!box._w) {
    const bin = atob(box.dataset.w); const u = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
    box._w = new Uint16Array(u.buffer); box._t = JSON.parse(box.dataset.tokens);
  }
  const r = hit.getBoundingClientRect(), n = +box.dataset.n;
  const j = Math.max(0, Math.min(n - 1, Math.floor((e.clientX - r.left) / r.width * n)));
  const i = Math.max(0, Math.min(n - 1, Math.floor((e.clientY - r.top) / r.height * n)));
  const w = box._w[i * n + j] / 65535;
  const masked = box.dataset.causal === '1' && j > i;
  tip.textContent = 'query ' + i + ' ' + JSON.stringify(box._t[i]) + '  →  key ' + j + ' ' +
    JSON.stringify(box._t[j]) + ':  ' + (masked ? 'masked (0)' : w.toFixed(4));
  const br = box.getBoundingClientRect();
  tip.style.left = Math.min(e.clientX - br.left + 14, br.width - 260) + 'px';
  tip.style.top = (e.clientY - br.top + 16) + 'px';
  tip.style.display = 'block';
});
element.addEventListener('mouseleave', () => {
  const tip = element.querySelector('.tg-heat-tip'); if (tip) tip.style.display = 'none';
});
"""


# ---- analysis of one prompt (cached) ---------------------------------------------------------------
def token_label(piece: str) -> str:
    """A token as shown on an axis: new lines and tabs visible, a leading space as '␣'."""
    s = piece.replace("\n", "\\n").replace("\t", "\\t")
    return "␣" + s[1:] if s.startswith(" ") else s


def prompt_ids(model, tok, prompt) -> tuple[list[int], list[str]]:
    """(ids, notes): the prompt checked and tokenized, cropped to the context and to the memory budget."""
    check_model(model)
    notes: list = []
    prompt = check_prompt(prompt, notes)
    ids = tok.encode(prompt)
    if not ids:
        raise UserError("The prompt gives no tokens: type some text.")
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


class AttentionCache:
    """The last few analysed (model, prompt) pairs, so picking another layer, head, query or view is instant.
    Shared by all users (the models are shared and read-only); at most `size` entries, the newest kept."""

    def __init__(self, size: int = 2):
        self.size = size
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model, tok, prompt) -> dict:
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


@torch.no_grad()
def analyse(model, tok, prompt) -> dict:
    """Everything the tab shows for one prompt: tokens, the weights of every head (nh, T, T) per layer, q and k
    per layer, the pattern rows, the scale-removed summary, and the grid image."""
    ids, notes = prompt_ids(model, tok, prompt)
    x = as_ids(model, ids)  # (1, T)
    maps1, qk = attention_with_qk(model, x)  # one forward pass: per layer (1, nh, T, T), and (q, k) (1, nh, T, hs)
    maps = [m[0].float() for m in maps1]  # per layer (nh, T, T)
    causal = model.config.causal
    sr = scale_removed(model, x, qk=qk, maps=maps1)  # pattern scores with the scale (the model's) and without
    rows = pattern_rows(sr["scaled"], sr["layers"])
    for r in rows:  # the same head without the scale, next to its other scores
        r["entropy_unscaled"] = float(sr["unscaled"]["entropy"][r["layer"], r["head"]])
        r["max_weight_unscaled"] = float(sr["unscaled"]["max_weight"][r["layer"], r["head"]])
    return {"model": weakref.ref(model), "ids": ids, "tokens": [token_label(tok.piece(i)) for i in ids],
            "notes": notes, "maps": maps, "qk": [(q[0], k[0]) for q, k in qk], "rows": rows, "scale": sr,
            "summary": scale_summary(sr), "causal": causal, "T": len(ids)}


def head_weights(model, a: dict, layer: int, head: int, view: str) -> torch.Tensor:
    """(T, T) weights of one head in the chosen view: the model's own, without the mask, or without the scale."""
    if view == VIEWS[0]:
        return a["maps"][layer][head]
    q, k = a["qk"][layer]
    s = raw_scores(q[head], k[head])  # (T, T)
    if view == VIEWS[1]:
        return softmax_weights(s, model.transformer.h[layer].attn.scale, causal=False)
    return softmax_weights(s, 1.0, causal=a["causal"])


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


# ---- drawing ----------------------------------------------------------------------------------------
def _rgba(w: np.ndarray) -> np.ndarray:
    """Weights in [0, 1] (NaN = background) -> RGBA uint8 with the tab's colour map (colour = weight ** GAMMA)."""
    rgba = (CMAP(np.clip(np.nan_to_num(w, nan=0.0), 0, 1) ** GAMMA) * 255).astype(np.uint8)
    rgba[np.isnan(w)] = (255, 255, 255, 0)
    return rgba


def _png_b64(rgba: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def grid_html(a: dict, name: str) -> str:
    """All heads at once: a layers x heads mosaic of small heatmaps (max-pooled to at most 48 x 48 cells, so a
    diagonal line stays visible), drawn as one image; hover a tile for that head's pattern scores."""
    maps, T = a["maps"], a["T"]
    L, H = len(maps), maps[0].shape[0]
    s = min(T, 48)
    stack = torch.stack(maps).reshape(L * H, 1, T, T)
    small = (F.adaptive_max_pool2d(stack, s) if s < T else stack).reshape(L, H, s, s).numpy()
    g = max(1, s // 12)
    mosaic = np.full((L * (s + g), H * (s + g)), np.nan, dtype=np.float32)
    for li in range(L):
        for h in range(H):
            mosaic[li * (s + g):li * (s + g) + s, h * (s + g):h * (s + g) + s] = small[li, h]
    td = max(14.0, min(64.0, 720.0 / H))  # screen size of one tile
    left, top = 46, 34
    W, Hh = left + H * td + 10, top + L * td + 8
    rows = {(r["layer"], r["head"]): r for r in a["rows"]}
    parts = [f'<svg viewBox="0 0 {W:.0f} {Hh:.0f}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" '
             f'style="width:100%;max-width:{W:.0f}px">',
             f'<image x="{left}" y="{top}" width="{H * td:.1f}" height="{L * td:.1f}" preserveAspectRatio="none" '
             f'style="image-rendering:pixelated" href="data:image/png;base64,{_png_b64(_rgba(mosaic))}"/>',
             f'<text x="{left + H * td / 2:.0f}" y="11" font-size="12" text-anchor="middle">head</text>',
             f'<text x="10" y="{top + L * td / 2:.0f}" font-size="12" text-anchor="middle" '
             f'transform="rotate(-90 10 {top + L * td / 2:.0f})">layer</text>']
    fs = 11 if td >= 22 else 8
    for h in range(H):
        parts.append(f'<text x="{left + (h + 0.45) * td:.1f}" y="{top - 6}" font-size="{fs}" '
                     f'text-anchor="middle">{h}</text>')
    for li in range(L):
        parts.append(f'<text x="{left - 6}" y="{top + (li + 0.45) * td:.1f}" font-size="{fs}" text-anchor="end" '
                     f'dominant-baseline="middle">{li}</text>')
        for h in range(H):
            r = rows[(li, h)]
            tip = (f"layer {li}, head {h}: {r['pattern']} · previous {r['previous']:.2f} · first {r['first']:.2f}"
                   f" · self {r['self']:.2f} · entropy {r['entropy']:.2f} nats")
            parts.append(f'<rect x="{left + h * td:.1f}" y="{top + li * td:.1f}" width="{td:.1f}" height="{td:.1f}" '
                         f'fill="transparent"><title>{html.escape(tip)}</title></rect>')
    pooled = f" (each map max-pooled to {s}×{s})" if s < T else ""
    return (f'<div class="tg-heat-cap"><b>{html.escape(name)}: every layer and head, {T} tokens{pooled}</b> · '
            f'rows: layers, columns: heads; in each tile the queries go down and the keys across, darker = more'
            f' weight · hover a tile for its scores</div>{"".join(parts)}</svg>')


def _png(w: torch.Tensor, causal: bool) -> str:
    """The (T, T) weights as a PNG (one pixel per cell), masked cells light grey; base64."""
    rgba = _rgba(w.float().numpy())
    if causal:
        rgba[np.triu(np.ones(rgba.shape[:2], dtype=bool), 1)] = (233, 236, 239, 255)
    return _png_b64(rgba)


def heat_html(w: torch.Tensor, tokens: list, title: str, causal: bool, query: int) -> str:
    """One head large: the weights as an image, tokens on both axes (every n-th labelled at 256+ tokens), the
    chosen query row outlined, and the weight of any cell on hover (HEAT_JS)."""
    T = w.shape[0]
    S, left, top, bottom = 560, 120, 10, 110
    W, H = left + S + 20, top + S + bottom
    cell = S / T
    step = max(1, math.ceil(T / MAX_LABELS))
    fs = max(7, min(12, cell * 0.9)) if step == 1 else 10
    parts = [f'<svg viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif">',
             f'<image x="{left}" y="{top}" width="{S}" height="{S}" preserveAspectRatio="none" '
             f'style="image-rendering:pixelated" href="data:image/png;base64,{_png(w, causal)}"/>',
             f'<rect x="{left}" y="{top}" width="{S}" height="{S}" fill="none" stroke="#adb5bd"/>',
             f'<line x1="{left}" y1="{top}" x2="{left + S}" y2="{top + S}" stroke="#e8590c" stroke-width="0.8" '
             'stroke-dasharray="4 3" opacity="0.7"/>',
             f'<rect x="{left}" y="{top + query * cell:.2f}" width="{S}" height="{max(cell, 1.5):.2f}" fill="none" '
             'stroke="#e8590c" stroke-width="1.5"/>']
    for i in range(0, T, step):
        lab = html.escape(tokens[i][:12])
        y = top + (i + 0.5) * cell
        x = left + (i + 0.5) * cell
        parts.append(f'<text x="{left - 4}" y="{y:.1f}" font-size="{fs:.1f}" text-anchor="end" '
                     f'dominant-baseline="middle">{lab} {i}</text>')
        parts.append(f'<text x="{x:.1f}" y="{top + S + 6}" font-size="{fs:.1f}" text-anchor="end" '
                     f'dominant-baseline="middle" transform="rotate(-60 {x:.1f} {top + S + 6})">{lab} {i}</text>')
    parts.append(f'<rect class="tg-heat-hit" x="{left}" y="{top}" width="{S}" height="{S}" fill="transparent" '
                 'style="cursor:crosshair"/></svg>')
    q16 = np.round(w.clamp(0, 1).numpy().astype(np.float64) * 65535).astype("<u2")
    every = f"every {step}th token labelled · " if step > 1 else ""
    return (f'<div class="tg-heat" data-n="{T}" data-causal="{int(causal)}" '
            f'data-w="{base64.b64encode(q16.tobytes()).decode()}" '
            f'data-tokens="{html.escape(json.dumps(tokens))}">'
            f'<div class="tg-heat-cap"><b>{html.escape(title)}</b><br>rows: queries (the token attending) · '
            f'columns: keys (the token attended to) · {every}hover a cell for its weight · orange: the chosen '
            f'query row</div>{"".join(parts)}<div class="tg-heat-tip"></div></div>')


def query_html(w: torch.Tensor, tokens: list, query: int, layer: int, head: int, causal_view: bool) -> str:
    """Where one query attends: every key token shaded by its weight (bertviz-style), then the top keys as bars."""
    row = w[query].tolist()
    keys = range(query + 1) if causal_view else range(len(tokens))
    peak = max(row[j] for j in keys) or 1.0
    chips = []
    for j in keys:
        a = (row[j] / peak) ** GAMMA
        cls = "tg-chip" + (" tg-chip-q" if j == query else "") + (" tg-chip-future" if j > query else "")
        color = "#fff" if a > 0.6 else "inherit"
        chips.append(f'<span class="{cls}" style="background: rgba(28,126,214,{a:.3f}); color: {color}" '
                     f'title="key {j} {html.escape(repr(tokens[j]))}: {row[j]:.4f}">{html.escape(tokens[j])}</span>')
    top = sorted(keys, key=lambda j: -row[j])[:TOP_KEYS]
    bars = "".join(f'<div class="tg-bar"><span>key {j} <code>{html.escape(tokens[j])}</code></span>'
                   f'<div class="tg-bar-fill" style="width:{100 * row[j] / peak:.1f}%"></div>'
                   f'<span>{row[j]:.4f}</span></div>' for j in top)
    future = "" if causal_view else " Keys after the query (dashed) are visible only because the mask is off."
    return (f'<div><b>Query {query} <code>{html.escape(tokens[query])}</code> in layer {layer}, head {head}'
            f'</b> attends to (darker = more weight; outlined: the query itself).{future}'
            f'<div class="tg-chips">{" ".join(chips)}</div><b>Top {len(top)} keys</b>{bars}</div>')


def scores_frame(a: dict) -> pd.DataFrame:
    rows = [[r["layer"], r["head"], r["pattern"], round(r["previous"], 3), round(r["first"], 3), round(r["self"], 3),
             round(r["max_weight"], 3), round(r["entropy"], 3), round(r["entropy_ratio"], 3),
             round(r["entropy_unscaled"], 3), round(r["max_weight_unscaled"], 3)] for r in a["rows"]]
    return pd.DataFrame(rows, columns=["layer", "head", "pattern", "previous token", "first token (sink)", "self",
                                       "max weight", "entropy (nats)", "entropy / uniform", "entropy w/o 1/√d_k",
                                       "max weight w/o 1/√d_k"])


def patterns_md(a: dict) -> str:
    """The strongest head of each pattern, with its numbers, against what uniform attention would give."""
    rows, T = a["rows"], a["T"]
    uniform = sum(1 / (i + 1) for i in range(1, T)) / max(1, T - 1) if a["causal"] else 1 / T
    lines = [f"**Strongest heads by pattern** (means over queries 1 … T−1; a head spreading its weight uniformly"
             f" over what it may see would give **{uniform:.0%}** to each of these):", ""]
    for key, what, why in (
            ("previous", "previous-token", "copies information from the token just before (half of an induction"
                                           " circuit)"),
            ("first", "first-token (attention sink)", "parks its weight on token 0 when it has nothing to look for"),
            ("self", "self / diagonal", "looks at its own token")):
        r = max(rows, key=lambda r: r[key])
        verdict = (f"it {why}" if r[key] > PATTERN_THRESHOLD else
                   f"no head of this model is dominated by this pattern on this prompt (above {PATTERN_THRESHOLD:.0%})")
        lines.append(f"* **{what}**: layer {r['layer']}, head {r['head']} puts **{r[key]:.0%}** of its weight"
                     f" there on average ({r[key] / max(uniform, 1e-12):.1f}× uniform): {verdict}.")
    counts = pd.Series([r["pattern"] for r in rows]).value_counts()
    lines.append("* Heads by name: " + ", ".join(f"{n} **{k}**" for k, n in counts.items()) +
                 " (a head is named after a pattern holding more than half its weight; 'broad' spreads almost"
                 " uniformly).")
    return "\n".join(lines)


def mask_md(model, a: dict, layer: int, head: int, query: int) -> str:
    """What the mask takes away, for the chosen head: the weight the unmasked softmax gives to later keys."""
    if not a["causal"]:
        return ("This model was trained **without** a causal mask: every position already sees the whole prompt,"
                " so 'mask on' and 'mask off' are the same weights.")
    q, k = a["qk"][layer]
    un = softmax_weights(raw_scores(q[head], k[head]), model.transformer.h[layer].attn.scale, causal=False)
    fut = future_weight(un)  # (T,)
    T = a["T"]
    mean = float(fut[:-1].mean()) if T > 1 else 0.0
    this = (f"query {query}, the last token, has no later tokens" if query == T - 1 else
            f"query {query}: {float(fut[query]):.0%}")
    return (f"**The causal mask, layer {layer} head {head}.** With the mask, query *i* spreads its weight over keys"
            f" 0 … *i* only; every cell above the diagonal is exactly 0. Without it (softmax over all {T} keys), the"
            f" queries would put on average **{mean:.0%}** of their weight on *later* tokens ({this}). The model"
            " never trained that way, so this is what position *i* could see, not what it does; a model trained"
            " without the mask learns to read the next token directly and its"
            " loss collapses (Train from scratch, run B).")


@lru_cache(maxsize=1)
def random_experiment() -> dict:
    return scale_experiment()


def random_figure():
    """Random q, k: largest weight, entropy and softmax-gradient size against d_k, with and without the scale
    (the same for every model: drawn once when the tab is built)."""
    ex = random_experiment()
    d = ex["d_values"]
    fig = new_figure(12, 3.4)
    for i, (key, title) in enumerate((("max_weight", "mean largest softmax weight"),
                                      ("entropy_ratio", f"entropy / ln({ex['n_keys']})  (1 = uniform)"),
                                      ("jacobian_norm", "softmax Jacobian norm (the gradient)"))):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.plot(d, ex["unscaled"][key], "o-", color="#e03131", label="q·k (no scale)")
        ax.plot(d, ex["scaled"][key], "o-", color="#1c7ed6", label="q·k / √d_k")
        ax.set_xscale("log", base=2)
        ax.set_xticks(d, [str(v) for v in d])
        ax.set(title=f"random q, k: {title}", xlabel="d_k")
        ax.grid(alpha=.3)
        ax.legend(fontsize=8)
    return fig


def sharpening_figure(a: dict, name: str):
    """The loaded model's heads with and without the scale: mean entropy and largest weight per layer."""
    sr = a["scale"]
    x = list(range(len(sr["layers"])))
    fig = new_figure(12, 3.2)
    for i, (key, title, unit) in enumerate((("entropy", "mean entropy of its heads", "nats"),
                                            ("max_weight", "mean largest weight of its heads", "weight"))):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot(x, sr["scaled"][key].mean(1).tolist(), "o-", color="#1c7ed6", label="with 1/√d_k (the model)")
        ax.plot(x, sr["unscaled"][key].mean(1).tolist(), "o-", color="#e03131", label="scale removed")
        ax.set(title=f"{name}: {title}, per layer", xlabel="layer", ylabel=unit)
        ax.set_xticks(x, [str(li) for li in sr["layers"]])
        ax.grid(alpha=.3)
        ax.legend(fontsize=8)
    return fig


def scale_md(a: dict | None, name: str) -> str:
    """The Explain text of the sqrt(d_k) section, reading the live numbers."""
    ex = random_experiment()
    d, u, s = ex["d_values"], ex["unscaled"], ex["scaled"]
    below = [dk for dk, a, b in zip(d, u["jacobian_norm"], s["jacobian_norm"]) if a < b]
    cross = (f" (a moderately peaked softmax passes more gradient than a nearly uniform one, but from d_k = {below[0]}"
             " on the unscaled one passes less than the scaled one)") if below and below[0] != d[0] else ""
    lines = [
        f"**Random q, k** ({ex['n_keys']} keys, entries with variance 1). The raw score q·k has standard deviation"
        f" √d_k: {u['score_std'][0]:.1f} at d_k = {d[0]} and {u['score_std'][-1]:.1f} at d_k = {d[-1]}. Without the"
        f" scale the softmax saturates: the largest weight grows from {u['max_weight'][0]:.2f} to"
        f" **{u['max_weight'][-1]:.2f}** and the entropy falls from {u['entropy'][0]:.2f} to"
        f" **{u['entropy'][-1]:.2f} nats** (uniform: ln {ex['n_keys']} = {ex['max_entropy']:.2f}), i.e. the"
        f" attention becomes one-hot. The softmax's Jacobian (how much a change of the scores moves the weights)"
        f" shrinks from {u['jacobian_norm'][0]:.3f} to **{u['jacobian_norm'][-1]:.4f}**: almost no gradient reaches"
        f" q and k, so training stalls{cross}. Divided by √d_k, the spread stays {min(s['score_std']):.2f}–"
        f"{max(s['score_std']):.2f} at every size, the largest weight {min(s['max_weight']):.2f}–"
        f"{max(s['max_weight']):.2f} and the Jacobian {min(s['jacobian_norm']):.3f}–{max(s['jacobian_norm']):.3f}.",
    ]
    if a is not None:
        m = a["summary"]
        if abs(m["factor"] - 1.0) < 1e-9:
            lines.append(f"**{name}** was built without the 1/√d_k scale (an ablation), so removing it changes"
                         " nothing here.")
        else:
            rel = (m["entropy_scaled"] - m["entropy_unscaled"]) / max(m["entropy_scaled"], 1e-12)
            lines.append(
                f"**{name}** (head size {m['head_dim']}, so removing the scale multiplies its scores by"
                f" √{m['head_dim']} = {m['factor']:.1f}): the mean entropy of its heads falls from"
                f" {m['entropy_scaled']:.3f} to **{m['entropy_unscaled']:.3f} nats** ({rel:.0%} lower) and the mean"
                f" largest weight rises from {m['max_weight_scaled']:.3f} to"
                f" **{m['max_weight_unscaled']:.3f}**; {m['sharper_share']:.0%} of the heads get sharper. Most changed:"
                f" layer {m['most_layer']} head {m['most_head']}, from {m['most_before']:.3f} to"
                f" {m['most_after']:.3f} nats (pick the view '1/√d_k removed' to see it). The model learned its"
                " weights *with* the scale, so without it the same q and k give a far peakier, harder-to-train"
                " softmax.")
    return "\n\n".join(lines)


def code_html() -> str:
    rows = []
    for r in commented_source():
        rows.append(f"<tr><td class='ln'>{r['lineno']}</td><td class='src'>{html.escape(r['code'])}</td>"
                    f"<td class='cm'>{html.escape(r['comment'] or '')}</td></tr>")
    return (f"<div class='tg-heat-cap'>The source of <code>tinygpt.model.CausalSelfAttention</code>, read live with"
            f" <code>inspect.getsource</code>: what you see is what runs.</div>"
            f"<div class='tg-code-wrap'><table class='tg-code'>{''.join(rows)}</table></div>")


def params_md(model) -> str:
    """The attention layer's parameters from the config, matched against numel() of the real layer."""
    p = attention_parameters(model.config)
    measured = sum(t.numel() for t in model.transformer.h[0].attn.parameters())
    ok = "✅ equal" if measured == p["per_layer"] else "❌ DIFFERENT"
    c = model.config
    rows = [f"| `{r['name']}` | {' x '.join(map(str, r['shape']))} | {r['formula']} | {r['count']:,} |"
            for r in p["rows"]]
    return "\n".join([
        f"**Parameters of one attention layer** (C = {p['C']}, {c.n_head} heads of {c.head_dim}; the heads share"
        " c_attn and c_proj, so the count does not depend on the number of heads):", "",
        "| tensor | shape | formula | count |", "|---|---|---|---|", *rows,
        f"| **one layer** | | {p['formula']} | **{p['per_layer']:,}** |",
        f"| all {p['n_layer']} layers | | × {p['n_layer']} | **{p['total']:,}** ({human(p['total'])}) |", "",
        f"Computed from the config: **{p['per_layer']:,}**; counted with `sum(p.numel() for p in"
        f" model.transformer.h[0].attn.parameters())`: **{measured:,}** → {ok}. Attention is"
        f" {p['total'] / model.num_params():.1%} of the model's {model.num_params():,} parameters.",
    ])


def graph_html(model, T=None) -> str:
    t = "the context length" if T is None else f"{T} tokens of the prompt"
    return (f"<div class='tg-heat-cap'>Generated from the model's config; shapes for B = 1 sequence of {t}. Hover"
            f" a box or arrow for details.</div>{graph_svg(model_graph(model, 1, T))}")


# ---- handlers ----------------------------------------------------------------------------------------
def _head_outputs(model, a, layer, head, query, view):
    c = model.config
    layer = check_index(layer, len(a["maps"]), "Layer")
    head = check_index(head, c.n_head, "Head")
    query = pick_query(query, a["T"])
    view = check_view(view)
    w = head_weights(model, a, layer, head, view)
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
    model, tok = get_model(models, name)
    a = cache.get(model, tok, prompt)
    if query not in (None, "") and not (isinstance(query, (int, float)) and 0 <= query < a["T"]):
        query = None  # a query of the previous prompt: start from the last token of this one
    heat, bars, mask = _head_outputs(model, a, layer, head, query, view)
    q = pick_query(query, a["T"])
    info = getattr(model, "info", None)
    mname = info.name if info else "model"
    c = model.config
    status = " ".join([f"**{a['T']} tokens**, {c.n_layer} layers × {c.n_head} heads of {mname}."] + a["notes"])
    return (status, grid_html(a, mname), heat, bars, mask, scores_frame(a), patterns_md(a),
            gr.update(choices=query_choices(a), value=q), sharpening_figure(a, mname), scale_md(a, mname),
            graph_html(model, a["T"]))


@user_errors
def on_head(cache: AttentionCache, models, name, prompt, layer, head, query, view):
    """Another layer, head, query or view of the analysed prompt (cached): (head heatmap, query view, mask text)."""
    model, tok = get_model(models, name)
    a = cache.get(model, tok, prompt)
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
        prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt (up to the model's context length)", lines=3,
                            elem_id="att-prompt")
        go = gr.Button("Show attention", variant="primary", elem_id="att-go")
        status = gr.Markdown(elem_id="att-status")
        grid = gr.HTML(elem_id="att-grid")
        with gr.Row():
            layer = gr.Slider(0, max(1, c0.n_layer - 1), 0, step=1, label="Layer", elem_id="att-layer")
            head = gr.Slider(0, max(1, c0.n_head - 1), 0, step=1, label="Head", elem_id="att-head")
            query = gr.Dropdown([], value=None, label="Query token (where does it attend?)", elem_id="att-query",
                                allow_custom_value=False)
        view = gr.Radio(list(VIEWS), value=VIEWS[0], label="View of this head", elem_id="att-view")
        with gr.Row():
            with gr.Column(scale=3):
                heat = gr.HTML(js_on_load=HEAT_JS, elem_id="att-heat")
            with gr.Column(scale=2):
                bars = gr.HTML(elem_id="att-bars")
                mask = gr.Markdown(elem_id="att-mask")
        patterns = gr.Markdown(elem_id="att-patterns")
        table = gr.Dataframe(label="Per-head pattern scores", interactive=False, elem_id="att-table",
                             max_height=420)
        gr.Markdown("### Why divide by √d_k?")
        gr.Plot(random_figure(), label="Random q and k with unit-variance entries", elem_id="att-random")
        scale_plot = gr.Plot(label="The loaded model's heads with and without 1/√d_k", elem_id="att-scale")
        with gr.Accordion("Explain", open=True):
            scale_text = gr.Markdown(scale_md(None, ""), elem_id="att-scale-md")
        with gr.Accordion("Computational graph of the loaded model", open=False):
            graph = gr.HTML(graph_html(model0), elem_id="att-graph")
        with gr.Accordion("The multi-head attention code, line by line, and its parameters", open=False):
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
        share.register("attention", fields={"model": model_dd, "prompt": prompt, "layer": layer, "head": head,
                                            "view": view}, command=command, run=go)


def command(v: dict) -> str:
    """Show attention as `python -m tinygpt attention`: the same per-head scores (--json: every weight)."""
    return share.cli("attention", model=v["model"], text=v["prompt"])
