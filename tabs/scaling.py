"""Scaling-laws tab: a sweep of small GPTs (shipped, drawn instantly; re-runnable live) with L(N) = a·N^-alpha + c,
Chinchilla-style IsoFLOP curves for three compute budgets, N_opt ∝ C^a, the published exponents next to ours,
and an Explain section on what a toy scale can and cannot show.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from functools import partial

import gradio as gr
import numpy as np
from matplotlib.ticker import FormatStrFormatter

from tinygpt.beyond.scaling import (
    SweepConfig,
    analyse_sweep,
    fit_power_law,
    model_config,
    parse_budgets,
    parse_shapes,
    plan_sweep,
    scaling_sweep,
)
from tinygpt.budget import BudgetError, check, limits_from_env, machine_speed
from tinygpt.budget.estimates import estimate_scaling
from tinygpt.budget.terms import Work, windows
from tinygpt.data import CORPORA, load_corpus, make_tokenizer, python_docs
from tinygpt.defaults import SCALING

from .kit.commands import cli, cli_python
from .kit.registry import register
from .kit.common import UserError, clamp_int, human, human_flops, new_figure, parse_float, user_errors
from .kit.runs import run_key
from .kit.sessions import SessionStore
from .kit.stream import Stopper, stream

DEFAULT_SWEEP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "scaling",
                             "default_sweep.json")
# A re-run is budgeted before it starts (tinygpt.budget: refused when its estimate passes a run's limits), and one
# whose measured time passes this cap stops there with the runs finished so far. None: the budget's time per run
# (10 minutes, or TINYGPT_RUN_MINUTES).
TIME_CAP_S: float | None = None
SCALING_CORPUS = "tiny-shakespeare"  # SCALING's text=None: Tiny Shakespeare (offline: the Python docs)
MAX_SHAPES, MAX_LAYERS, MAX_EMBD, MAX_BUDGETS = 10, 6, 256, 5
BUDGET_COLORS = ["#1c7ed6", "#e8590c", "#2f9e44", "#ae3ec9", "#f08c00"]
STOP = Stopper("scaling")

# Published numbers we compare with (cited in the Explain section).
KAPLAN = {"alpha_N": 0.076, "alpha_C": 0.050, "n_opt_exponent": 0.73}  # Kaplan et al. 2020, eqs. 1.1, 1.3, 1.4
HOFFMANN = {"n_opt_exponent": 0.50, "alpha": 0.34, "beta": 0.28, "E": 1.69, "tokens_per_param": 20}  # Hoffmann 2022


def load_sweep(path: str) -> dict | None:
    """The shipped sweep (None when the file is missing or unreadable: the tab then asks for a run)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


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


def attention_share(result: dict) -> tuple[float, float]:
    """Share of the forward FLOPs per token that 6N leaves out (attention scores 2·n_layer·n_ctx·d, Kaplan's
    table 1), for the smallest and the largest model of the sweep."""
    T = (result.get("config") or {}).get("context", 64)
    def share(r):
        attn = 2 * r["n_layer"] * T * r["n_embd"]
        return attn / (2 * r["params"] + attn)
    runs = sorted(result["runs"], key=lambda r: r["params"])
    return share(runs[0]), share(runs[-1])


def slope_se(slope: float, r2: float, n: int) -> float | None:
    """Standard error of a least-squares slope from its r² and n points (None under 3 points)."""
    if n < 3 or not 0 < r2 <= 1:
        return None
    return abs(slope) * math.sqrt(max(1 - r2, 0.0) / r2 / (n - 2))


def fit_scatter(size: list, fit: dict) -> float:
    """RMS distance of the size-sweep losses from the fitted a·N^-α + c."""
    res = [r["val_loss"] - (fit["a"] * r["params"] ** -fit["alpha"] + fit["c"]) for r in size]
    return math.sqrt(sum(x * x for x in res) / len(res))


