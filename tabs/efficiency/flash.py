"""(c) FlashAttention-2: its tiling stepped through on a small random example (running max m, sum l, the rescale,
skipped causal tiles, equality with SDPA), and the exercise's benchmark of standard vs tiled vs SDPA attention
(time and measured peak memory, one child process per case). The benchmark runs through the room's hub (shared.py:
the "measure" lane)."""
from __future__ import annotations

import html
import time

import gradio as gr
import torch
from matplotlib.patches import Rectangle

from tinygpt.budget.estimates import estimate_flash_benchmark
from tinygpt.efficiency import flash_attention_trace, lengths_offered, measure_attention
from tinygpt.device import cpu_name
from tinygpt.efficiency.measure import METHODS, predicted_bytes

from ..kit.common import UserError, clamp_int, new_figure, user_errors
from ..kit.runs import run_key
from ..kit.sessions import SessionStore
from ..kit.stream import stream
from .shared import COLORS, LANE, STOP, mib, ticking

METHOD_LABELS = {"standard": "standard softmax(QKᵀ)V", "tiled": "tiled FlashAttention-2 (pure PyTorch)",
                 "sdpa": "PyTorch SDPA"}


def flash_trace(T, block_q, block_k, head_dim, causal, seed):
    """(trace state, figure, step markdown, check markdown) for a small random example (no components: the tab
    draws its start-up example with it)."""
    notes: list = []
    T = clamp_int(T, 2, 64, "Tokens", notes)
    bq = clamp_int(block_q, 1, 32, "Query block", notes)
    bk = clamp_int(block_k, 1, 32, "Key/value block", notes)
    hs = clamp_int(head_dim, 1, 64, "Head size", notes)
    s = clamp_int(seed, 0, 2 ** 31 - 1, "Seed", notes)
    g = torch.Generator().manual_seed(s)
    q, k, v = (torch.randn(1, 1, T, hs, generator=g) for _ in range(3))
    _, steps, check = flash_attention_trace(q, k, v, causal=bool(causal), block_q=bq, block_k=bk)
    state = {"steps": steps, "T": T, "bq": bq, "bk": bk, "causal": bool(causal)}
    ok = check["max_abs_diff"] <= 1e-5
    check_md = (f"**Equality check:** max |tiled − PyTorch SDPA| = {check['max_abs_diff']:.2e} over {T} × {hs} "
                f"outputs — {'equal within 1e-5 ✓' if ok else 'NOT equal'}. {check['tiles']} tiles of {bq} × {bk}: "
                f"{check['tiles'] - check['skipped']} computed, {check['skipped']} skipped (causal: every key after"
                f" every query), {check['masked']} on the diagonal (masked inside). The full {T} × {T} score matrix"
                f" never exists: at most one {bq} × {bk} tile does. {' '.join(notes)}").strip()
    fig, md = step_view(state, 0)
    return state, fig, md, check_md


@user_errors
def on_flash_trace(T, block_q, block_k, head_dim, causal, seed):
    """(trace state, step slider, figure, step markdown, check markdown) for a small random example."""
    state, fig, md, check_md = flash_trace(T, block_q, block_k, head_dim, causal, seed)
    return state, gr.Slider(minimum=1, maximum=len(state["steps"]), value=1, step=1), fig, md, check_md


def _fmt(x) -> str:
    return "−∞" if x == float("-inf") else f"{x:.3f}"


