"""The computational graph of a GPT, generated from its config with the live tensor shape on every edge.

    model_graph(config, batch=1, T=None) -> {"nodes": [...], "edges": [...], "dims": {...}}
    graph_svg(graph) -> a self-contained SVG (no graphviz): one block drawn, marked "x n_layer"

Every edge names the tensor it carries (`tensor`): "module:<name>:out" / "module:<name>:in" for the output or
input of a submodule of the model (a forward hook can record it), or q / k / v / weights / logits / loss. The tests
run a tiny model with hooks and check that every edge's shape is the shape of the real tensor.
"""
from __future__ import annotations

import html

from ..config import GPTConfig


def _dims(c: GPTConfig, batch: int, T: int) -> dict:
    """Symbol -> number for the shapes: B, T, C, nh (query heads), nkv (key/value heads), hs, A, kv, ff, V."""
    return {"B": batch, "T": T, "C": c.n_embd, "nh": c.n_head, "nkv": c.kv_heads, "hs": c.head_dim,
            "A": c.attn_dim, "kv": c.kv_heads * c.head_dim, "qkv": c.attn_dim + 2 * c.kv_heads * c.head_dim,
            "ff": c.ffn_dim, "V": c.vocab_size, "L": c.n_layer}


def model_graph(config, batch: int = 1, T=None) -> dict:
    """Nodes and edges of the forward pass (and the loss) for a config, block 0 standing for every block.

    config: a GPTConfig or a model with `.config`. T: tokens (default: the context length).
    nodes: {id, label, detail, kind, row, col, in_block}; edges: {src, dst, dims (symbols), shape (numbers),
    tensor (what it carries, see the module docstring), skip (a residual shortcut)}.
    """
    c = getattr(config, "config", config)
    if not isinstance(c, GPTConfig):
        raise ValueError("model_graph needs a GPTConfig or a model with a .config.")
    T = c.block_size if T is None else int(T)
    if not 1 <= T <= c.block_size:
        raise ValueError(f"T must be between 1 and the context length {c.block_size} (got {T}).")
    if int(batch) < 1:
        raise ValueError(f"The batch size must be at least 1 (got {batch}).")
    dims = _dims(c, int(batch), T)
    nodes, edges = [], []
    row = [0]

    def node(id_, label, detail="", kind="op", col=1.0, in_block=False, same_row=False):
        if not same_row:
            row[0] += 1
        nodes.append({"id": id_, "label": label, "detail": detail, "kind": kind, "row": row[0], "col": col,
                      "in_block": in_block})

    def edge(src, dst, dims_, tensor, skip=False):
        edges.append({"src": src, "dst": dst, "dims": tuple(dims_), "shape": tuple(dims[d] for d in dims_),
                      "tensor": tensor, "skip": skip})

    norm = {"layernorm": "LayerNorm", "rmsnorm": "RMSNorm"}[c.norm] if c.layernorm else "no norm (ablation)"
    btc = ("B", "T", "C")
    row[0] = -1
    node("idx", "token ids idx", "integers < V", "input")
    node("wte", "wte: token embedding", f"table V×C = {c.vocab_size:,}×{c.n_embd}", "param")
    edge("idx", "wte", ("B", "T"), "input")
    h0 = "module:transformer.h.0"
    if c.pos_encoding in ("learned", "sinusoidal"):
        detail = (f"table block×C = {c.block_size}×{c.n_embd}" if c.pos_encoding == "learned" else
                  "fixed sin/cos table, no parameters")
        node("pos", "wpe: position embedding" if c.pos_encoding == "learned" else "sinusoidal positions",
             detail, "param", col=2.0, same_row=True)
        node("embed", "+ (token + position)", "then dropout (training only)", "add")
        edge("wte", "embed", btc, "module:transformer.wte:out")
        edge("pos", "embed", ("T", "C"), "module:transformer.wpe:out" if c.pos_encoding == "learned" else "pos_table")
        first = "embed"
    else:
        first = "wte"
        nodes[-1]["detail"] = f"{c.vocab_size:,}×{c.n_embd} · no position added"
        nodes[-1]["tip"] = ("RoPE turns q and k inside attention instead" if c.pos_encoding == "rope" else
                            "no positional encoding: only the causal mask tells positions apart")
    # ---- one block, drawn once ----
    node("ln_1", f"ln_1: {norm}", "normalise each token's vector", "norm", in_block=True)
    edge(first, "ln_1", btc, f"{h0}:in")
    node("c_attn", "c_attn: Linear C→(q, k, v)", f"{c.n_embd}→{dims['qkv']} for all heads in one matmul", "param",
         in_block=True)
    edge("ln_1", "c_attn", btc, f"{h0}.ln_1:out")
    node("split", "split into q, k, v", "then view as heads and transpose", "op", in_block=True)
    qkv = "3C" if c.attn_dim == c.n_embd and c.kv_heads == c.n_head else "A+2kv"  # the symbol students know
    dims[qkv] = dims["qkv"]
    edge("c_attn", "split", ("B", "T", qkv), f"{h0}.attn.c_attn:out")
    gqa = f", each shared by {c.n_head // c.kv_heads} query heads" if c.kv_heads != c.n_head else ""
    node("q", f"q: {c.n_head} heads", f"head size hs = {c.head_dim}", "attn", col=0.0, in_block=True)
    node("k", f"k: {c.kv_heads} heads", f"head size {c.head_dim}{gqa}", "attn", col=1.0, in_block=True,
         same_row=True)
    node("v", f"v: {c.kv_heads} heads", f"head size {c.head_dim}{gqa}", "attn", col=2.0, in_block=True,
         same_row=True)
    edge("split", "q", ("B", "T", "A"), "q_flat")
    edge("split", "k", ("B", "T", "kv"), "k_flat")
    edge("split", "v", ("B", "T", "kv"), "v_flat")
    qsrc, ksrc = "q", "k"
    if c.pos_encoding == "rope":
        node("rope_q", "RoPE: turn q", "pair i by angle pos·θᵢ", "attn", col=0.0, in_block=True)
        node("rope_k", "RoPE: turn k", "same angles", "attn", col=1.0, in_block=True, same_row=True)
        edge("q", "rope_q", ("B", "nh", "T", "hs"), "q")
        edge("k", "rope_k", ("B", "nkv", "T", "hs"), "k")
        qsrc, ksrc = "rope_q", "rope_k"
    node("scores", "q · kᵀ per head", "every query against every key", "attn", col=0.5, in_block=True)
    edge(qsrc, "scores", ("B", "nh", "T", "hs"), "q_rope" if c.pos_encoding == "rope" else "q")
    edge(ksrc, "scores", ("B", "nkv", "T", "hs"), "k_rope" if c.pos_encoding == "rope" else "k")
    last = "scores"
    if c.attn_scale:
        node("scale", f"× 1/√hs = 1/{c.head_dim ** 0.5:.3g}", "keeps the scores' spread near 1", "attn", col=0.5,
             in_block=True)
        edge(last, "scale", ("B", "nh", "T", "T"), "scores")
        last = "scale"
    if c.causal:
        node("mask", "causal mask", "−∞ above the diagonal: no peeking ahead", "attn", col=0.5, in_block=True)
        edge(last, "mask", ("B", "nh", "T", "T"), "scores")
        last = "mask"
    node("softmax", "softmax over keys", "each row sums to 1 (then dropout, training only)", "attn", col=0.5,
         in_block=True)
    edge(last, "softmax", ("B", "nh", "T", "T"), "scores")
    node("mix", "weights @ v", "each head: a weighted mean of its values", "attn", col=1.0, in_block=True)
    edge("softmax", "mix", ("B", "nh", "T", "T"), "weights")
    edge("v", "mix", ("B", "nkv", "T", "hs"), "v")
    node("merge", "merge heads", "transpose + view: heads side by side", "op", in_block=True)
    edge("mix", "merge", ("B", "nh", "T", "hs"), "heads_out")
    node("c_proj", "attn.c_proj: Linear A→C", f"{c.attn_dim}→{c.n_embd}, then dropout", "param", in_block=True)
    edge("merge", "c_proj", ("B", "T", "A"), f"{h0}.attn.c_proj:in")
    node("add1", "+ residual", "x = x + attn(ln_1(x))", "add", in_block=True)
    edge("c_proj", "add1", btc, f"{h0}.attn:out")
    edge(first, "add1", btc, f"{h0}:in", skip=True)
    node("ln_2", f"ln_2: {norm}", "", "norm", in_block=True)
    edge("add1", "ln_2", btc, f"{h0}.ln_2:in")
    if c.n_experts:
        node("mlp_in", f"MoE router → top-{c.moe_top_k} of {c.n_experts} expert MLPs",
             f"each expert C→{c.ffn_dim}→C", "param", in_block=True)
        edge("ln_2", "mlp_in", btc, f"{h0}.ln_2:out")
        mlp_out, mlp_tensor = "mlp_in", f"{h0}.mlp:out"
    else:
        gated = c.mlp == "gated"
        node("c_fc", "c_fc and c_gate: Linear C→ff" if gated else "mlp.c_fc: Linear C→ff",
             f"{c.n_embd}→{c.ffn_dim}" + (" (two of them)" if gated else ""), "param", in_block=True)
        edge("ln_2", "c_fc", btc, f"{h0}.ln_2:out")
        node("act", "SiLU(gate) × up" if gated else "GELU", "the only non-linearity per position", "op",
             in_block=True)
        edge("c_fc", "act", ("B", "T", "ff"), f"{h0}.mlp.c_fc:out")
        node("mlp_proj", "mlp.c_proj: Linear ff→C", f"{c.ffn_dim}→{c.n_embd}, then dropout", "param",
             in_block=True)
        edge("act", "mlp_proj", ("B", "T", "ff"), f"{h0}.mlp.c_proj:in")
        mlp_out, mlp_tensor = "mlp_proj", f"{h0}.mlp:out"
    node("add2", "+ residual", "x = x + mlp(ln_2(x))", "add", in_block=True)
    edge(mlp_out, "add2", btc, mlp_tensor)
    edge("add1", "add2", btc, f"{h0}.ln_2:in", skip=True)
    # ---- after the blocks ----
    last_block = f"module:transformer.h.{c.n_layer - 1}"
    node("ln_f", f"ln_f: final {norm}", f"after all {c.n_layer} blocks", "norm")
    edge("add2", "ln_f", btc, f"{last_block}:out")
    tied = " (tied: the same matrix as wte)" if c.tie_weights else ""
    node("lm_head", "lm_head: Linear C→V", f"{c.n_embd}→{c.vocab_size:,}{tied}", "param")
    edge("ln_f", "lm_head", btc, "module:transformer.ln_f:out")
    node("targets", "targets (next tokens)", "idx shifted by one", "input", col=2.0, same_row=True)
    node("loss", "cross-entropy loss", "mean −log p(target) over B·T tokens", "loss")
    edge("lm_head", "loss", ("B", "T", "V"), "logits")
    edge("targets", "loss", ("B", "T"), "targets")
    node("out", "loss (a number)", "backward() starts here", "output")
    edge("loss", "out", (), "loss")
    return {"nodes": nodes, "edges": edges, "dims": dims, "n_layer": c.n_layer, "batch": int(batch), "T": T}


