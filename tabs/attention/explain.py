"""The explainers under the Attention tab: CausalSelfAttention's live source with a comment on every line, its
parameter count from the config matched against numel() of the real layer, and the model's computational graph."""
from __future__ import annotations

import html

from tinygpt.interpret.attention_code import attention_parameters, commented_source
from tinygpt.interpret.graph import graph_svg, model_graph

from ..kit.common import human


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