def step_view(state, i):
    """Figure (which tiles are done / current / skipped) and markdown (m, l, rescale per query row)."""
    steps = state["steps"]
    i = max(0, min(int(i), len(steps) - 1))
    st, T, bq, bk = steps[i], state["T"], state["bq"], state["bk"]
    fig = new_figure(5.2, 4.6)
    ax = fig.add_subplot(111)
    for j, s in enumerate(steps[:i + 1]):
        if s["kind"] != "tile":
            continue
        (r0, r1), (c0, c1) = s["rows"], s["cols"]
        current = j == i
        color = "#f08c00" if current else ("#dee2e6" if s["skipped"] else "#a5d8ff")
        ax.add_patch(Rectangle((c0, r0), c1 - c0, r1 - r0, facecolor=color, edgecolor="#495057", lw=.8,
                               hatch="//" if s["skipped"] else None))
        if s["masked"]:  # entries above the diagonal inside the tile are -inf
            for r in range(r0, r1):
                for c in range(max(c0, r + 1), c1):
                    ax.add_patch(Rectangle((c, r), 1, 1, facecolor="#343a40", alpha=.55, lw=0))
    if st["kind"] == "finalise":
        r0, r1 = st["rows"]
        ax.add_patch(Rectangle((0, r0), T, r1 - r0, fill=False, edgecolor="#2b8a3e", lw=3))
    for r in range(0, T + 1, bq):  # block boundaries
        ax.axhline(r, color="#adb5bd", lw=.6)
    for c in range(0, T + 1, bk):
        ax.axvline(c, color="#adb5bd", lw=.6)
    ax.set_xlim(0, T)
    ax.set_ylim(T, 0)
    ax.set_aspect("equal")
    ax.set(xlabel="key position (K/V blocks →)", ylabel="query position (Q blocks ↓)")
    ax.set_title(f"step {i + 1}/{len(steps)}\norange now · blue done · hatched skipped · dark masked", fontsize=9)
    rows = range(*st["rows"])
    if st["kind"] == "finalise":
        head = (f"**Step {i + 1}/{len(steps)} — finish Q block {st['q_block']}** (queries {st['rows'][0]}–"
                f"{st['rows'][1] - 1}): every K/V block is done, so divide the accumulator once by l (FA-2 divides"
                f" once per block, FA-1 on every tile) and keep logsumexp = m + log l for the backward pass.")
        table = ["| query | m | l | logsumexp | output[:3] |", "|---|---|---|---|---|"]
        table += [f"| {r} | {_fmt(m)} | {l:.3f} | {lse:.3f} | {', '.join(f'{x:.3f}' for x in out[:3])} |"
                  for r, m, l, lse, out in zip(rows, st["m"], st["l"], st["logsumexp"], st["output"])]
        return fig, head + "\n\n" + "\n".join(table)
    where = (f"Q block {st['q_block']} (queries {st['rows'][0]}–{st['rows'][1] - 1}) × K/V block {st['kv_block']} "
             f"(keys {st['cols'][0]}–{st['cols'][1] - 1})")
    if st["skipped"]:
        return fig, (f"**Step {i + 1}/{len(steps)} — {where}: skipped.** Causal: the first key of this block comes "
                     f"after the last query, so every score would be −∞ and nothing is computed or loaded.")
    what = ("a diagonal tile: scores where the key comes after the query are set to −∞ before exp (dark cells)"
            if st["masked"] else "every score is visible")
    grew = sum(1 for a, b in zip(st["m_before"], st["m_after"]) if b > a)
    head = (f"**Step {i + 1}/{len(steps)} — {where}:** S = Q_i K_jᵀ · scale, {what}. New running max m = "
            f"max(m, rowmax S) grew for {grew} of {len(st['m_after'])} rows; the old sum and accumulator are "
            f"multiplied by exp(m_old − m_new) (the rescale), then l += rowsum(exp(S − m_new)) and O += exp(S − m_new)"
            f" V_j.")
    table = ["| query | m before | m after | rescale exp(m_old − m_new) | l before | l after |",
             "|---|---|---|---|---|---|"]
    table += [f"| {r} | {_fmt(mb)} | {_fmt(ma)} | {a:.3f} | {lb:.3f} | {la:.3f} |" for r, mb, ma, a, lb, la in
              zip(rows, st["m_before"], st["m_after"], st["rescale"], st["l_before"], st["l_after"])]
    return fig, head + "\n\n" + "\n".join(table)


def on_flash_step(state, i):
    """The step slider counts from 1, as the step titles do."""
    if not state:
        raise gr.Error("Press *Trace* first.", print_exception=False)
    return step_view(state, int(i or 1) - 1)


def step_by(state, i, delta):
    n = len(state["steps"]) if state else 1
    return max(1, min(int(i or 1) + delta, n))


def bench_figure(results):
    fig = new_figure(10, 3.6)
    ax1, ax2 = fig.add_subplot(121), fig.add_subplot(122)
    for m in METHODS:
        rs = [r for r in results if r["method"] == m]
        if not rs:
            continue
        ax1.plot([r["T"] for r in rs], [r["ms"] for r in rs], "o-", color=COLORS[m], label=METHOD_LABELS[m])
        ax2.plot([r["T"] for r in rs], [max(mib(r["peak_extra_bytes"]), 1e-2) for r in rs], "o-", color=COLORS[m],
                 label=f"{m}: measured")
        if rs[0]["predicted_bytes"] is not None:
            ax2.plot([r["T"] for r in rs], [mib(r["predicted_bytes"]) for r in rs], "--", color=COLORS[m], alpha=.6,
                     label=f"{m}: predicted" + (" (∝ T²)" if m == "standard" else " (∝ T)"))
    for ax, ylabel, title in ((ax1, "ms (median)", "time"), (ax2, "peak extra memory (MiB)", "measured peak memory")):
        ax.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel=ylabel, title=title)
        ax.grid(alpha=.3, which="both")
        if results:
            ax.legend(fontsize=7)
    return fig


