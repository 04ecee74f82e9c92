"""(b) MHA / GQA / MQA built from the loaded model by mean-pooling its key/value heads: the cache each allocates
next to the calculator, ms per token, reference-passage perplexity, and optional uptraining of a private copy with
a live held-out loss (a job of the room's run hub: keyed, budgeted, shared by everyone who starts the same)."""
from __future__ import annotations

import time
from functools import lru_cache

import gradio as gr
import torch

from tinygpt.budget import estimate_gqa_uptrain
from tinygpt.data import split_tokens
from tinygpt.efficiency import compare_kv_heads, convert_kv_heads, kv_label, uptrain, uptrain_corpus
from tinygpt.efficiency.kv_measure import check_lengths
from tinygpt.evaluate import evaluate, perplexity
from tinygpt.interpret.pruning import default_reference

from ..kit.common import UserError, clamp_int, get_model, human_bytes, new_figure, parse_float, user_errors
from ..kit.runs import abandoned, run_key
from ..kit.sessions import SessionStore
from ..kit.stream import stream
from .shared import COLORS, STOP, mib, parse_lengths

ROUNDS = 3  # GQA timings: interleaved rounds over the variants (a busy machine then slows all of them alike)


def default_groups(n_head: int) -> int:
    """KV heads for the GQA line: the divisor of n_head nearest n_head/4, other than 1 and n_head when possible."""
    divisors = [k for k in range(2, n_head) if n_head % k == 0] or [1]
    return min(divisors, key=lambda k: (abs(k - n_head / 4), k))


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
    stop = STOP.fresh(sessions, request)
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


def uptrain_job(base, tok, g: int, ids, val_ids, n_steps: int, rate: float, context: int, text: str):
    """GQA uptraining as the hub's job: the original's and the converted model's held-out loss and reference
    perplexity (the base is only read), a converted copy uptrained, its perplexity after -> {mha_val, start_val,
    ppl, result (tinygpt.train's), seconds}. Its first event carries the starting losses (the figure's lines)."""
    def job(callback, should_stop):
        t0 = time.perf_counter()
        callback({"phase": "Converting and measuring the starting point"})
        windows = dict(max_windows=16)  # the windows tinygpt.train evaluates with eval_batches=2
        mha_val = evaluate(base, val_ids, context, **windows)["loss"]
        model = convert_kv_heads(base, g)
        start_val = evaluate(model, val_ids, context, **windows)["loss"]
        callback({"phase": "Uptraining", "mha_val": mha_val, "start_val": start_val})
        ppl = {"MHA": perplexity(base, tok, text)["perplexity"], "before": perplexity(model, tok, text)["perplexity"]}
        result = uptrain(model, ids, n_steps, 8, context, rate, callback=callback, should_stop=should_stop)
        if abandoned(should_stop):
            return {"abandoned": True}
        ppl["after"] = perplexity(model, tok, text)["perplexity"]
        return {"mha_val": mha_val, "start_val": start_val, "ppl": ppl, "result": result,
                "seconds": time.perf_counter() - t0}
    return job


@user_errors
def on_uptrain(models, sessions: SessionStore, name, groups, steps, lr, request: gr.Request = None,
               progress=gr.Progress()):
    """Stream (status, figure, markdown): convert to the chosen KV heads, then uptrain a private copy briefly.
    Keyed by the KV heads, steps, learning rate, the base model's weights and the corpus (a student who starts the
    same follows the one computation), budgeted by tinygpt.budget.estimate_gqa_uptrain."""
    notes: list = []
    base, tok = get_model(models, name)  # training runs in fp32
    g = check_groups(base, groups)
    if g == base.config.kv_heads:
        raise UserError(f"The model already has {g} KV heads: choose fewer to see a gap to close.")
    n_steps = clamp_int(steps, 1, 500, "Steps", notes)
    rate = parse_float(lr, "Learning rate", 1e-7, 1.0)
    cname, ids, cnote = corpus_ids(base.info.name, tok)
    context = min(128, base.config.block_size)
    _, val_ids = split_tokens(ids, 0.1)  # the held-out part uptrain evaluates (the end of the text)
    label = kv_label(base.config.n_head, g)
    note = " ".join([cnote] + notes).strip()
    text = default_reference(base.info.name)
    key = run_key("gqa_uptrain", {"n_kv_head": g, "steps": n_steps, "lr": rate, "batch": 8, "context": context,
                                  "corpus": cname, "reference": text}, model=base, text=ids.numpy().tobytes())
    estimate = estimate_gqa_uptrain(base.config, g, n_steps, 8, context, corpus_tokens=len(ids),
                                    reference_tokens=len(tok.encode(text)))
    stop = STOP.fresh(sessions, request)
    history, seen = [], {"phase": f"Converting to {label} and measuring the starting point", "mha_val": None,
                         "start_val": None}

    def record(_, ev):
        if "step" in ev:
            history.append(ev)
        else:
            seen.update(ev)

    def figure():
        return uptrain_figure(history, seen["mha_val"], seen["start_val"], label)

    def view(clock):
        if not history:
            return f"{seen['phase']}… {note}", figure(), ""
        e = history[-1]
        eta = clock.tick(e["step"], n_steps, "uptraining")
        return f"Step {e['step']}/{n_steps} · train loss {e['train_loss']:.3f} · {eta}. {note}", figure(), ""

    def waiting(text):
        return f"{text} {note}", figure(), ""

    out = (yield from stream({"up": uptrain_job(base, tok, g, ids, val_ids, n_steps, rate, context, text)}, stop,
                             record, view, progress, sessions=sessions, request=request, key=key, estimate=estimate,
                             label="GQA uptraining", waiting=waiting)).get("up")
    if not out or out.get("abandoned"):
        yield f"Stopped before it started. {note}", figure(), ""
        return
    result, ppl, mha_val, start_val = out["result"], out["ppl"], out["mha_val"], out["start_val"]
    end_val = result["val_loss"]
    gap0, gap1 = start_val - mha_val, end_val - mha_val
    if gap0 <= 0:
        closed = "there was no gap to close on this text"
    elif gap1 > 0:
        closed = f"{1 - gap1 / gap0:.0%} of the gap to the original closed"
    else:  # better than the original on text it was just trained on: not the grouping's merit
        closed = (f"the grouped model now beats the original there — but it has just been trained on {cname}, so"
                  " part of that is the text, not the grouping: the reference passage is the fairer measure")
    stopped = " (stopped early)" if result["stopped"] else ""
    md = (f"### Uptraining {label}{stopped}\n"
          f"| | MHA (original) | {label} before | {label} after {result['steps']} steps |\n"
          f"|---|---|---|---|\n"
          f"| held-out loss, {cname} | {mha_val:.3f} | {start_val:.3f} | {end_val:.3f} |\n"
          f"| reference-passage perplexity | {ppl['MHA']:,.2f} | {ppl['before']:,.2f} | {ppl['after']:,.2f} |\n\n"
          f"All weights of a private copy were trained on {cname} ({len(ids):,} tokens, the last 10 % held out) with"
          f" lr {rate:g}, batch 8 × {context} tokens ({result['steps'] * 8 * context:,} tokens"
          f" seen): {closed} on held-out text. (The GQA paper uptrains for 5 % of the pre-training steps; more steps"
          f" close more of the gap.) The shared model was not changed."
          + (f" {note}" if note else ""))
    yield f"Done in {out['seconds']:.0f} s. {note}", figure(), md