def shape_text(e: dict) -> str:
    """'(B, T, C) = (1, 12, 768)' for an edge; '() scalar' for the loss."""
    if not e["dims"]:
        return "() a scalar"
    return f"({', '.join(e['dims'])}) = ({', '.join(f'{n:,}' for n in e['shape'])})"


COLORS = {"input": "#e7f5ff", "param": "#fff4e6", "norm": "#f3f0ff", "attn": "#ebfbee", "add": "#f8f9fa",
          "op": "#f8f9fa", "loss": "#fff5f5", "output": "#fff5f5"}
X0, DX, NODE_W, NODE_H, ROW_H, TOP = 160, 260, 210, 36, 64, 20


def graph_svg(graph: dict) -> str:
    """An SVG drawing of model_graph's output: boxes in rows, arrows labelled with their shapes, residual
    shortcuts on the left, the block framed and marked x n_layer. Hover a box or an arrow for details."""
    pos = {n["id"]: (X0 + n["col"] * DX, TOP + n["row"] * ROW_H) for n in graph["nodes"]}
    rows = max(n["row"] for n in graph["nodes"]) + 1
    width, height = int(X0 + 2 * DX + NODE_W / 2 + 190), TOP + rows * ROW_H + 10
    plain = [e for e in graph["edges"] if not e["skip"]]
    out_deg = {n["id"]: sum(e["src"] == n["id"] for e in plain) for n in graph["nodes"]}
    in_deg = {n["id"]: sum(e["dst"] == n["id"] for e in plain) for n in graph["nodes"]}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" class="tg-graph" '
             f'style="width:100%;max-width:{width}px;font-family:sans-serif" role="img">',
             '<defs><marker id="tg-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#495057"/></marker></defs>']
    block = [n for n in graph["nodes"] if n["in_block"]]
    if block:
        y0 = min(pos[n["id"]][1] for n in block) - NODE_H / 2 - 10
        y1 = max(pos[n["id"]][1] for n in block) + NODE_H / 2 + 10
        parts.append(f'<rect x="8" y="{y0:.0f}" width="{width - 16}" height="{y1 - y0:.0f}" rx="10" fill="none" '
                     'stroke="#74c0fc" stroke-width="2" stroke-dasharray="6 4"/>')
        parts.append(f'<text x="{width - 16}" y="{y0 + 18:.0f}" text-anchor="end" font-size="14" font-weight="600" '
                     f'fill="#1c7ed6">transformer block × {graph["n_layer"]} (h[0] … h[{graph["n_layer"] - 1}])</text>')
    for e in graph["edges"]:
        (x1, y1), (x2, y2) = pos[e["src"]], pos[e["dst"]]
        label = html.escape(shape_text(e))
        title = f"<title>{html.escape(e['tensor'])}: {label}</title>"
        if e["skip"]:  # the residual shortcut runs down the left margin
            xl = 30
            d = (f"M{x1 - NODE_W / 2:.0f},{y1:.0f} H{xl} V{y2:.0f} H{x2 - NODE_W / 2 - 2:.0f}")
            parts.append(f'<path d="{d}" fill="none" stroke="#adb5bd" stroke-width="2" marker-end="url(#tg-arrow)">'
                         f'{title}</path>')
            parts.append(f'<text x="{xl + 4}" y="{(y1 + y2) / 2:.0f}" font-size="11" fill="#868e96" '
                         f'transform="rotate(-90 {xl + 4} {(y1 + y2) / 2:.0f})" text-anchor="middle" dy="-4">'
                         f'residual {label}</text>')
            continue
        sy, ty = y1 + NODE_H / 2, y2 - NODE_H / 2 - 2
        if y2 == y1:  # side by side (targets -> loss cannot be; kept for safety)
            sy, ty = y1, y2
        parts.append(f'<line x1="{x1:.0f}" y1="{sy:.0f}" x2="{x2:.0f}" y2="{ty:.0f}" stroke="#495057" '
                     f'stroke-width="1.5" marker-end="url(#tg-arrow)">{title}</line>')
        # a label sits where its arrow is alone: near the target when arrows fan out, near the source when
        # they converge, else halfway
        if out_deg[e["src"]] > 1 and x1 != x2:  # fanning out: just above the target, right of the arrow head
            lx, ly = x2 + 8, ty - 4
        else:
            t = 0.3 if in_deg[e["dst"]] > 1 else 0.5
            lx, ly = x1 + t * (x2 - x1) + 6, sy + t * (ty - sy) + 4
        parts.append(f'<text x="{lx:.0f}" y="{ly:.0f}" font-size="11" fill="#495057">{label}{title}</text>')
    for n in graph["nodes"]:
        x, y = pos[n["id"]]
        tip = html.escape(": ".join(t for t in (n["label"], n["detail"], n.get("tip", "")) if t))
        parts.append(f'<g><title>{tip}</title><rect x="{x - NODE_W / 2:.0f}" y="{y - NODE_H / 2:.0f}" '
                     f'width="{NODE_W}" height="{NODE_H}" rx="7" fill="{COLORS.get(n["kind"], "#f8f9fa")}" '
                     'stroke="#495057" stroke-width="1.2"/>'
                     f'<text x="{x:.0f}" y="{y - 2:.0f}" text-anchor="middle" font-size="12.5" font-weight="600" '
                     f'fill="#212529">{html.escape(n["label"])}</text>'
                     f'<text x="{x:.0f}" y="{y + 12:.0f}" text-anchor="middle" font-size="10" fill="#495057">'
                     f'{html.escape(_short(n["detail"]))}</text></g>')
    d = graph["dims"]
    legend = (f"B={d['B']} sequences · T={d['T']} tokens · C={d['C']} · nh={d['nh']} heads · hs={d['hs']} · "
              f"ff={d['ff']} · V={d['V']:,}")
    parts.append(f'<text x="{width - 10}" y="{height - 6}" text-anchor="end" font-size="11" fill="#868e96">'
                 f'{html.escape(legend)}</text></svg>')
    return "".join(parts)


def _short(text: str, n: int = 34) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


__all__ = ["graph_svg", "model_graph", "shape_text"]
