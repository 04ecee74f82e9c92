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
from matplotlib.colors import PowerNorm
from PIL import Image

from tinygpt.interpret.attention import (
    as_ids,
    attention_maps,
    check_model,
    future_weight,
    head_patterns,
    query_key,
    raw_scores,
    scale_removed,
    scale_summary,
    softmax_weights,
)
from tinygpt.interpret.attention_code import attention_parameters, commented_source
from tinygpt.interpret.graph import graph_svg, model_graph
from tinygpt.interpret.softmax_scale import scale_experiment

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
    maps = [m[0].float() for m in attention_maps(model, x)]  # per layer (nh, T, T)
    qk = query_key(model, x)  # per layer (q, k), (1, nh, T, hs) each
    causal = model.config.causal
    rows = head_patterns([m[None] for m in maps], causal=causal)
    sr = scale_removed(model, x, qk=qk)
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
def grid_figure(a: dict, name: str):
    """All heads at once: a layers x heads mosaic of small heatmaps (max-pooled to at most 48 x 48 cells)."""
    maps, T = a["maps"], a["T"]
    L, H = len(maps), maps[0].shape[0]
    s = max(8, min(T, 48, 1400 // max(L, H)))
    stack = torch.stack(maps).reshape(L * H, 1, T, T)
    small = F.adaptive_max_pool2d(stack, s).reshape(L, H, s, s) if s < T else stack.reshape(L, H, T, T)
    gap = max(1, s // 12)
    mosaic = np.full((L * (s + gap) - gap, H * (s + gap) - gap), np.nan, dtype=np.float32)
    for li in range(L):
        for h in range(H):
            mosaic[li * (s + gap):li * (s + gap) + s, h * (s + gap):h * (s + gap) + s] = small[li, h].numpy()
    cell = min(0.62, 11.0 / H, 13.0 / L)
    fig = new_figure(max(6.5, H * cell + 1.4), max(3.5, L * cell + 1.2))
    ax = fig.add_subplot(111)
    im = ax.imshow(mosaic, cmap=CMAP, norm=PowerNorm(GAMMA, 0, 1), interpolation="nearest")
    ax.set_xticks([h * (s + gap) + s / 2 for h in range(H)], [str(h) for h in range(H)], fontsize=8)
    ax.set_yticks([li * (s + gap) + s / 2 for li in range(L)], [str(li) for li in range(L)], fontsize=8)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.tick_params(length=0)
    for sp in ax.spines.values():
        sp.set_visible(False)
    pooled = f"\neach map max-pooled to {s}x{s}" if s < T else ""
    ax.set_title(f"{name}: every layer and head, {T} tokens{pooled}", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.6, label="attention weight (√ scale)")
    return fig


def _png(w: torch.Tensor, causal: bool) -> str:
    """The (T, T) weights as a PNG (one pixel per cell), masked cells light grey; base64."""
    arr = w.clamp(0, 1).numpy() ** GAMMA
    rgba = (CMAP(arr) * 255).astype(np.uint8)
    if causal:
        rgba[np.triu(np.ones(arr.shape, dtype=bool), 1)] = (233, 236, 239, 255)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG", optimize=False)
    return base64.b64encode(buf.getvalue()).decode()


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
    """The strongest head of each pattern, with its numbers."""
    rows = a["rows"]
    lines = ["**Strongest heads by pattern** (means over queries 1 … T−1; a sentence of a few tokens is noisy,"
             " a paragraph gives stable numbers):", ""]
    for key, what, why in (
            ("previous", "previous-token", "copies information from the token just before (half of an induction"
                                           " circuit)"),
            ("first", "first-token (attention sink)", "parks weight on token 0 when it has nothing to look for"),
            ("self", "self / diagonal", "looks at its own token")):
        r = max(rows, key=lambda r: r[key])
        lines.append(f"* **{what}**: layer {r['layer']}, head {r['head']} puts **{r[key]:.0%}** of its weight"
                     f" there on average: it {why}.")
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
    return (f"**The causal mask, layer {layer} head {head}.** With the mask, query *i* spreads its weight over keys"
            f" 0 … *i* only; every cell above the diagonal is exactly 0. Without it (softmax over all {T} keys), the"
            f" queries would put on average **{mean:.0%}** of their weight on *later* tokens (query {query}:"
            f" {float(fut[query]):.0%}). The model never trained that way, so this is what position *i* could see,"
            " not what it does; a model trained without the mask learns to read the next token directly and its"
            " loss collapses (Train from scratch, run B).")


@lru_cache(maxsize=1)
def random_experiment() -> dict:
    return scale_experiment()


def scale_figure(a: dict | None, name: str):
    """Random q, k: max weight, entropy and softmax-gradient size vs d_k with/without the scale; and the loaded
    model's heads with and without it (per layer)."""
    ex = random_experiment()
    d = ex["d_values"]
    fig = new_figure(11, 6.4)
    axes = [fig.add_subplot(2, 2, i) for i in (1, 2, 3, 4)]
    for ax, key, title in ((axes[0], "max_weight", "mean largest softmax weight"),
                           (axes[1], "entropy_ratio", "entropy / ln(64)  (1 = uniform)"),
                           (axes[2], "jacobian_norm", "softmax Jacobian norm (gradient that flows)")):
        ax.plot(d, ex["unscaled"][key], "o-", color="#e03131", label="q·k (no scale)")
        ax.plot(d, ex["scaled"][key], "o-", color="#1c7ed6", label="q·k / √d_k")
        ax.set_xscale("log", base=2)
        ax.set_xticks(d, [str(v) for v in d])
        ax.set(title=f"random q, k: {title}", xlabel="d_k")
        ax.grid(alpha=.3)
        ax.legend(fontsize=8)
    ax = axes[3]
    if a is None:
        ax.text(0.5, 0.5, "Run a prompt to measure the loaded model", ha="center", va="center")
        ax.set_axis_off()
    else:
        sr = a["scale"]
        x = list(range(len(sr["layers"])))
        ax.plot(x, sr["scaled"]["entropy"].mean(1).tolist(), "o-", color="#1c7ed6", label="with 1/√d_k (the model)")
        ax.plot(x, sr["unscaled"]["entropy"].mean(1).tolist(), "o-", color="#e03131", label="scale removed")
        ax.set(title=f"{name}: mean entropy of its heads per layer", xlabel="layer", ylabel="nats")
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
    return (status, grid_figure(a, mname), heat, bars, mask, scores_frame(a), patterns_md(a),
            gr.update(choices=query_choices(a), value=q), scale_figure(a, mname), scale_md(a, mname),
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
        grid = gr.Plot(label="Every layer (rows) and head (columns)", elem_id="att-grid")
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
        scale_plot = gr.Plot(scale_figure(None, ""), label="√d_k: random vectors and the loaded model",
                             elem_id="att-scale")
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