def bench_rows(results):
    return [[r["T"], r["method"], round(r["ms"], 1), round(mib(r["peak_extra_bytes"]), 2),
             None if r["predicted_bytes"] is None else round(mib(r["predicted_bytes"]), 2)] for r in results]


def bench_explain(results, note) -> str:
    by = {(r["T"], r["method"]): r for r in results}
    lines = [f"Measured on {html.escape(cpu_name())}, one torch thread per case, each case in its own process"
             " (its peak resident memory minus its size before the case). " + note]
    for T in sorted({r["T"] for r in results}):
        std, tiled, sdpa = (by.get((T, m)) for m in METHODS)
        parts = []
        if std and tiled and std["peak_extra_bytes"]:
            parts.append(f"tiled uses {tiled['peak_extra_bytes'] / std['peak_extra_bytes']:.1%} of standard's peak "
                         f"memory and {tiled['ms'] / std['ms']:.1f}× its time")
        if sdpa and std:
            parts.append(f"SDPA (a fused C++ kernel that tiles the same way) takes {sdpa['ms'] / std['ms']:.2f}× "
                         f"standard's time")
        if parts:
            lines.append(f"* **T = {T:,}:** " + "; ".join(parts) + ".")
    lines.append("Standard attention holds two T × T float32 matrices (scores and probabilities): memory grows as T²"
                 " — 4× per doubling. The tiled version keeps one block_q × block_k tile at a time, so its extra memory"
                 " grows only with T (the output).")
    pairs = [(T, by[T, "tiled"]["ms"] / by[T, "standard"]["ms"]) for T in sorted({r["T"] for r in results})
             if (T, "tiled") in by and (T, "standard") in by]
    faster = [T for T, ratio in pairs if ratio < 1]
    if pairs and not faster:
        lines.append("In time the tiled version loses here: it runs a Python loop of small operations. On a GPU the"
                     " same tiling keeps each tile in on-chip SRAM and beats standard attention.")
    elif faster:
        lines.append(f"At {', '.join(f'{T:,}' for T in faster)} tokens the tiled version is even *faster* than"
                     " standard, despite its Python loop: standard attention writes and reads its T × T matrices"
                     " through main memory, while each tile stays in the CPU's cache — the reason FlashAttention wins"
                     " on a GPU too (there, the fast memory is on-chip SRAM).")
    return "\n\n".join(lines)


# One case's time at 16,384 tokens, head size 64, 1 thread, measured by benchmarks/bench_attention.py on the CI
# machine (README: AMD EPYC, 2 cores): the estimate scales it by (T / 16,384)² · head_size / 64 (all three are
# T² work here: the tiled loop skips the causal half but runs in Python, SDPA is a fused kernel).
REFERENCE_MS = {"standard": 4808.0, "tiled": 2245.0, "sdpa": 450.0}
REFERENCE_T, REFERENCE_HEAD = 16384, 64
PROCESS_S = 2.0  # starting a child process and importing torch, per case


def case_estimate(method: str, T: int, head_dim: int, repeats: int) -> tuple[float, int | None]:
    """(rough seconds for one case: a child process, 1 warm-up + `repeats` timed runs; predicted peak extra bytes
    or None where the kernel's buffers are not modelled)."""
    ms = REFERENCE_MS[method] * (T / REFERENCE_T) ** 2 * head_dim / REFERENCE_HEAD
    return PROCESS_S + (1 + repeats) * ms / 1000, predicted_bytes(method, T, head_dim)


