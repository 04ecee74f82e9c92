"""(d) A forward pass profiled by component (embedding, attention, feed-forward, LayerNorm, LM head, other): the
time share measured next to the FLOPs share the calculator predicts, at several sequence lengths, with an Explain.
The profile runs through the room's hub (shared.py: the "measure" lane)."""
from __future__ import annotations

import gradio as gr

from tinygpt.budget.estimates import estimate_profile
from tinygpt.compute import FORWARD_COMPONENTS
from tinygpt.dtypes import dtype_name
from tinygpt.efficiency import profile_forward
from tinygpt.efficiency.profile import check_profile_size, shares
from tinygpt.params import count_parameters

from ..kit.common import clamp_int, get_model, new_figure, user_errors
from ..kit.runs import run_key
from ..kit.sessions import SessionStore
from ..kit.stream import stream
from .shared import LANE, STOP, parse_lengths, ticking

PART_COLORS = {"embedding": "#868e96", "attention": "#1c7ed6", "feed_forward": "#e8590c", "layer_norm": "#f59f00",
               "lm_head": "#7048e8", "other": "#ced4da"}


def profile_figure(results):
    fig = new_figure(10, 3.8)
    ax = fig.add_subplot(111)
    labels, x = [], 0.0
    for r in results:
        for kind, d in (("time", r["seconds"]), ("FLOPs", r["flops"])):
            sh, bottom = shares(d), 0.0
            for k in FORWARD_COMPONENTS:
                ax.bar(x, sh[k], 0.8, bottom=bottom, color=PART_COLORS[k],
                       label=k.replace("_", " ") if x == 0 else None)
                bottom += sh[k]
            labels.append((x, f"T={r['seq_len']}\n{kind}"))
            x += 1
        x += 0.6
    ax.set_xticks([p for p, _ in labels])
    ax.set_xticklabels([t for _, t in labels], fontsize=8)
    ax.set(ylabel="share of the forward pass", ylim=(0, 1), title="measured time share vs FLOPs share, by component")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def profile_rows(results):
    rows = []
    for r in results:
        t, f = shares(r["seconds"]), shares(r["flops"])
        for k in FORWARD_COMPONENTS:
            s = r["seconds"][k]
            rows.append([r["seq_len"], k, round(1000 * s, 3), round(100 * t[k], 1), r["flops"][k],
                         round(100 * f[k], 1), round(r["flops"][k] / s / 1e9, 2) if s > 0 else None])
    return rows


def profile_explain(model, results, batch) -> str:
    if not results:
        return ""
    first, last = results[0], results[-1]
    t0, t1 = shares(first["seconds"]), shares(last["seconds"])
    f0, f1 = shares(first["flops"]), shares(last["flops"])
    rate = {k: last["flops"][k] / last["seconds"][k] for k in FORWARD_COMPONENTS
            if last["seconds"][k] > 0 and last["flops"][k] > 0}
    matmul = max(rate.get("feed_forward", 0), rate.get("lm_head", 0)) or 1.0
    top_t = max(FORWARD_COMPONENTS, key=lambda k: t1[k])
    c = model.config
    block_params = count_parameters(c)["non_embedding"]
    lines = [f"### Reading the profile ({model.info.name}, batch {batch}, {last['threads']} torch thread(s), median of"
             f" {last['repeats']} runs; total {1000 * last['total_seconds']:.1f} ms at T = {last['seq_len']:,})", ""]
    lines.append(f"* **Biggest cost:** {top_t.replace('_', ' ')} takes {t1[top_t]:.0%} of the time at T ="
                 f" {last['seq_len']:,} ({f1[top_t]:.0%} of the FLOPs)."
                 + (f" With a {c.vocab_size:,}-token vocabulary and d = {c.n_embd}, the LM head alone is"
                    f" {c.vocab_size * c.n_embd:,} multiply-adds per token, more than all {c.n_layer} blocks'"
                    f" weights together ({block_params:,})." if top_t == "lm_head" and
                    c.vocab_size * c.n_embd > block_params else ""))
    if len(results) > 1:
        span = (f"from {t0['attention']:.1%} at T = {first['seq_len']:,} to {t1['attention']:.1%} at T ="
                f" {last['seq_len']:,} (FLOPs share {f0['attention']:.1%} → {f1['attention']:.1%})")
        if t1["attention"] > t0["attention"]:
            lines.append(f"* **Attention's share grows with T:** its time share goes {span}: the projections cost the"
                         " same per token, but the scores QKᵀ and the weighted sum AV cost 2 · n_layer · T · d more"
                         " per token for every token of context.")
        else:
            lines.append(f"* **Attention's time share did not grow here:** {span}. At these lengths its time is"
                         " mostly fixed costs per call (a dozen small operations per block), not the scores QKᵀ and"
                         " AV whose cost, 2 · n_layer · T · d per token, grows with the context; at longer T (or"
                         " with batch > 1) the time follows the FLOPs.")
    if "layer_norm" in rate and rate["layer_norm"] < matmul:
        lines.append(f"* **LayerNorm is memory-bound:** {t1['layer_norm']:.1%} of the time for {f1['layer_norm']:.2%}"
                     f" of the FLOPs — it runs at {rate['layer_norm'] / 1e9:.2f} GFLOP/s against"
                     f" {matmul / 1e9:.1f} GFLOP/s for the big matmuls. It does about 4 FLOPs per number it reads"
                     f" and writes, so it waits on memory; a matmul reuses every number it loads d times.")
    if last["seconds"]["other"] > 0:
        lines.append(f"* **Other** ({t1['other']:.1%}) is what no module covers: the residual additions"
                     f" (x + attn, x + mlp), position tables and Python between modules — also memory-bound or"
                     f" overhead, with almost no FLOPs.")
    lines.append("* The table's last column is the achieved rate (FLOPs / measured seconds): the gap between"
                 " components is the gap between compute-bound and memory-bound work. Timings on a shared machine"
                 " vary by a few percent between runs.")
    return "\n".join(lines)


