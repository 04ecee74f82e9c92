"""Efficiency tab: the KV cache measured (latency vs length, bytes vs the calculator), GQA/MQA built from the loaded
model (cache bytes, ms per token, perplexity, optional uptraining), FlashAttention-2's tiling step by step and
benchmarked against standard attention and SDPA (time and measured peak memory), and a forward-pass profile by
component next to the FLOPs the calculator predicts.

Every number is measured when the button is pressed. Heavy measurements (GQA, the attention benchmark, the profile)
share one queue slot (concurrency_id "measure"): one runs at a time and the others show their queue position.
"""
from __future__ import annotations

import html
import re
import threading
import time
from functools import lru_cache, partial

import gradio as gr
import torch
from matplotlib.patches import Rectangle

from tinygpt.compute import FORWARD_COMPONENTS, kv_cache_bytes
from tinygpt.data import split_tokens
from tinygpt.efficiency import (
    compare_kv_heads,
    convert_kv_heads,
    flash_attention_trace,
    kv_cache_latency,
    kv_label,
    lengths_offered,
    measure_attention,
    profile_forward,
    uptrain,
    uptrain_corpus,
)
from tinygpt.efficiency.gqa import DTYPE_NAMES, check_lengths
from tinygpt.efficiency.measure import BENCH_LENGTHS, METHODS, cpu_model
from tinygpt.efficiency.profile import check_profile_size, shares
from tinygpt.evaluate import evaluate, perplexity
from tinygpt.interpret.pruning import default_reference
from tinygpt.params import count_parameters
from tinygpt.sampling import encode_prompt

from . import share
from .common import (
    UserError,
    check_prompt,
    clamp_int,
    get_model,
    human_bytes,
    model_picker,
    new_figure,
    on_model_change,
    parse_float,
    user_errors,
)
from .sessions import SessionStore, run_jobs

DEFAULT_PROMPT = "ROMEO:"
MEASURE = dict(concurrency_id="measure", concurrency_limit=1)  # one heavy measurement at a time, others queue
METHOD_LABELS = {"standard": "standard softmax(QKᵀ)V", "tiled": "tiled FlashAttention-2 (pure PyTorch)",
                 "sdpa": "PyTorch SDPA"}
COLORS = {"standard": "#e8590c", "tiled": "#1c7ed6", "sdpa": "#2b8a3e", "MHA": "#e8590c", "MQA": "#2b8a3e"}
PART_COLORS = {"embedding": "#868e96", "attention": "#1c7ed6", "feed_forward": "#e8590c", "layer_norm": "#f59f00",
               "lm_head": "#7048e8", "other": "#ced4da"}
ROUNDS = 3  # GQA timings: interleaved rounds over the variants (a busy machine then slows all of them alike)


STOP_KEY = "efficiency_stop"  # this tab's own flag: its Stop buttons never end a fine-tune running in another tab


def fresh_stop(sessions, request) -> threading.Event:
    """A new stop flag for this user's run (an earlier Stop must not end it); the tab's Stop buttons set it."""
    entry = sessions.get(request)
    entry[STOP_KEY] = threading.Event()
    return entry[STOP_KEY]


def on_stop(sessions, request: gr.Request = None) -> str:
    """Any Stop button of this tab: the user's running measurement or uptraining ends at its next check."""
    flag = sessions.get(request).get(STOP_KEY)
    if flag is not None:
        flag.set()
    return "Stopping…"


def parse_lengths(text, name: str = "Sequence lengths") -> list[int]:
    parts = [t for t in str(text or "").replace(" ", "").split(",") if t]
    try:
        values = [int(float(t)) for t in parts]
    except ValueError:
        raise UserError(f"{name} must be whole numbers separated by commas, like 64,128,256.") from None
    if not values:
        raise UserError(f"Give at least one value for {name.lower()}, like 64,128,256.")
    return values