def carry_over(fit: dict | None, budgets: list) -> str:
    """What the papers found that should carry over to a toy scale, checked against this sweep."""
    claims = []
    if fit:
        claims.append(f"loss falls as a power law towards a floor (here r² {fit['r2']:.3f}"
                      + (", a good fit)" if fit["r2"] >= 0.95 else ", a poor fit: this sweep does not show it "
                         "cleanly)"))
    if len(budgets) >= 2:
        ns = [b["n_opt"] for b in budgets]
        grows = all(x < y for x, y in zip(ns, ns[1:]))
        claims.append("a fixed compute budget has a best model size that grows with the budget ("
                      + (f"here it does: {', '.join(f'{n:,.0f}' for n in ns)})" if grows else
                         f"here it does not at every step: {', '.join(f'{n:,.0f}' for n in ns)} — the optima are "
                         "noisy, or at the edge of the sizes tried)"))
    return ("* **What should carry over** (the papers' findings, checked here): " + "; ".join(claims) + "."
            if claims else "")


def explain(result: dict | None) -> str:
    """Read the sweep's numbers next to the published ones; say what a toy scale changes."""
    if not result or not result.get("runs"):
        return ""
    fit, opt, budgets, runs = result.get("fit"), result.get("optimum"), result.get("budgets") or [], result["runs"]
    size = sorted((r for r in runs if r["group"] == "size"), key=lambda r: r["params"])
    lines = ["### Our numbers next to the papers'", "",
             "| quantity | this sweep | Kaplan et al. 2020 | Hoffmann et al. 2022 (Chinchilla) |", "|---|---|---|---|"]
    if fit:
        pure = fit_power_law([r["params"] for r in size], [r["val_loss"] for r in size], c=0.0)
        lines.append(f"| L(N) exponent with an offset: a·N^-α + c | α = {fit['alpha']:.3f} (c = {fit['c']:.2f}, "
                     f"r² {fit['r2']:.3f}) | — | α = {HOFFMANN['alpha']} in E + A/N^α + B/D^β |")
        lines.append(f"| L(N) exponent, pure power law (c = 0) | {pure['alpha']:.3f} (r² {pure['r2']:.3f}) | "
                     f"α_N = {KAPLAN['alpha_N']} | — |")
    if opt:
        lines.append(f"| N_opt ∝ C^a | a = {opt['exponent']:.2f} (r² {opt['r2']:.2f}, {len(budgets)} budgets) | "
                     f"{KAPLAN['n_opt_exponent']} | {HOFFMANN['n_opt_exponent']:.2f} (0.46–0.50 by method) |")
        lines.append(f"| best loss ∝ C^-b | b = {-opt['loss_exponent']:.3f} | α_C = {KAPLAN['alpha_C']} | — |")
    if budgets:
        tpp = ", ".join(f"{b['tokens_per_param']:.0f}" for b in budgets)
        lines.append(f"| tokens per parameter at the optimum | {tpp} | — | ≈ {HOFFMANN['tokens_per_param']} |")
    lines.append("")
    if size and fit:
        falls = all(a["val_loss"] > b["val_loss"] for a, b in zip(size, size[1:]))
        trend = "falling at every step up in size" if falls else \
            "but not at every step up in size (noise, or too few steps for the big ones)"
        lines.append(f"* **L(N)**: at {size[0]['tokens']:,} tokens each, the loss goes from {size[0]['val_loss']:.3f} "
                     f"({size[0]['params']:,} parameters) to {size[-1]['val_loss']:.3f} ({size[-1]['params']:,}), "
                     f"{trend}. With D fixed, Chinchilla's L(N, D) = E + A/N^α + B/D^β *is* a·N^-α + c with "
                     "c = E + B/D^β, "
                     f"so our α = {fit['alpha']:.3f} is the number to hold against their {HOFFMANN['alpha']}; "
                     f"Kaplan's {KAPLAN['alpha_N']} is a pure power law without offset (our version of it: "
                     f"{pure['alpha']:.3f}), fitted over seven decades of N, not two.")
    if budgets:
        edge = [b for b in budgets if b["edge"]]
        parts = "; ".join(f"C = {b['flops']:.2g}: N_opt ≈ {b['n_opt']:,.0f}, D_opt ≈ {b['d_opt']:,.0f}"
                          for b in budgets)
        lines.append(f"* **IsoFLOP curves** (Chinchilla's approach 2): in {len(budgets) - len(edge)} of "
                     f"{len(budgets)} budgets the loss is U-shaped in N, with the best size inside the range tried — "
                     f"too small a model cannot use its tokens, too large a one sees too few. {parts}."
                     + (f" {len(edge)} budget(s) have their best run at the edge of the sizes tried, so the optimum "
                        "may lie outside: add a size on that side." if edge else ""))
    if opt:
        a = opt["exponent"]
        closer = "Kaplan's" if abs(a - KAPLAN["n_opt_exponent"]) < abs(a - HOFFMANN["n_opt_exponent"]) else \
            "Chinchilla's"
        tpp = [b["tokens_per_param"] for b in budgets]
        trend = "falls" if tpp[-1] < tpp[0] else "rises" if tpp[-1] > tpp[0] else "stays"
        # D/N = C / (6 N^2) ∝ C^(1 - 2a): it falls with C exactly when a > 0.5
        same = (trend == "falls") == (a > 0.5) and trend != "stays"
        se = slope_se(a, opt["r2"], len(budgets))
        if any(b["edge"] for b in budgets):
            lines.append(f"* **N_opt ∝ C^{a:.2f} cannot be trusted here**: at least one budget's best run sits at the "
                         "edge of the sizes tried, so its N_opt is a bound, not an optimum. Add sizes on that side.")
        lines.append(f"* **N_opt ∝ C^{a:.2f}**, closer to {closer}: Chinchilla found "
                     f"{HOFFMANN['n_opt_exponent']:.2f} (grow N and D equally, about {HOFFMANN['tokens_per_param']} "
                     f"tokens per parameter at every scale), Kaplan {KAPLAN['n_opt_exponent']} (mostly grow N). Our "
                     f"tokens per parameter at the optimum {trend} from {tpp[0]:.0f} to {tpp[-1]:.0f} as C grows"
                     + (f" — the same fact as an exponent {'above' if a > 0.5 else 'below'} 0.5. " if same else ". ")
                     + "Porian et al. (2024) traced "
                     "Kaplan's larger exponent to small-scale effects of the kind listed below (compute not counted "
                     "by 6N, warm-up too long for small models, hyper-parameters not tuned per size). With "
                     f"{len(budgets)} budgets over a {budgets[-1]['flops'] / budgets[0]['flops']:.0f}× range and sizes "
                     "a factor ~2 apart, "
                     + (f"the fit's standard error is ±{se:.2f} ({len(budgets)} points): read it as a direction."
                        if se is not None else "there are too few budgets for an error estimate: read it as a "
                        "direction."))
        if not same:
            lines.append(f"* **The two readings disagree here:** the fitted exponent ({a:.2f}) says tokens per "
                         f"parameter should {'fall' if a > 0.5 else 'rise'} with C, while the end points "
                         f"{trend} ({tpp[0]:.0f} → {tpp[-1]:.0f}): the middle budget pulls the fit, a sign that the "
                         "optima are noisy at this scale.")
    big, small = attention_share(result)
    per_step = runs[0]["tokens"] // runs[0]["steps"]
    lines += ["", "### What differs at toy scale", "",
              f"* **Steps, not just tokens, limit learning.** Our runs last {min(r['steps'] for r in runs):,}–"
              f"{max(r['steps'] for r in runs):,} optimizer steps of {per_step:,} tokens; at fixed compute a small "
              "model gets more steps, and a character model typically spends its first steps learning letter "
              "frequencies, whatever its size. Real sweeps run 10⁴–10⁵ steps with batch sizes and learning rates "
              "tuned per size; here one learning rate and batch serve every size.",
              f"* **6N undercounts compute for tiny models**: the attention scores (2·n_layer·n_ctx·d per token) are "
              f"{big:.0%} of the forward FLOPs for the smallest model and {small:.0%} for the largest, where the "
              "papers' models are at ~1%.",
              "* **The irreducible loss c is this corpus's under these models** (characters, not BPE tokens: "
              "nats per character and nats per token are different units)"
              + (f"; each run has one seed, and the size-sweep losses scatter around the fitted curve by "
                 f"{fit_scatter(size, fit):.3f} nats (RMS), a measure of that noise." if size and fit else "."),
              "* **N covers about two decades** (the papers: 10⁵–10⁹ and more), so curvature and the offset trade off: "
              "the fitted α and c move together when a point moves.",
              carry_over(fit, budgets)]
    lines += ["", f"*Sweep: {result.get('corpus', '?')}, {len(runs)} runs, {result.get('seconds', 0):.0f} s of "
              f"training{' (stopped early)' if result.get('stopped') else ''}.*"
              + (f" Made with `{result['command']}`." if result.get("command") else "")
              + (f" {result['note']}" if result.get("note") else "")]
    return "\n".join(lines)