@user_errors
def on_profile(models, sessions: SessionStore, name, fast, batch, seq_lens, repeats, request: gr.Request = None):
    """Stream (figure, table rows, explanation): one profile per sequence length, in the room's "measure" lane
    (budgeted by tinygpt.budget.estimate_profile, shared by everyone asking the same); Stop ends between runs."""
    notes: list = []
    model, _ = get_model(models, name, fast)
    b = clamp_int(batch, 1, 64, "Batch", notes)
    reps = clamp_int(repeats, 1, 20, "Repeats", notes)
    lens = sorted(set(parse_lengths(seq_lens)))
    for T in lens:
        check_profile_size(model, b, T)  # refuse before measuring anything: the estimate and the limit
    dtype = dtype_name(model.transformer.wte.weight.dtype, "fp32")
    estimate = estimate_profile(model.config, b, lens, reps, dtype)
    stop = STOP.fresh(sessions, request)
    note = " ".join(notes)

    def job(callback, should_stop):
        check, done = ticking(callback, should_stop), []
        for T in lens:
            try:
                done.append(profile_forward(model, b, T, reps, should_stop=check))
            except InterruptedError:
                return {"results": done, "stopped": True}
            callback({"kind": "result", "result": done[-1], "step": len(done), "steps_total": len(lens)})
        return {"results": done, "stopped": False}

    results, shown = [], [-1]

    def record(_, ev):
        if ev.get("kind") == "result":
            results.append(ev["result"])

    def view(clock):
        status = (f"*Profiling T = {lens[len(results)]:,} ({len(results) + 1} of {len(lens)} lengths)…"
                  f" {clock.elapsed:.0f} s*") if len(results) < len(lens) else ""
        text = "\n\n".join(p for p in (status, note, profile_explain(model, results, b)) if p)
        if shown[0] == len(results):  # nothing new measured: only the status line moves
            return gr.skip(), gr.skip(), text
        shown[0] = len(results)
        return profile_figure(results), profile_rows(results), text

    out = yield from stream({"profile": job}, stop, record, view, sessions=sessions, request=request,
                            key=run_key("profile", {"batch": b, "seq_lens": lens, "repeats": reps,
                                                    "fast": bool(fast)}, model),
                            estimate=estimate, label="Profile", lane=LANE,
                            waiting=lambda text: (gr.skip(), gr.skip(), f"*{text}*"))
    out = (out or {}).get("profile") or {"results": [], "stopped": True}
    results = out["results"]
    if out["stopped"]:
        yield (profile_figure(results), profile_rows(results),
               f"**Stopped.** {note}\n\n" + profile_explain(model, results, b))
        return
    yield profile_figure(results), profile_rows(results), (note + "\n\n" + profile_explain(model, results,
                                                                                           b)).strip()