def default_lengths(block_size: int) -> str:
    """Four lengths up to the context: block/8, block/4, block/2, block."""
    return ",".join(str(max(2, block_size // d)) for d in (8, 4, 2, 1))


def default_groups(n_head: int) -> int:
    """KV heads for the GQA line: the divisor of n_head nearest n_head/4, other than 1 and n_head when possible."""
    divisors = [k for k in range(2, n_head) if n_head % k == 0] or [1]
    return min(divisors, key=lambda k: (abs(k - n_head / 4), k))


def mib(n) -> float:
    return n / 2 ** 20


# ---- (a) KV cache: latency vs sequence length ----------------------------------------------------
@user_errors
def on_kv_cache(models, name, fast, prompt, n_new):
    """Time greedy decoding with and without the KV cache: (figure, explanation with measured cache bytes)."""
    notes: list = []
    n = clamp_int(n_new, 1, 256, "Tokens to time", notes)
    prompt = check_prompt(prompt, [])
    model, tok = get_model(models, name, fast)
    r = kv_cache_latency(model, encode_prompt(tok, prompt), n)
    c = model.config
    dtype = DTYPE_NAMES.get(model.transformer.wte.weight.dtype, "fp32")
    cache = model.new_cache(1, c.block_size)  # what generation allocates: every position of the context
    allocated = sum(t.nbytes for t in cache.k + cache.v)
    predicted = kv_cache_bytes(c, 1, c.block_size, dtype)
    del cache
    fig = new_figure(8, 3.4)
    ax = fig.add_subplot(111)
    ax.plot(r["lengths"], r["nocache_ms"], label="no cache: recompute the whole sequence", color="#e8590c")
    ax.plot(r["lengths"], r["cached_ms"], label="KV cache: feed only the new token", color="#1c7ed6")
    ax.set(xlabel="sequence length (tokens)", ylabel="ms per generated token",
           title=f"{n} greedy tokens: {r['nocache_s']:.2f} s without vs {r['cached_s']:.2f} s with the cache")
    ax.grid(alpha=.3)
    ax.legend(fontsize=9)
    speed = r["nocache_s"] / max(r["cached_s"], 1e-9)
    capped = f" ({' '.join(notes)})" if notes else ""
    per_token = 2 * c.n_layer * c.kv_heads * c.head_dim
    md = (f"**{speed:.1f}× faster with the KV cache** for these {n} tokens{capped}. Without a cache every"
          f" step runs all {c.n_layer} blocks over the whole sequence again, so its cost grows with the length; with"
          f" the cache each step computes keys and values for the new token only and reuses the stored ones"
          f" ({per_token:,} numbers per token), so its cost stays nearly flat — it is"
          f" dominated by reading the weights once per token (its first step also reads the prompt: the prefill)."
          f" Both ways produced {'the same' if r['same_tokens'] else 'DIFFERENT'} tokens.\n\n"
          f"| KV cache for the {c.block_size:,}-token context ({dtype}) | bytes |\n|---|---|\n"
          f"| allocated (sum of the cache tensors' sizes) | {allocated:,} ({human_bytes(allocated)}) |\n"
          f"| calculator: 2 · {c.n_layer} layers · 1 · {c.block_size} tokens · {c.kv_heads} KV heads · "
          f"{c.head_dim} dims · {model.transformer.wte.weight.element_size()} B | {predicted:,} "
          f"({'equal' if allocated == predicted else 'DIFFERENT'}) |")
    return fig, md


# ---- (b) GQA / MQA on the loaded model -------------------------------------------------------------
def variants_for(config, groups) -> list[int]:
    """KV heads to compare: MHA (n_head), the chosen grouping, MQA (1); distinct, most heads first."""
    return sorted({config.n_head, groups, 1}, reverse=True)


def check_groups(model, groups) -> int:
    n_head = model.config.n_head
    try:
        g = float(groups)
    except (TypeError, ValueError):
        raise UserError("KV heads must be a whole number.") from None
    if not g.is_integer() or g < 1 or n_head % int(g):
        divisors = ", ".join(str(k) for k in range(1, n_head + 1) if n_head % k == 0)
        raise UserError(f"KV heads must divide the model's {n_head} query heads: choose one of {divisors} "
                        f"(got {groups}).")
    return int(g)


def gqa_figure(results):
    fig = new_figure(10, 3.6)
    ax1, ax2 = fig.add_subplot(121), fig.add_subplot(122)
    for r in results:
        lens = [row["seq_len"] for row in r["rows"]]
        color = COLORS.get(r["label"], "#1c7ed6")
        ax1.plot(lens, [mib(row["predicted_bytes"]) for row in r["rows"]], "-", color=color, alpha=.5)
        ax1.plot(lens, [mib(row["allocated_bytes"]) for row in r["rows"]], "o", color=color,
                 label=f"{r['label']} ({r['n_kv_head']} KV heads)")
        ax2.plot(lens, [row["ms_per_token"] for row in r["rows"]], "o-", color=color, label=r["label"])
    ax1.set(xlabel="sequence length (tokens)", ylabel="KV cache (MiB)",
            title="allocated (dots) vs calculator (lines)")
    ax2.set(xlabel="sequence length (tokens)", ylabel="ms per generated token", title="cached decoding")
    ax2.set_ylim(bottom=0)
    for ax in (ax1, ax2):
        ax.grid(alpha=.3)
        if results:
            ax.legend(fontsize=8)
    return fig


def gqa_rows(results):
    rows = []
    for r in results:
        for row in r["rows"]:
            rows.append([r["label"], r["n_kv_head"], row["seq_len"], row["allocated_bytes"], row["predicted_bytes"],
                         "yes" if row["allocated_bytes"] == row["predicted_bytes"] else "NO",
                         round(row["ms_per_token"], 3), round(r["perplexity"], 2)])
    return rows


def gqa_explain(model, results, batch) -> str:
    if not results:
        return ""
    c = model.config
    base = results[0]
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    longest = base["rows"][-1]
    lines = ["### What the numbers say", "",
             "| variant | KV heads | cache at {:,} tokens | vs MHA | perplexity (no uptraining) |".format(
                 longest["seq_len"]), "|---|---|---|---|---|"]
    for r in results:
        last = r["rows"][-1]
        lines.append(f"| {r['label']} | {r['n_kv_head']} | {human_bytes(last['allocated_bytes'])} | "
                     f"{last['allocated_bytes'] / base['rows'][-1]['allocated_bytes']:.0%} | {r['perplexity']:,.2f} |")
    worst = max(results, key=lambda r: r["perplexity"])
    ms = [(r["label"], r["rows"][-1]["ms_per_token"]) for r in results]
    lines += ["",
              f"* **Memory:** the cache holds 2 · {c.n_layer} layers · {batch} · T · n_kv_head · {c.head_dim} numbers,"
              f" so dividing the KV heads by g divides it by g — measured allocations equal the calculator's formula"
              f" for every variant and length.",
              f"* **Quality:** mean-pooling heads changes the model, so without uptraining perplexity on the reference"
              f" passage rises from {base['perplexity']:,.2f} ({base['label']}) to {worst['perplexity']:,.2f}"
              f" ({worst['label']}). The GQA paper closes most of this gap by uptraining for ~5 % of the original"
              f" steps (try *Uptrain* below).",
              f"* **Speed:** at {longest['seq_len']:,} tokens one decoding step reads the whole cache"
              f" ({human_bytes(longest['allocated_bytes'])} for {base['label']}) but also every weight"
              f" ({human_bytes(weights)}): ms/token " + ", ".join(f"{n} {v:.2f}" for n, v in ms) + ". While the"
              " weights dominate, a smaller cache barely changes the time; it pays off when the cache rivals the"
              " weights (long contexts, big batches) — and by letting more sequences fit in memory. (This model"
              " repeats each K/V head for its query heads before attention, which costs a little time back.)"]
    return "\n".join(lines)


@user_errors
def on_gqa(models, sessions: SessionStore, name, fast, groups, seq_lens, batch, request: gr.Request = None):
    """Stream (figure, table rows, explanation) for MHA / GQA (chosen groups) / MQA built from the loaded model."""
    notes: list = []
    model, tok = get_model(models, name, fast)
    g = check_groups(model, groups)
    b = clamp_int(batch, 1, 16, "Batch", notes)
    lens = check_lengths(parse_lengths(seq_lens), model.config.block_size)
    text = default_reference(model.info.name)
    heads = variants_for(model.config, g)
    note = " ".join(notes)
    yield gqa_figure([]), [], (f"Measuring {', '.join(kv_label(model.config.n_head, n) for n in heads)}: "
                               f"{ROUNDS} interleaved rounds at {len(lens)} lengths… {note}").strip()
    stop = fresh_stop(sessions, request)
    results = compare_kv_heads(model, tok, heads, lens, text, b, rounds=ROUNDS, should_stop=stop.is_set)
    if not results:
        yield gqa_figure([]), [], "**Stopped** before the measurement finished."
        return
    yield gqa_figure(results), gqa_rows(results), (note + "\n\n" + gqa_explain(model, results, b)).strip()


@lru_cache(maxsize=4)
def corpus_ids(model_name: str, tok) -> tuple:
    """(corpus name, token ids, note) of the uptraining corpus matching the model (cached: tokenised once).

    The whole corpus: its last 10 % is held out, which for the embedded model is the part it never trained on."""
    cname, text, note = uptrain_corpus(model_name)
    return cname, torch.tensor(tok.encode(text), dtype=torch.long), note


def uptrain_figure(history, mha_loss, start_loss, label):
    fig = new_figure(8, 3.4)
    ax = fig.add_subplot(111)
    ev = [e for e in history if e["val_loss"] is not None]
    if ev:
        ax.plot([0] + [e["step"] for e in ev], [start_loss] + [e["val_loss"] for e in ev], "o-",
                color="#1c7ed6", label=f"{label}: held-out loss while uptraining")
    if mha_loss is not None:
        ax.axhline(mha_loss, color="#e8590c", ls="--", label="MHA (the original model), same held-out windows")
    ax.set(xlabel="uptraining step", ylabel="loss (nats/token)", title="Does uptraining close the gap?")
    ax.grid(alpha=.3)
    if mha_loss is not None:
        ax.legend(fontsize=9)
    return fig


@user_errors
def on_uptrain(models, sessions: SessionStore, name, groups, steps, lr, request: gr.Request = None,
               progress=gr.Progress()):
    """Stream (status, figure, markdown): convert to the chosen KV heads, then uptrain a private copy briefly."""
    notes: list = []
    base, tok = get_model(models, name)  # training runs in fp32
    g = check_groups(base, groups)
    if g == base.config.kv_heads:
        raise UserError(f"The model already has {g} KV heads: choose fewer to see a gap to close.")
    n_steps = clamp_int(steps, 1, 500, "Steps", notes)
    rate = parse_float(lr, "Learning rate", 1e-7, 1.0)
    stop = fresh_stop(sessions, request)
    cname, ids, cnote = corpus_ids(base.info.name, tok)
    context = min(128, base.config.block_size)
    _, val_ids = split_tokens(ids, 0.1)  # the held-out part uptrain evaluates (the end of the text)
    label = kv_label(base.config.n_head, g)
    note = " ".join([cnote] + notes).strip()
    yield f"Converting to {label} and measuring the starting point… {note}", uptrain_figure([], None, None, label), ""
    text = default_reference(base.info.name)
    windows = dict(max_windows=16)  # the windows tinygpt.train evaluates with eval_batches=2
    mha_val = evaluate(base, val_ids, context, **windows)["loss"]
    model = convert_kv_heads(base, g)
    start_val = evaluate(model, val_ids, context, **windows)["loss"]
    ppl = {"MHA": perplexity(base, tok, text)["perplexity"], "before": perplexity(model, tok, text)["perplexity"]}
    history, t0 = [], time.perf_counter()
    job = {"up": lambda cb, should_stop: uptrain(model, ids, n_steps, 8, context, rate, callback=cb,
                                                 should_stop=should_stop)}
    result = None
    for kind, payload in run_jobs(job, stop):
        if kind == "done":
            result = payload["up"]
            break
        history.extend(ev for _, ev in payload)
        e = history[-1]
        left = (time.perf_counter() - t0) / max(1, e["step"]) * (n_steps - e["step"])
        progress((e["step"], n_steps), desc=f"uptraining, ~{left:.0f} s left")
        yield (f"Step {e['step']}/{n_steps} · train loss {e['train_loss']:.3f} · about {left:.0f} s left. {note}",
               uptrain_figure(history, mha_val, start_val, label), "")
    ppl["after"] = perplexity(model, tok, text)["perplexity"]
    end_val = result["val_loss"] if result else start_val
    gap0, gap1 = start_val - mha_val, end_val - mha_val
    if gap0 <= 0:
        closed = "there was no gap to close on this text"
    elif gap1 > 0:
        closed = f"{1 - gap1 / gap0:.0%} of the gap to the original closed"
    else:  # better than the original on text it was just trained on: not the grouping's merit
        closed = (f"the grouped model now beats the original there — but it has just been trained on {cname}, so"
                  " part of that is the text, not the grouping: the reference passage is the fairer measure")
    stopped = " (stopped early)" if result and result["stopped"] else ""
    md = (f"### Uptraining {label}{stopped}\n"
          f"| | MHA (original) | {label} before | {label} after {result['steps'] if result else 0} steps |\n"
          f"|---|---|---|---|\n"
          f"| held-out loss, {cname} | {mha_val:.3f} | {start_val:.3f} | {end_val:.3f} |\n"
          f"| reference-passage perplexity | {ppl['MHA']:,.2f} | {ppl['before']:,.2f} | {ppl['after']:,.2f} |\n\n"
          f"All weights of a private copy were trained on {cname} ({len(ids):,} tokens, the last 10 % held out) with"
          f" lr {rate:g}, batch 8 × {context} tokens ({(result['steps'] if result else 0) * 8 * context:,} tokens"
          f" seen): {closed} on held-out text. (The GQA paper uptrains for 5 % of the pre-training steps; more steps"
          f" close more of the gap.) The shared model was not changed."
          + (f" {note}" if note else ""))
    yield f"Done in {time.perf_counter() - t0:.0f} s. {note}", uptrain_figure(history, mha_val, start_val, label), md


# ---- (c) FlashAttention-2: step-through and benchmark -----------------------------------------------
@user_errors
def on_flash_trace(T, block_q, block_k, head_dim, causal, seed):
    """(trace state, step slider, figure, step markdown, check markdown) for a small random example."""
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
    return state, gr.Slider(minimum=1, maximum=len(steps), value=1, step=1), fig, md, check_md


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
    lines = [f"Measured on {html.escape(cpu_model())}, one torch thread per case, each case in its own process"
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


@user_errors
def on_flash_bench(sessions: SessionStore, lengths, methods, head_dim, repeats, request: gr.Request = None):
    """Stream (table rows, figure, markdown): each case measured in its own process; Stop kills the running one."""
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
    stop = fresh_stop(sessions, request)
    results = []
    note = (note + " " + " ".join(notes)).strip()
    total = len(Ts) * len(chosen)
    for T in Ts:
        for m in chosen:
            status = f"**Measuring {m} at {T:,} tokens** ({len(results) + 1}/{total})… Stop ends it."
            yield bench_rows(results), bench_figure(results), status + "\n\n" + bench_explain(results, note)
            r = measure_attention(m, T, head_dim=hs, repeats=reps, should_stop=stop.is_set)
            if r is None:
                yield (bench_rows(results), bench_figure(results),
                       f"**Stopped** after {len(results)} of {total} cases.\n\n" + bench_explain(results, note))
                return
            results.append(r)
    yield bench_rows(results), bench_figure(results), "**Done.**\n\n" + bench_explain(results, note)


# ---- (d) forward-pass profile ---------------------------------------------------------------------
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
    """Stream (figure, table rows, explanation): one profile per sequence length; Stop ends between runs."""
    notes: list = []
    model, _ = get_model(models, name, fast)
    b = clamp_int(batch, 1, 64, "Batch", notes)
    reps = clamp_int(repeats, 1, 20, "Repeats", notes)
    lens = sorted(set(parse_lengths(seq_lens)))
    for T in lens:
        check_profile_size(model, b, T)  # refuse before measuring anything: the estimate and the limit
    stop = fresh_stop(sessions, request)
    results = []
    note = " ".join(notes)
    for T in lens:
        try:
            results.append(profile_forward(model, b, T, reps, should_stop=stop.is_set))
        except InterruptedError:
            yield (profile_figure(results), profile_rows(results),
                   f"**Stopped.** {note}\n\n" + profile_explain(model, results, b))
            return
        yield profile_figure(results), profile_rows(results), (note + "\n\n" + profile_explain(model, results,
                                                                                               b)).strip()


# ---- the tab ---------------------------------------------------------------------------------------
def stop_button(sessions, status):
    btn = gr.Button("Stop")
    btn.click(partial(on_stop, sessions), None, status, api_visibility="private", queue=False)
    return btn


def build(models, sessions: SessionStore, default_model: str = "gpt2"):
    """The Efficiency tab: KV cache, GQA/MQA, FlashAttention-2, forward-pass profile."""
    with gr.Tab("Efficiency", id="efficiency"):
        gr.Markdown("Where inference time and memory go, **measured on this machine**: the KV cache, grouped-query"
                    " attention, FlashAttention's tiling, and a forward pass broken down by component. Heavy"
                    " measurements run one at a time; if another is running, yours waits and shows its place in"
                    " the queue.")
        model_dd, fast, banner_md, card_md, model0 = model_picker(models, default_model, with_fast=True)
        for c in (model_dd, fast):
            c.change(partial(on_model_change, models), [model_dd, fast], [banner_md, card_md], api_visibility="private")
        c0 = model0.config

        with gr.Accordion("KV cache: latency vs sequence length, bytes vs the calculator", open=True):
            with gr.Row():
                kv_prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt", scale=3)
                kv_n = gr.Slider(8, 256, 64, step=8, label="Tokens to time", scale=2)
                kv_go = gr.Button("Measure", scale=1)
            kv_plot = gr.Plot(label="Latency per token", elem_id="eff-kv")
            kv_md = gr.Markdown(elem_id="eff-kv-md")

        with gr.Accordion("GQA / MQA on the loaded model", open=False):
            gr.Markdown("Build MHA, GQA and MQA versions of the loaded model (key/value heads mean-pooled in groups,"
                        " the GQA paper's starting point) and measure each: the KV cache it allocates next to the"
                        " calculator's formula, ms per generated token, and perplexity on a reference passage.")
            with gr.Row():
                groups = gr.Number(default_groups(c0.n_head), label="KV heads for the GQA line (divides n_head)",
                                   precision=0, elem_id="eff-gqa-groups")
                gqa_lens = gr.Textbox(default_lengths(c0.block_size), label="Sequence lengths")
                gqa_batch = gr.Slider(1, 16, 1, step=1, label="Batch")
                gqa_go = gr.Button("Measure MHA / GQA / MQA")
                stop_button(sessions, gr.Markdown())
            gqa_plot = gr.Plot(label="KV cache and speed", elem_id="eff-gqa-plot")
            gqa_table = gr.Dataframe(headers=["variant", "KV heads", "seq len", "bytes allocated", "calculator bytes",
                                              "equal", "ms / token", "perplexity"], interactive=False,
                                     elem_id="eff-gqa-table")
            gqa_md = gr.Markdown(elem_id="eff-gqa-md")
            gr.Markdown("**Uptraining (optional):** train a private copy of the grouped model briefly on text like"
                        " the model's own, and watch its held-out loss approach the original's.")
            with gr.Row():
                up_steps = gr.Slider(1, 200, 30, step=1, label="Steps", elem_id="eff-up-steps")
                up_lr = gr.Number(1e-3, label="Learning rate")
                up_go = gr.Button("Uptrain")
                up_status = gr.Markdown(elem_id="eff-up-status")
                stop_button(sessions, up_status)
            up_plot = gr.Plot(label="Uptraining", elem_id="eff-up-plot")
            up_md = gr.Markdown(elem_id="eff-up-md")

        with gr.Accordion("FlashAttention-2: tiling step by step, and the benchmark", open=False):
            gr.Markdown("A small random example: the queries are cut into blocks (rows), the keys and values into"
                        " blocks (columns). For each Q block, the K/V blocks are visited one by one, keeping a running"
                        " max m and sum l per query instead of the whole score matrix.")
            with gr.Row():
                fl_T = gr.Slider(2, 64, 16, step=1, label="Tokens")
                fl_bq = gr.Slider(1, 32, 4, step=1, label="Query block")
                fl_bk = gr.Slider(1, 32, 4, step=1, label="Key/value block")
                fl_hs = gr.Slider(1, 64, 8, step=1, label="Head size")
                fl_causal = gr.Checkbox(True, label="Causal")
                fl_seed = gr.Number(0, label="Seed", precision=0)
                fl_go = gr.Button("Trace")
            trace = gr.State(None)
            fl_check = gr.Markdown(elem_id="eff-flash-check")
            with gr.Row():
                fl_prev = gr.Button("◀ Previous")
                fl_step = gr.Slider(1, 2, 1, step=1, label="Step", elem_id="eff-flash-step")
                fl_next = gr.Button("Next ▶")
            with gr.Row():
                fl_plot = gr.Plot(label="Tiles", elem_id="eff-flash-plot", scale=1)
                fl_md = gr.Markdown(elem_id="eff-flash-md")
            offered, offer_note = lengths_offered()
            gr.Markdown("**Benchmark (the exercise):** standard attention vs the tiled version vs PyTorch's SDPA at"
                        " 1,024 / 4,096 / 16,384 tokens, 1 head, float32, causal. Each case runs in its own process"
                        f" so its peak memory is measured, not computed. {offer_note} Large cases take a while"
                        " (the tiled loop runs in Python); Stop ends the running case.")
            with gr.Row():
                b_lens = gr.CheckboxGroup([f"{T:,}" for T in BENCH_LENGTHS if T in offered],
                                          value=[f"{T:,}" for T in BENCH_LENGTHS if T in offered][:1],
                                          label="Sequence lengths", elem_id="eff-bench-lens")
                b_methods = gr.CheckboxGroup(list(METHODS), value=list(METHODS), label="Methods",
                                             elem_id="eff-bench-methods")
                b_hs = gr.Slider(8, 256, 64, step=8, label="Head size")
                b_rep = gr.Slider(1, 5, 1, step=1, label="Timed repeats (after 1 warm-up)")
            with gr.Row():
                b_go = gr.Button("Run benchmark", variant="primary")
                b_status = gr.Markdown()
                stop_button(sessions, b_status)
            b_table = gr.Dataframe(headers=["T", "method", "ms", "peak extra MiB (measured)", "predicted MiB"],
                                   interactive=False, elem_id="eff-bench-table")
            b_plot = gr.Plot(label="Time and memory", elem_id="eff-bench-plot")
            b_md = gr.Markdown(elem_id="eff-bench-md")

        with gr.Accordion("Forward-pass profile by component", open=False):
            gr.Markdown("Time one forward pass with hooks on the modules, at several sequence lengths, and set each"
                        " component's share of the time next to its share of the FLOPs (the calculator's formulas).")
            with gr.Row():
                p_batch = gr.Slider(1, 64, 1, step=1, label="Batch")
                p_lens = gr.Textbox(default_lengths(c0.block_size), label="Sequence lengths", elem_id="eff-prof-lens")
                p_rep = gr.Slider(1, 20, 5, step=1, label="Repeats (median; 2 warm-up runs excluded)")
                p_go = gr.Button("Profile", variant="primary")
                p_status = gr.Markdown()
                stop_button(sessions, p_status)
            p_plot = gr.Plot(label="Time vs FLOPs share", elem_id="eff-prof-plot")
            p_table = gr.Dataframe(headers=["T", "component", "ms", "time %", "FLOPs", "FLOPs %", "GFLOP/s"],
                                   interactive=False, elem_id="eff-prof-table")
            with gr.Accordion("Explain", open=True):
                p_md = gr.Markdown(elem_id="eff-prof-md")

        kv_go.click(partial(on_kv_cache, models), [model_dd, fast, kv_prompt, kv_n], [kv_plot, kv_md],
                    api_name="kv_cache", concurrency_id="model")
        gqa_go.click(partial(on_gqa, models, sessions), [model_dd, fast, groups, gqa_lens, gqa_batch],
                     [gqa_plot, gqa_table, gqa_md], api_name="gqa", **MEASURE)
        up_go.click(partial(on_uptrain, models, sessions), [model_dd, groups, up_steps, up_lr],
                    [up_status, up_plot, up_md], api_name="gqa_uptrain", concurrency_id="train", concurrency_limit=1)
        fl_go.click(on_flash_trace, [fl_T, fl_bq, fl_bk, fl_hs, fl_causal, fl_seed],
                    [trace, fl_step, fl_plot, fl_md, fl_check], api_name="flash_attention")
        fl_step.change(on_flash_step, [trace, fl_step], [fl_plot, fl_md], api_visibility="private")
        fl_prev.click(partial(step_by, delta=-1), [trace, fl_step], fl_step, api_visibility="private", queue=False)
        fl_next.click(partial(step_by, delta=1), [trace, fl_step], fl_step, api_visibility="private", queue=False)
        b_go.click(partial(on_flash_bench, sessions), [b_lens, b_methods, b_hs, b_rep], [b_table, b_plot, b_md],
                   api_name="flash_benchmark", **MEASURE)
        p_go.click(partial(on_profile, models, sessions), [model_dd, fast, p_batch, p_lens, p_rep],
                   [p_plot, p_table, p_md], api_name="profile", **MEASURE)
        share.register("efficiency", fields={
            "model": model_dd, "fast": fast, "kv_prompt": kv_prompt, "kv_tokens": kv_n, "groups": groups,
            "gqa_lengths": gqa_lens, "gqa_batch": gqa_batch, "flash_tokens": fl_T, "flash_block_q": fl_bq,
            "flash_block_k": fl_bk, "flash_head_size": fl_hs, "flash_causal": fl_causal, "flash_seed": fl_seed,
            "bench_head_size": b_hs, "bench_repeats": b_rep, "profile_batch": p_batch, "profile_lengths": p_lens,
            "profile_repeats": p_rep}, command=command, run=p_go)


def command(v: dict) -> str:
    """The forward-pass profile as `python -m tinygpt profile`, one line per sequence length (the KV-cache, GQA and
    FlashAttention sections have no command of their own: their functions are in tinygpt.efficiency)."""
    lens = [t for t in re.split(r"[,;\s]+", str(v["profile_lengths"])) if t]
    return "\n".join(share.cli("profile", model=v["model"], batch=int(v["profile_batch"]), seq_len=int(t),
                               repeats=int(v["profile_repeats"]), dtype="bf16" if v["fast"] else None, json=True)
                     for t in lens if t.isdigit()) or None