# ---- re-running ---------------------------------------------------------------------------------------------
def check_sweep_settings(shapes, steps, budgets, lr, batch, context, min_steps, max_steps) -> tuple:
    """(SweepConfig, notes). Raises UserError with one sentence."""
    notes: list = []
    shp = parse_shapes(shapes)
    if len(shp) > MAX_SHAPES:
        raise UserError(f"At most {MAX_SHAPES} model sizes per sweep (got {len(shp)}).")
    for L, H, d in shp:
        if L > MAX_LAYERS or d > MAX_EMBD:
            raise UserError(f"Model {L}x{H}x{d} is too big for a live sweep: at most {MAX_LAYERS} layers and d_model "
                            f"{MAX_EMBD}.")
    bud = parse_budgets(budgets)
    if len(bud) > MAX_BUDGETS:
        raise UserError(f"At most {MAX_BUDGETS} compute budgets (got {len(bud)}).")
    cfg = SweepConfig(shapes=shp, steps=clamp_int(steps, 10, 5000, "Steps", notes), budgets=bud,
                      lr=parse_float(lr, "Learning rate", 1e-5, 0.1),
                      batch_size=clamp_int(batch, 1, 64, "Batch size", notes),
                      context=clamp_int(context, 8, 128, "Context", notes),
                      min_steps=clamp_int(min_steps, 1, 5000, "Shortest budget run", notes),
                      max_steps=clamp_int(max_steps, 1, 10000, "Longest budget run", notes))
    return cfg, notes


