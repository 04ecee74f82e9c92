"""Drawing attention weights for the browser: the layers x heads grid of small maps, one head large (tokens on both
axes, the weight of any cell on hover) and where one query attends (bertviz-style). Plain SVG/HTML with the
weights as one PNG each, so 1,024 x 1,024 maps stay light; HEAT_CSS and HEAT_JS style them and drive the hover."""
from __future__ import annotations

import base64
import html
import io
import json
import math

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image

MAX_LABELS = 32  # axis labels per heatmap axis: at 256+ tokens every n-th token is labelled
TOP_KEYS = 10  # keys listed as bars under a query's tokens
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