def bench_estimate(lengths, methods, head_dim, repeats) -> str:
    """What the ticked cases will take, shown before anything runs: per case the predicted memory (the T² score
    matrices for standard attention) and a rough time; in all, the time to wait."""
    try:
        Ts = sorted({int(str(t).replace(",", "")) for t in (lengths or [])})
        hs, reps = int(head_dim or 64), int(repeats or 1)
    except ValueError:
        return "*Choose sequence lengths from the list.*"
    chosen = [m for m in METHODS if m in (methods or [])]
    if not Ts or not chosen:
        return "*Tick at least one sequence length and one method to see the estimate.*"
    offered, _ = lengths_offered()
    rows, total = [], 0.0
    for T in Ts:
        for m in chosen:
            sec, mem = case_estimate(m, T, hs, reps)
            total += sec if T in offered else 0
            rows.append(f"| {T:,} | {m} | {'n/a' if mem is None else f'{mib(mem):,.1f} MiB'} | ≈ {sec:,.1f} s"
                        f"{'' if T in offered else ' (not offered here: too little memory)'} |")
    wait = f"{total:,.0f} s" if total < 120 else f"{total / 60:,.1f} minutes"
    return "\n".join([
        f"**Before you run: {len(rows)} cases, about {wait} in all** (rough: measurements of the"
        " CI machine, 1 thread, scaled by T² and the head size; each case starts its own process).", "",
        "| T | method | predicted peak extra memory | time |", "|---|---|---|---|", *rows])


@user_errors
def on_flash_bench(sessions: SessionStore, lengths, methods, head_dim, repeats, request: gr.Request = None):
    """Stream (table rows, figure, markdown): each case measured in its own process, in the room's "measure" lane
    (budgeted by tinygpt.budget.estimate_flash_benchmark, shared by everyone asking the same); Stop, or the last
    follower leaving, kills the running child."""
    notes: list = []
    offered, note = lengths_offered()
    try:
        Ts = sorted({int(str(t).replace(",", "")) for t in (lengths or [])})
    except ValueError:
        raise UserError("Choose sequence lengths from the list.") from None
    if not Ts:
        raise UserError("Choose at least one sequence length.")
    bad = [T for T in Ts if T not in offered]
    if bad:
        raise UserError(f"{bad[0]:,} tokens is not offered on this machine: {note}")
    chosen = [m for m in METHODS if m in (methods or [])]
    if not chosen:
        raise UserError("Choose at least one attention method.")
    hs = clamp_int(head_dim, 8, 256, "Head size", notes)
    reps = clamp_int(repeats, 1, 5, "Repeats", notes)
    estimate = estimate_flash_benchmark(Ts, chosen, hs, reps)
    stop = STOP.fresh(sessions, request)
    note = (note + " " + " ".join(notes)).strip()
    cases = [(T, m) for T in Ts for m in chosen]
    total = len(cases)

    def job(callback, should_stop):
        check, done = ticking(callback, should_stop), []
        for T, m in cases:
            callback({"kind": "case", "T": T, "method": m})
            r = measure_attention(m, T, head_dim=hs, repeats=reps, should_stop=check)
            if r is None:  # stopped: the child was killed
                return {"results": done, "stopped": True}
            done.append(r)
            callback({"kind": "result", "result": r, "step": len(done), "steps_total": total})
        return {"results": done, "stopped": False}

    results, now, shown = [], {}, [-1]

    def record(_, ev):
        if ev.get("kind") == "case":
            now.update(ev, t0=time.perf_counter())
        elif ev.get("kind") == "result":
            results.append(ev["result"])

    def view(clock):
        status = ""
        if now and len(results) < total:
            status = (f"**Measuring {now['method']} at {now['T']:,} tokens** ({len(results) + 1}/{total})…"
                      f" {time.perf_counter() - now['t0']:.0f} s. Stop ends it.")
        text = status + "\n\n" + bench_explain(results, note)
        if shown[0] == len(results):  # nothing new measured: only the status line moves
            return gr.skip(), gr.skip(), text
        shown[0] = len(results)
        return bench_rows(results), bench_figure(results), text

    out = yield from stream({"bench": job}, stop, record, view, sessions=sessions, request=request,
                            key=run_key("flash_benchmark", {"lengths": Ts, "methods": chosen, "head_dim": hs,
                                                            "repeats": reps}),
                            estimate=estimate, label="Attention benchmark", lane=LANE,
                            waiting=lambda text: (gr.skip(), gr.skip(), f"*{text}*"))
    out = (out or {}).get("bench") or {"results": [], "stopped": True}
    results = out["results"]
    if out["stopped"]:
        yield (bench_rows(results), bench_figure(results),
               f"**Stopped** after {len(results)} of {total} cases.\n\n" + bench_explain(results, note))
        return
    yield bench_rows(results), bench_figure(results), "**Done.**\n\n" + bench_explain(results, note)