def get_text(corpus) -> tuple[str, str]:
    key = CORPORA.get(corpus, corpus)
    try:
        return load_corpus(key), key
    except ConnectionError as e:
        return python_docs(), f"python-docs ({e} The offline Python-docs corpus was used instead.)"


def cap_s() -> float:
    """The measured cap of a running sweep, in seconds: TIME_CAP_S, else the budget's time per run."""
    return float(TIME_CAP_S) if TIME_CAP_S is not None else limits_from_env().run_seconds


def run_costs(cfg: SweepConfig, vocab: int, plan: list, corpus_tokens: int) -> list:
    """Each run's predicted seconds (the budget's time model: its training steps and its two evaluations at this
    machine's measured speed): a step of a big model counts for more than one of a small model in the progress."""
    speed = machine_speed()
    n_windows = windows(corpus_tokens - int(0.9 * corpus_tokens), cfg.context, max(1, cfg.eval_windows // 8) * 8)
    costs = []
    for r in plan:
        c = model_config(r["shape"], vocab, cfg.context)
        work = Work().train(c, cfg.batch_size, cfg.context, n=r["steps"]).forward(c, n_windows, cfg.context, n=2)
        costs.append(max(work.seconds(speed), 1e-9))
    return costs


@user_errors
def on_estimate(corpus, shapes, steps, budgets, lr, batch, context, min_steps, max_steps) -> str:
    """The plan (runs, steps, FLOPs) and its predicted time on this machine (the budget's estimate: what decides
    whether a re-run starts), without training."""
    cfg, notes = check_sweep_settings(shapes, steps, budgets, lr, batch, context, min_steps, max_steps)
    text, name = get_text(corpus)
    vocab = make_tokenizer(cfg.tokenizer, text).vocab_size
    plan = plan_sweep(cfg, vocab)
    est = estimate_scaling(cfg, vocab, corpus_tokens=len(text))
    try:
        check(est, limits_from_env())
        verdict = f"within the budget of a run ({est.memory} of memory), under the {cap_words()} cap."
    except BudgetError as e:
        verdict = f"**refused** if you re-run it: {e}"
    return (f"{len(plan)} runs, {sum(r['steps'] for r in plan):,} steps, {human_flops(sum(r['flops'] for r in plan))} "
            f"in total: predicted **{est.seconds / 60:.1f} min** from this machine's measured speed, {verdict} "
            "A prediction only: a machine that gets busier runs slower. Once the sweep runs, the time left is "
            "measured from its own progress, and a sweep that reaches the cap stops there with the runs finished so "
            f"far. {' '.join(notes)}")


def cap_words() -> str:
    """The cap as words: "10-minute" (or "30-second" for a cap under a minute)."""
    cap = cap_s()
    return f"{cap / 60:g}-minute" if cap >= 60 else f"{cap:g}-second"


def capped(should_stop, cap_s: float, flag: list):
    """The sweep's should_stop: the run's own (Stop), or its measured time passing the cap from now (then `flag`
    records it)."""
    t0 = time.perf_counter()

    def stop_now() -> bool:
        if should_stop is not None and should_stop():
            return True
        if time.perf_counter() - t0 > cap_s:
            flag[:] = [True]
            return True
        return False
    return stop_now


def sweep_job(cfg: SweepConfig, text: str, name: str, planned: int):
    """The sweep as the hub's job: it stops at its first step or at the measured cap (cap_s(), from when it
    starts), and then says so in its result's note -> scaling_sweep's result (+ capped)."""
    def job(callback, should_stop):
        callback({"kind": "phase"})
        hit, cap, t0 = [], cap_s(), time.perf_counter()
        result = scaling_sweep(cfg, text, callback, capped(should_stop, cap, hit), corpus_name=name)
        if hit:
            result = {**result, "capped": True,
                      "note": f"Stopped at the {cap_words()} cap after {time.perf_counter() - t0:.0f} s: "
                              f"{len(result['runs'])} of {planned} runs finished (the fits use those)."}
        return result
    return job


@user_errors
def on_rerun(sessions: SessionStore, corpus, shapes, steps, budgets, lr, batch, context, min_steps, max_steps,
             request: gr.Request = None, progress=gr.Progress()):
    """Stream (status, figure, tables, explanation) while the sweep trains. Keyed by the sweep's settings and the
    corpus (a student who starts the same follows the one computation); budgeted before it starts
    (tinygpt.budget.estimate_scaling: refused when it does not fit a run's limits); once it runs, the time left is
    measured from its own progress, and a sweep whose measured time passes the cap stops there with the runs
    finished so far."""
    cfg, notes = check_sweep_settings(shapes, steps, budgets, lr, batch, context, min_steps, max_steps)
    text, name = get_text(corpus)
    vocab = make_tokenizer(cfg.tokenizer, text).vocab_size
    plan = plan_sweep(cfg, vocab)
    estimate = estimate_scaling(cfg, vocab, corpus_tokens=len(text))
    est = estimate.seconds
    key = run_key("scaling", {**asdict(cfg), "corpus": name}, text=text)
    stop = STOP.fresh(sessions, request)
    total = sum(r["steps"] for r in plan)
    # progress in predicted seconds: a step of a big model counts for more than one of a small model, so the time
    # left measured from it (elapsed × the work left ÷ the work done) does not assume every step costs the same
    cost = run_costs(cfg, vocab, plan, len(text))
    before = np.cumsum([0.0] + cost).tolist()
    offsets = np.cumsum([0] + [r["steps"] for r in plan]).tolist()  # steps done before each run starts
    note = " ".join(notes)
    runs: list = []
    events: list = []  # the last event tells how far the sweep is
    predicted = (f"predicted before starting: about {est / 60:.1f} min, this machine's measured speed; the time left "
                 f"is measured from the sweep's own progress once it runs, and it stops at the {cap_words()} cap "
                 "whatever happens")
    head = f"Training {len(plan)} runs ({total:,} steps), {predicted}."

    def work_done(ev) -> float:
        i = ev["run"]
        frac = ev.get("step", 0) / max(plan[i]["steps"], 1) if ev["kind"] == "step" else 1.0
        return before[i] + frac * cost[i]

    def progress_of(_, ev):
        return min(1.0, work_done(ev) / before[-1]) if ev.get("kind") in ("step", "run") else None

    def record(_, ev):
        if ev["kind"] == "run":
            runs.append(ev["result"])
        if ev["kind"] in ("step", "run"):
            events[:] = [ev]

    def view(clock):
        if not events:
            return f"{head} {note}", sweep_figure(None), tables_md(None), ""
        last = events[-1]
        i = last["run"]
        done = offsets[i] + (last.get("step", 0) if last["kind"] == "step" else plan[i]["steps"])
        eta = clock.tick(work_done(last), before[-1], f"run {i + 1}/{len(plan)}", counted=False)
        left = clock.left(work_done(last), before[-1])
        over = (f" At this pace it would pass the {cap_words()} cap: it will stop there with the runs "
                "finished so far." if clock.elapsed + left > cap_s() else "")
        partial_result = {"runs": list(runs), **analyse_sweep(runs)}
        return (f"Run {i + 1} of {len(plan)} · {done:,}/{total:,} steps · {clock.elapsed:.0f} s, {eta} "
                f"(measured); predicted before starting: {est / 60:.1f} min.{over} {note}",
                sweep_figure(partial_result), tables_md(partial_result), "")

    def waiting(text):
        return f"{text} {head} {note}", sweep_figure(None), tables_md(None), ""

    result = (yield from stream({"sweep": sweep_job(cfg, text, name, len(plan))}, stop, record, view, progress,
                                sessions=sessions, request=request, key=key, estimate=estimate,
                                label="Scaling sweep", waiting=waiting, progress_of=progress_of)).get("sweep")
    if not result:
        yield f"Stopped before it started. {note}", sweep_figure(None), tables_md(None), ""
        return
    sessions.get(request)["scaling"] = result
    secs = result["seconds"]
    if result.get("capped"):
        head = (f"Stopped at the {cap_words()} cap: {len(result['runs'])} of {len(plan)} runs finished "
                f"in {secs:.0f} s (predicted: {est:.0f} s); the plots and fits below use the finished runs.")
    else:
        head = (f"Done{' (stopped early)' if result['stopped'] else ''}: {len(result['runs'])} runs in {secs:.0f} s "
                f"(predicted: {est:.0f} s).")
    yield (f"{head} {note}", sweep_figure(result), tables_md(result), explain(result))


def build(sessions: SessionStore, sweep_path: str = DEFAULT_SWEEP):
    shipped = load_sweep(sweep_path)
    d = SCALING  # the form's start-up values (the shipped sweep was made with them: tests/test_tab_defaults.py)
    shapes0 = ", ".join("x".join(map(str, s)) for s in d["shapes"])
    budgets0 = ", ".join(f"{b:g}" for b in d["budgets"])
    with gr.Tab("Scaling laws", id="scaling"):
        gr.Markdown("How does loss fall with model size, and what is the best size for a compute budget? A sweep of "
                    "small character-level GPTs on Tiny Shakespeare: **L(N) = a·N^-α + c** from models that all see "
                    "the same tokens, and Chinchilla-style **IsoFLOP** curves: for each budget C every size N trains "
                    "on D = C/(6N) tokens. The plots show a sweep made earlier with the command below; re-run it "
                    "live (every re-run is budgeted before it starts: one that would need more memory or time than a "
                    "run may take on this server is refused, with both figures).")
        status = gr.Markdown(f"Showing the shipped sweep ({len(shipped['runs'])} runs), made with "
                             f"`{shipped.get('command', '')}`. {shipped.get('note', '')}" if shipped else
                             "No shipped sweep found: press Re-run.", elem_id="sc-status")
        plot = gr.Plot(sweep_figure(shipped), label="Scaling plots", elem_id="sc-plot")
        with gr.Accordion("Explain", open=True):
            explain_md = gr.Markdown(explain(shipped), elem_id="sc-explain")
        with gr.Accordion("Runs and optima", open=False):
            tables = gr.Markdown(tables_md(shipped), elem_id="sc-tables")
        with gr.Accordion("Re-run the sweep", open=False):
            with gr.Row():
                corpus = gr.Radio(list(CORPORA), value=next(k for k, v in CORPORA.items() if v == SCALING_CORPUS),
                                  label="Corpus")
                shapes = gr.Textbox(shapes0, label="Model sizes (layers x heads x d_model)", elem_id="sc-shapes")
                budgets = gr.Textbox(budgets0, label="Compute budgets C (FLOPs)", elem_id="sc-budgets")
            with gr.Row():
                steps = gr.Number(d["steps"], label="Size-sweep steps per model", precision=0, elem_id="sc-steps")
                lr = gr.Number(d["lr"], label="Learning rate")
                batch = gr.Number(d["batch_size"], label="Batch size", precision=0)
                context = gr.Number(d["context"], label="Context", precision=0)
                min_steps = gr.Number(d["min_steps"], label="Shortest budget run (steps)", precision=0,
                                      elem_id="sc-min-steps")
                max_steps = gr.Number(d["max_steps"], label="Longest budget run (steps)", precision=0,
                                      elem_id="sc-max-steps")
            with gr.Row():
                est = gr.Button("Estimate time")
                go = gr.Button("Re-run the sweep", variant="primary")
                stop = gr.Button("Stop")
            est_md = gr.Markdown(elem_id="sc-estimate")
        inputs = [corpus, shapes, steps, budgets, lr, batch, context, min_steps, max_steps]
        est.click(on_estimate, inputs, est_md, api_name="scaling_estimate", concurrency_id="scaling_estimate",
                  concurrency_limit=1)
        # its own queue without a limit: the room's run hub schedules the sweeps (and shares identical ones)
        go.click(partial(on_rerun, sessions), inputs, [status, plot, tables, explain_md], api_name="scaling",
                 concurrency_id="scaling", concurrency_limit=None)
        STOP.wire(stop, sessions, status)
        register("scaling", fields=dict(zip(SHARE_FIELDS, inputs)), command=command, run=go)


SHARE_FIELDS = ("corpus", "shapes", "steps", "budgets", "lr", "batch_size", "context", "min_steps", "max_steps")


def command(v: dict) -> str:
    """The sweep as `python -m tinygpt scaling` (the corpus as a text file first, like the Train tab)."""
    cfg, _ = check_sweep_settings(*[v[k] for k in SHARE_FIELDS[1:]])
    key = CORPORA.get(v["corpus"], v["corpus"])
    code = (f"from tinygpt.data import load_corpus; "
            f"open({key + '.txt'!r}, 'w', encoding='utf-8').write(load_corpus({key!r}))")
    return "\n".join(["# the corpus as a text file", cli_python(code), cli(
        "scaling", text=f"{key}.txt", shapes=",".join("x".join(map(str, s)) for s in cfg.shapes), steps=cfg.steps,
        budgets=",".join(f"{b:g}" for b in cfg.budgets), lr=cfg.lr, batch_size=cfg.batch_size, context=cfg.context,
        min_steps=cfg.min_steps, max_steps=cfg.max_steps, json=True)])
