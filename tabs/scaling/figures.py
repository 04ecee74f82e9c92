"""The Scaling-laws tab's drawings: four log-log panels of a sweep (L(N) with its fit, the IsoFLOP curves, N_opt
against C with the published slopes, loss against compute with the frontier) and the table of runs and optima.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.ticker import FormatStrFormatter

from ..kit.common import human, new_figure
from .explain import HOFFMANN, KAPLAN

BUDGET_COLORS = ["#1c7ed6", "#e8590c", "#2f9e44", "#ae3ec9", "#f08c00"]


# ---- drawing ------------------------------------------------------------------------------------------------
def sweep_figure(result: dict | None):
    """Four log-log panels: L(N) of the size sweep with its fit; the IsoFLOP curves with their optima; N_opt vs C
    with the fitted and the published slopes; loss vs compute for every run with the compute frontier."""
    fig = new_figure(11, 7.6)
    (a1, a2), (a3, a4) = fig.subplots(2, 2)
    runs = (result or {}).get("runs") or []
    for ax in (a1, a2, a3, a4):
        ax.grid(alpha=.3, which="both")
    size = sorted((r for r in runs if r["group"] == "size"), key=lambda r: r["params"])
    if size:
        n = np.array([r["params"] for r in size], float)
        a1.loglog(n, [r["val_loss"] for r in size], "o", color="k", label=f"runs ({human(size[0]['tokens'])} tokens)")
        fit = result.get("fit")
        if fit:
            xs = np.geomspace(n.min() / 1.5, n.max() * 1.5, 100)
            a1.loglog(xs, fit["a"] * xs ** -fit["alpha"] + fit["c"], "-", color="#1c7ed6",
                      label=f"{fit['a']:.3g}·N^-{fit['alpha']:.3f} + {fit['c']:.3f} (r² {fit['r2']:.3f})")
            a1.axhline(fit["c"], color="#1c7ed6", ls=":", lw=1, label=f"c = {fit['c']:.3f} (irreducible here)")
        a1.legend(fontsize=8)
    a1.set(title="L(N): every model sees the same tokens", xlabel="parameters N (non-embedding)",
           ylabel="validation loss (nats/token)")
    budgets = (result or {}).get("budgets") or []
    for i, b in enumerate(budgets):
        c = BUDGET_COLORS[i % len(BUDGET_COLORS)]
        ns = np.array([r["params"] for r in b["runs"]], float)
        ls = np.array([r["val_loss"] for r in b["runs"]], float)
        a2.semilogx(ns, ls, "o-", color=c, lw=1, label=f"C = {b['flops']:.2g} FLOPs")
        a2.semilogx([b["n_opt"]], [b["loss_opt"]], "*", ms=14, color=c, mec="k")
    a2.set(title="IsoFLOP curves: D = C / (6N); ★ = best size", xlabel="parameters N", ylabel="validation loss")
    if budgets:
        a2.legend(fontsize=8)
    opt = (result or {}).get("optimum")
    if budgets:
        cs = np.array([b["flops"] for b in budgets], float)
        a3.loglog(cs, [b["n_opt"] for b in budgets], "*", ms=14, color="k", label="N_opt per budget")
        xs = np.geomspace(cs.min() / 2, cs.max() * 2, 50)
        if opt:
            a3.loglog(xs, opt["k"] * xs ** opt["exponent"], "-", color="#1c7ed6",
                      label=f"fit: N_opt ∝ C^{opt['exponent']:.2f} (r² {opt['r2']:.2f})")
        mid_c, mid_n = math.exp(np.log(cs).mean()), math.exp(np.log([b["n_opt"] for b in budgets]).mean())
        for e, name, ls_ in ((HOFFMANN["n_opt_exponent"], "Hoffmann 2022", "--"),
                             (KAPLAN["n_opt_exponent"], "Kaplan 2020", ":")):
            a3.loglog(xs, mid_n * (xs / mid_c) ** e, ls_, color="gray", label=f"{name}: C^{e:.2f} (slope only)")
        a3.legend(fontsize=8)
    a3.set(title="compute-optimal size", xlabel="compute C (FLOPs)", ylabel="N_opt")
    if runs:
        for group, mk, col in (("size", "o", "k"), ("budget", "s", "#868e96")):
            rs = [r for r in runs if r["group"] == group]
            a4.loglog([r["flops"] for r in rs], [r["val_loss"] for r in rs], mk, color=col, ms=4, alpha=.7,
                      label="size sweep" if group == "size" else "budget runs")
        fc = result.get("fit_compute")
        if fc:
            xs = np.geomspace(min(r["flops"] for r in runs), max(r["flops"] for r in runs), 100)
            a4.loglog(xs, fc["a"] * xs ** -fc["alpha"] + fc["c"], "-", color="#e8590c",
                      label=f"frontier fit: ∝ C^-{fc['alpha']:.3f} + {fc['c']:.2f}")
        a4.legend(fontsize=8)
    a4.set(title="loss vs compute (C = 6ND)", xlabel="compute C (FLOPs)", ylabel="validation loss")
    for ax in (a1, a4):  # loss axes span less than a decade: plain numbers, not 2×10^0
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.1f"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%.1f"))
    return fig


def tables_md(result: dict | None) -> str:
    if not result or not result.get("runs"):
        return "No sweep yet: press **Re-run the sweep**."
    lines = ["| group | layers×heads×d | N (non-embedding) | tokens D | D/N | FLOPs C | val loss | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        g = "size sweep" if r["group"] == "size" else f"C = {r['budget']:.2g}"
        lines.append(f"| {g} | {r['n_layer']}×{r['n_head']}×{r['n_embd']} | {r['params']:,} | {r['tokens']:,} | "
                     f"{r['tokens'] / r['params']:.0f} | {r['flops']:.2e} | {r['val_loss']:.3f} | "
                     f"{r.get('seconds', 0):.0f} |")
    if result.get("budgets"):
        lines += ["", "| budget C | best size N_opt | D_opt = C/(6 N_opt) | tokens per parameter | loss at N_opt | "
                      "how |", "|---|---|---|---|---|---|"]
        for b in result["budgets"]:
            how = "edge of the sizes tried" if b["edge"] else b["method"]
            lines.append(f"| {b['flops']:.2g} | {b['n_opt']:,.0f} | {b['d_opt']:,.0f} | {b['tokens_per_param']:.0f} | "
                         f"{b['loss_opt']:.3f} | {how} |")
    return "\n".join(lines)
