"""The calculator's plots: the memory bars and the KV-cache lines (Gradio native plots: small tables the browser
draws; kv_plot redraws the KV legend for each shape), and the matplotlib figure of parameters against depth and width
for the GPT-2 family and GPT-3 (drawn once)."""
from __future__ import annotations

from functools import lru_cache

import gradio as gr
import pandas as pd

from tinygpt import GPTConfig, count_parameters
from tinygpt.compute import gqa_compare_heads, kv_cache_bytes

from ..kit.common import human, new_figure

FAMILY = ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt3"]
PART_COLORS = {"weights": "#4c6ef5", "gradients": "#15aabf", "optimizer": "#f59f00", "activations": "#e8590c",
               "kv_cache": "#7048e8"}


# ---- plots -------------------------------------------------------------------------------------------
# Memory and KV cache are Gradio native plots: the server only sends a small table and the browser draws
# it, which keeps every handler far under 100 ms (a matplotlib render alone takes longer on a busy CPU).
def memory_frame(r: dict) -> pd.DataFrame:
    """Rows (what, part, GiB) for the stacked bars: training = weights + gradients + optimizer + activations,
    inference = weights + KV cache."""
    m = r["memory_bytes"]
    rows = [("training", part, m[part]) for part in ("weights", "gradients", "optimizer", "activations")]
    rows += [("inference", "weights", m["inference_weights"]), ("inference", "kv_cache", m["kv_cache"])]
    return pd.DataFrame([{"what": w, "part": p, "GiB": b / 2 ** 30} for w, p, b in rows])


KV_COLORS = ("#e8590c", "#1c7ed6", "#2b8a3e")  # MHA, GQA, MQA


def kv_lines(cfg: GPTConfig) -> list:
    """[(legend label, KV heads)] for the KV-cache chart, from the config: MHA keeps a K/V head per query head,
    GQA the config's own grouping (or the divisor of n_head nearest n_head/4), MQA one; distinct, most heads first
    (a config with 1 or 2 heads has fewer lines)."""
    g = gqa_compare_heads(cfg)
    out = [(f"MHA ({cfg.n_head} KV heads)", cfg.n_head)]
    if 1 < g < cfg.n_head:
        out.append((f"GQA ({g} KV heads)", g))
    if cfg.n_head > 1:
        out.append(("MQA (1 KV head)", 1))
    return out


def kv_frame(cfg: GPTConfig, r: dict, points: int = 40) -> pd.DataFrame:
    """KV-cache GiB against sequence length for MHA, GQA and MQA at the chosen batch size and dtype (each value is
    tinygpt.compute.kv_cache_bytes / 2^30)."""
    i = r["inputs"]
    top = max(cfg.block_size, i["seq_len"])
    rows = []
    for label, heads in kv_lines(cfg):
        for k in range(points + 1):
            seq = round(top * k / points)
            rows.append({"sequence length": seq, "GiB": kv_cache_bytes(cfg, i["batch_size"], seq, i["dtype"], heads)
                         / 2 ** 30, "attention": label})
    return pd.DataFrame(rows)


def kv_plot(frame: pd.DataFrame) -> dict:
    """The KV-cache chart's update: its data, a colour per legend label of THIS shape, and shown. A native plot
    in the browser keeps the legend (colour domain) of the data it was first drawn with: after a shape with other
    head counts, the old legend stayed and the lines with new labels were not drawn. It is drawn afresh when it is
    shown again, so a calculation whose legend differs hides it first (kv_hide) and this update shows it."""
    labels = list(dict.fromkeys(frame["attention"]))
    return gr.update(value=frame, color_map=dict(zip(labels, KV_COLORS)), visible=True)


def shown_labels(payload) -> list:
    """The legend labels of the KV chart's current value, as the browser sends it (PlotData or its dict)."""
    if payload is None:
        return []
    d = payload if isinstance(payload, dict) else getattr(payload, "model_dump", lambda: {})()
    cols, data = d.get("columns") or [], d.get("data") or []
    if "attention" not in cols:
        return []
    k = cols.index("attention")
    return list(dict.fromkeys(row[k] for row in data))



@lru_cache(maxsize=1)
def family_figure():
    """Parameters against depth and width for the GPT-2 family and GPT-3, log-log. It does not depend on the
    form, so it is drawn once (matplotlib) and never re-rendered by a handler."""
    fig = new_figure(8, 3.2)
    axes = fig.subplots(1, 2, sharey=True)
    pts = [(n, GPTConfig.from_preset(n)) for n in FAMILY]
    totals = [count_parameters(c)["total"] for _, c in pts]
    for ax, attr, label in ((axes[0], "n_layer", "depth: n_layer"), (axes[1], "n_embd", "width: n_embd (d)")):
        xs = [getattr(c, attr) for _, c in pts]
        ax.plot(xs, totals, "o-", ms=4, color="#4c6ef5")
        for (n, _), x, t in zip(pts, xs, totals):
            last = n == FAMILY[-1]  # GPT-3's label goes to the left so it stays inside the axes
            ax.annotate(f"{n}\n{human(t)}", (x, t), fontsize=7, xytext=(-6 if last else 5, -14),
                        ha="right" if last else "left", textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sorted(set(xs)), [str(x) for x in sorted(set(xs))], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("parameters (log scale)")
    axes[0].set_ylim(6e7, 4e11)
    fig.suptitle("Parameters vs depth and width: GPT-2 small/medium/large/XL and GPT-3", fontsize=10)
    return fig

