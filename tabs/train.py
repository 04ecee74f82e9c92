"""Train-from-scratch tab: two tiny GPTs trained side by side (default: causal mask on vs off) with live
loss/accuracy curves, then 500-token samples from each and an explanation that reads the live numbers.

Also the place for the LayerNorm and 1/sqrt(d_k) ablations: each run has its own switches. Either run can be a
Mixture-of-Experts (experts, top-k, load-balancing weight per run): presets compare a dense model with an MoE of
equal active parameters, and an MoE with and without the load-balancing loss; the expert load is drawn over
training and the text's tokens are coloured by the expert that took them.
"""
from __future__ import annotations

import html
import math
import threading
import time
from dataclasses import dataclass
from functools import partial

import gradio as gr
import torch

import tinygpt
from tinygpt.data import (
    CORPORA,
    TextError,
    clean_text,
    decode_upload,
    load_corpus,
    make_tokenizer,
    python_docs,
    read_upload,
    split_tokens,
)
from tinygpt.moe import dense_n_inner, expert_load, token_experts, with_expert_load

from . import share
from .common import UserError, clamp_int, new_figure, parse_float, sample_cards, stop_session, user_errors
from .sessions import SessionStore, run_jobs

UPLOAD = "Upload a .txt file"
COLORS = {"A": "#1c7ed6", "B": "#e8590c"}
EXPERT_COLORS = ["#4dabf7", "#ff922b", "#69db7c", "#da77f2", "#ffd43b", "#ff8787", "#38d9a9", "#a9a9a9"]
MAX_EXPERTS = len(EXPERT_COLORS)


def get_corpus(choice, file, lossy=False) -> tuple[str, str]:
    """(text, note). Tiny Shakespeare falls back to the offline corpus when it cannot be downloaded."""
    if choice == UPLOAD:
        if file is None:
            raise TextError("Choose a .txt file to upload, or pick a built-in corpus.")
        text, _ = clean_text(decode_upload(read_upload(file), lossy), drop_boilerplate=False)
        return text, f"Uploaded text: {len(text):,} characters."
    key = CORPORA.get(choice, choice)
    try:
        text = load_corpus(key)
        return text, f"{choice}: {len(text):,} characters."
    except ConnectionError as e:
        text = python_docs()
        return text, f"{e} Using the offline Python-docs corpus instead ({len(text):,} characters)."


def run_config(vocab, block, n_layer, n_head, n_embd, drops, causal, layernorm, attn_scale, n_experts=0,
               moe_top_k=1, moe_aux_weight=0.01, n_inner=None, pos_encoding="learned"):
    return tinygpt.GPTConfig(vocab_size=vocab, block_size=block, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                             embd_pdrop=drops[0], attn_pdrop=drops[1], resid_pdrop=drops[2], causal=bool(causal),
                             layernorm=bool(layernorm), attn_scale=bool(attn_scale), n_experts=n_experts,
                             moe_top_k=moe_top_k, moe_aux_weight=moe_aux_weight, n_inner=n_inner,
                             pos_encoding=pos_encoding)


POS_LABELS = {"learned": "learned positions", "sinusoidal": "sinusoidal positions", "rope": "RoPE",
              "none": "no positional encoding"}


def check_pos(value) -> str:
    """A run's position encoding (default learned, as GPT-2)."""
    v = "learned" if value in (None, "") else str(value).strip().lower()
    if v not in POS_LABELS:
        raise UserError(f"Position encoding must be one of {', '.join(POS_LABELS)} (got {value!r}).")
    return v


def describe_run(cfg) -> str:
    off = [n for n, v in (("causal mask", cfg.causal), ("LayerNorm", cfg.layernorm),
                          ("1/√d_k scaling", cfg.attn_scale)) if not v]
    arch = []
    if cfg.n_experts:
        arch.append(f"MoE {cfg.n_experts} experts, top-{cfg.moe_top_k}, aux {cfg.moe_aux_weight:g}")
    elif cfg.n_inner is not None:
        arch.append(f"dense, FFN width {cfg.n_inner}")
    if cfg.pos_encoding != "learned":  # GPT-2's learned wpe is the default and goes unmentioned
        arch.append(POS_LABELS[cfg.pos_encoding])
    if not off:
        return ", ".join(arch) if arch else "full model"
    return ", ".join(arch + ["no " + ", no ".join(off)])


def check_moe(name, experts, top_k, aux, notes) -> tuple:
    """(n_experts, moe_top_k, moe_aux_weight) of one run, checked. Raises UserError."""
    e = clamp_int(experts, 0, MAX_EXPERTS, f"Run {name} experts", notes)
    if e == 1:
        raise UserError(f"Run {name}: experts must be 0 (a dense MLP) or at least 2.")
    k = clamp_int(top_k, 1, max(e, 1), f"Run {name} top-k", notes) if e else 1
    return e, k, parse_float(aux, f"Run {name} load-balancing weight", 0.0, 10.0)


def draw_load(ax, hist: list, cfg, name: str) -> None:
    """One MoE run's expert load over training: a group of bars per evaluation, one bar per layer, split into
    the experts' shares of the fixed validation windows (a collapsed layer is a bar of one colour)."""
    evs = [e for e in hist if e.get("expert_load")]
    E, L = cfg.n_experts, cfg.n_layer
    width = 0.8 / L
    for g, ev in enumerate(evs):
        for layer, shares in enumerate(ev["expert_load"]):
            bottom = 0.0
            for e, frac in enumerate(shares):
                ax.bar(g - 0.4 + (layer + 0.5) * width, frac, width * 0.9, bottom=bottom, color=EXPERT_COLORS[e],
                       label=f"expert {e}" if (g, layer) == (0, 0) else None)
                bottom += frac
    for e in range(1, E):
        ax.axhline(e / E, color="k", lw=.5, ls=":", alpha=.6)
    ticks = list(range(0, len(evs), max(1, len(evs) // 6)))
    ax.set_xticks(ticks, [str(evs[g]["step"]) for g in ticks])
    ax.set(title=f"run {name}: expert load, a bar per layer (balanced: {1 / E:.0%} each)", xlabel="step",
           ylabel="share of validation tokens", ylim=(0, 1.02))
    if evs:
        ax.legend(fontsize=7, loc="lower left", ncol=E)


def curves_figure(hist: dict, labels: dict, cfgs: dict | None = None):
    if cfgs and any(c.n_experts for c in cfgs.values()):
        fig = new_figure(10, 7.0)  # loss and accuracy on top, the expert load over training below
        top, bottom = fig.subfigures(2, 1, height_ratios=[3.8, 3.2])
        ax1, ax2 = top.subplots(1, 2)
        runs = [k for k in hist if cfgs[k].n_experts]
        axes = bottom.subplots(1, len(runs), squeeze=False)[0]
        for ax, k in zip(axes, runs):
            draw_load(ax, hist[k], cfgs[k], k)
    else:
        fig = new_figure(10, 3.8)
        ax1, ax2 = fig.add_subplot(121), fig.add_subplot(122)
    for name, h in hist.items():
        if not h:
            continue
        c = COLORS[name]
        ax1.plot([e["step"] for e in h], [e["train_loss"] for e in h], color=c, lw=.8, alpha=.5)
        ev = [e for e in h if e["val_loss"] is not None]
        ax1.plot([e["step"] for e in ev], [e["val_loss"] for e in ev], "o-", color=c, label=f"{name}: {labels[name]}")
        ax2.plot([e["step"] for e in ev], [e["val_accuracy"] for e in ev], "o-", color=c, label=f"{name}")
    ax1.set(title="loss (thin: train batch, dots: validation)", xlabel="step", ylabel="nats/token")
    ax2.set(title="validation next-token accuracy", xlabel="step", ylim=(0, 1))
    for ax in (ax1, ax2):
        ax.grid(alpha=.3)
        if any(hist.values()):
            ax.legend(fontsize=8)
    return fig


def samples_html(prompt, samples: dict, labels: dict) -> str:
    return sample_cards(prompt, list(samples.values()), [f"{k}: {labels[k]}" for k in samples])


def explain(results: dict, cfgs: dict, samples: dict, tok_kind: str) -> str:
    lines = ["### What happened (numbers from these two runs)", "",
             "| run | setting | final train loss | final val loss | val accuracy | steps |",
             "|---|---|---|---|---|---|"]
    for k, r in results.items():
        lines.append(f"| {k} | {describe_run(cfgs[k])} | {r['train_loss']:.3f} | {r['val_loss']:.3f} | "
                     f"{r['val_accuracy']:.1%} | {r['steps']} |")
    lines.append("")
    masked = [k for k in results if cfgs[k].causal]
    unmasked = [k for k in results if not cfgs[k].causal]
    if masked and unmasked and results[unmasked[0]]["train_loss"] > 0.7 * results[masked[0]]["train_loss"]:
        a, b = results[masked[0]], results[unmasked[0]]
        lines.append(
            f"* After {b['steps']} steps the unmasked run {unmasked[0]} ({b['train_loss']:.3f}) has not yet pulled "
            f"away from run {masked[0]} ({a['train_loss']:.3f}): it has not discovered that position *t* can simply "
            "read the next token through attention. Train for more steps (a few hundred) and its loss will collapse "
            "towards zero while its generated text stays broken.")
    elif masked and unmasked:
        a, b = results[masked[0]], results[unmasked[0]]
        lines.append(
            f"* **Without the causal mask** run {unmasked[0]} reaches a loss of **{b['train_loss']:.3f}** "
            f"(vs {a['train_loss']:.3f} with the mask): position *t* can attend to position *t+1*, which *is* the "
            f"token it must predict, so it learns to copy the answer instead of predicting it. Its validation loss "
            f"({b['val_loss']:.3f}) is low for the same reason: the future is visible there too.")
        lines.append(
            "* At generation time there is no future to copy: the last position only sees the past, a situation the "
            f"unmasked model never trained for, so its sample is broken (look at run {unmasked[0]}'s text), while "
            "the masked model, trained exactly as it is used, writes plausible "
            f"{'characters' if tok_kind == 'char' else 'tokens'}.")
    for k, r in results.items():
        c = cfgs[k]
        if not c.layernorm:
            lines.append(f"* Run {k} has **no LayerNorm**: activations in the residual stream grow block after block "
                         "and the gradients with them; training is less stable and needs a lower learning rate "
                         f"(final val loss {r['val_loss']:.3f}).")
        if not c.attn_scale:
            lines.append(f"* Run {k} has **no 1/√d_k scaling**: the dot products q·k have a standard deviation of "
                         f"about √d_k = {math.sqrt(c.head_dim):.1f} times larger, so the softmax saturates towards "
                         f"one-hot attention with vanishing gradients (final val loss {r['val_loss']:.3f}).")
    pos = {k: cfgs[k].pos_encoding for k in results}
    if len(set(pos.values())) > 1 and all(cfgs[k].causal for k in results):
        (ka, ra), (kb, rb) = sorted(results.items(), key=lambda kv: kv[1]["val_loss"])
        lines.append(
            f"* **Position encodings:** run {ka} ({POS_LABELS[pos[ka]]}) ends at a validation loss of"
            f" **{ra['val_loss']:.3f}**, run {kb} ({POS_LABELS[pos[kb]]}) at **{rb['val_loss']:.3f}** (a difference"
            f" of {rb['val_loss'] - ra['val_loss']:.3f} nats/token).")
        if "none" in pos.values():
            lines.append(
                "* A model with **no positional encoding** still learns something about order: the causal mask"
                " lets position t attend to exactly t + 1 tokens, so attention can count. Bag-of-words it is not, but"
                " it has to work harder for the same information.")
        if "rope" in pos.values():
            lines.append(
                "* **RoPE** adds no parameters: it turns q and k by the position, so every attention score depends"
                " only on the distance between the two tokens, in every layer.")
    if any(not math.isfinite(r["train_loss"]) for r in results.values()):
        lines.append("* A loss of NaN/inf means training diverged: lower the learning rate.")
    return "\n".join(lines)


@dataclass
class Settings:
    """The checked form: model shape, training length, dropouts (embedding, attention, residual)."""

    n_layer: int
    n_head: int
    n_embd: int
    context: int
    steps: int
    batch_size: int
    lr: float
    drops: tuple
    sample_len: int
    seed: int


def check_settings(n_layer, n_head, n_embd, context, steps, batch, lr, drops, sample_len, seed):
    """(Settings, notes about capped values). Raises UserError."""
    notes: list = []
    st = Settings(n_layer=clamp_int(n_layer, 1, 12, "Layers", notes),
                  n_head=clamp_int(n_head, 1, 16, "Heads", notes),
                  n_embd=clamp_int(n_embd, 8, 512, "d_model", notes),
                  context=clamp_int(context, 8, 512, "Context", notes),
                  steps=clamp_int(steps, 1, 5000, "Steps", notes),
                  batch_size=clamp_int(batch, 1, 128, "Batch size", notes),
                  lr=parse_float(lr, "Learning rate", 1e-7, 1.0),
                  drops=tuple(parse_float(d, "Dropout", 0.0, 0.9) for d in drops),
                  sample_len=clamp_int(sample_len, 1, 2000, "Sample length", notes),
                  seed=clamp_int(seed, 0, 2**31 - 1, "Seed", notes))
    if st.n_embd % st.n_head:
        raise UserError(f"d_model ({st.n_embd}) must be divisible by the number of heads ({st.n_head}).")
    return st, notes


@user_errors
def on_train(sessions: SessionStore, corpus, file, tokenizer, n_layer, n_head, n_embd, context, embd_pdrop,
             attn_pdrop, resid_pdrop, steps, batch, lr, a_causal, a_ln, a_scale, b_causal, b_ln, b_scale, sample_len,
             seed, a_experts=0, a_top_k=1, a_aux=0.01, b_experts=0, b_top_k=1, b_aux=0.01, match_active=False,
             a_pos="learned", b_pos="learned", request: gr.Request = None, progress=gr.Progress()):
    """Stream (status, curves, samples HTML, explanation) while two runs train side by side.

    a_/b_experts, top_k, aux: make a run a Mixture-of-Experts (0 experts = dense). match_active: the dense run
    gets the feed-forward width that gives it the MoE run's active parameters per token. a_/b_pos: each run's
    position encoding (learned, sinusoidal, rope, none); these inputs come last so older API clients still work."""
    st, notes = check_settings(n_layer, n_head, n_embd, context, steps, batch, lr,
                               (embd_pdrop, attn_pdrop, resid_pdrop), sample_len, seed)
    moe = {"A": check_moe("A", a_experts, a_top_k, a_aux, notes), "B": check_moe("B", b_experts, b_top_k, b_aux, notes)}
    L, T, S, seed = st.n_layer, st.context, st.steps, st.seed
    text, corpus_note = get_corpus(corpus, file)
    tok_kind = "char" if str(tokenizer).lower().startswith("char") else "gpt2"
    tok = make_tokenizer(tok_kind, text)
    data = torch.tensor(tok.encode(text), dtype=torch.long)
    if len(data) < 20 * (T + 2):
        raise UserError(f"The corpus is too short: {len(data):,} tokens; it needs at least {20 * (T + 2):,} for a "
                        f"context of {T} (training windows plus a 10% validation part).")
    train_data, val_data = split_tokens(data, 0.1)
    pos = {"A": check_pos(a_pos), "B": check_pos(b_pos)}
    cfgs = {"A": run_config(tok.vocab_size, T, L, st.n_head, st.n_embd, st.drops, a_causal, a_ln, a_scale, *moe["A"],
                            pos_encoding=pos["A"]),
            "B": run_config(tok.vocab_size, T, L, st.n_head, st.n_embd, st.drops, b_causal, b_ln, b_scale, *moe["B"],
                            pos_encoding=pos["B"])}
    if match_active:
        notes.append(match_active_params(cfgs))
    labels = {k: describe_run(c) for k, c in cfgs.items()}
    entry = sessions.get(request)
    stop = entry["stop"] = threading.Event()
    models = {}
    for k, c in cfgs.items():
        torch.manual_seed(seed)  # same initial weights for both runs: only the switch differs
        models[k] = tinygpt.GPT(c)
    tcfg = tinygpt.TrainConfig(steps=S, batch_size=st.batch_size, context=T, lr=st.lr, warmup=min(100, max(1, S // 10)),
                               eval_interval=max(1, S // 20), eval_batches=4, seed=seed)
    # an MoE run's evaluation events also carry its expert load on 8 fixed validation windows
    jobs = {k: partial(lambda m, cb, should_stop: tinygpt.train(m, train_data, val_data, tcfg,
                                                                with_expert_load(cb, m, val_data, T), should_stop),
                       models[k]) for k in models}
    hist = {k: [] for k in models}
    note = " ".join([corpus_note] + notes)
    sizes = {k: m.num_params() for k, m in models.items()}
    t0 = time.perf_counter()
    prompt = tok.decode(val_data[:8].tolist())
    size_note = f"{sizes['A']:,} parameters each" if sizes["A"] == sizes["B"] else \
        f"A: {sizes['A']:,} parameters, B: {sizes['B']:,}"
    yield (f"Training two {L}-layer models ({size_note}) on {len(train_data):,} tokens. {note}",
           curves_figure(hist, labels, cfgs), samples_html(prompt, {"A": None, "B": None}, labels), "")
    results = {}
    for kind, payload in run_jobs(jobs, stop):
        if kind == "done":
            results = payload
            break
        for name, ev in payload:
            hist[name].append(ev)
        done = min(h[-1]["step"] if h else 0 for h in hist.values())
        el = time.perf_counter() - t0
        left = el / max(done, 1) * (S - done)
        progress((done, S), desc=f"training, ~{left:.0f} s left")
        status = " · ".join(f"{k}: step {h[-1]['step']} loss {h[-1]['train_loss']:.3f}" for k, h in hist.items() if h)
        yield (f"{status} · about {left:.0f} s left. {note}", curves_figure(hist, labels, cfgs),
               samples_html(prompt, {"A": None, "B": None}, labels), "")
    samples = {}
    x = torch.tensor([tok.encode(prompt)], dtype=torch.long)
    for k, m in models.items():
        out = tinygpt.generate(m, x, st.sample_len, 0.8, None, None, torch.Generator().manual_seed(seed))
        samples[k] = tok.decode(out[0, x.size(1):].tolist())
    secs = time.perf_counter() - t0
    stopped = " (stopped early)" if any(r["stopped"] for r in results.values()) else ""
    entry["trained"] = {k: (m, tok) for k, m in models.items()}
    entry["train_results"] = {k: {key: r[key] for key in ("steps", "train_loss", "val_loss", "val_accuracy")}
                              for k, r in results.items()}
    for k, m in models.items():  # parameters per run and, for an MoE, the final load on 64 validation windows
        counts = tinygpt.count_parameters(cfgs[k])
        entry["train_results"][k].update(params_total=counts["total"], params_active=counts["active"],
                                         tokens_per_s=results[k]["tokens_per_s"])
        if cfgs[k].n_experts:
            entry["train_results"][k]["expert_load"] = expert_load(m, val_data, T, max_windows=64)["per_layer"]
    entry["routing_texts"] = {k: prompt + samples[k] for k in models if cfgs[k].n_experts}
    yield (f"Done{stopped} in {secs:.0f} s. {note}", curves_figure(hist, labels, cfgs),
           samples_html(prompt, samples, labels),
           explain(results, cfgs, samples, tok_kind) + explain_moe(entry["train_results"], cfgs))


def match_active_params(cfgs: dict) -> str:
    """Give the dense run the FFN width at which its parameters equal the MoE run's active ones (in place)."""
    dense = [k for k, c in cfgs.items() if not c.n_experts]
    sparse = [k for k, c in cfgs.items() if c.n_experts]
    if len(dense) != 1 or len(sparse) != 1:
        return "Equal active parameters needs one dense run and one MoE run: nothing was matched."
    d, m = dense[0], sparse[0]
    cfgs[d] = cfgs[d].replace(n_inner=dense_n_inner(cfgs[m]))
    a, b = tinygpt.count_parameters(cfgs[d])["total"], tinygpt.count_parameters(cfgs[m])["active"]
    return (f"Run {d}'s feed-forward width is {cfgs[d].n_inner} (not {4 * cfgs[d].n_embd}) so that its {a:,} "
            f"parameters match the {b:,} that run {m} uses per token.")


def explain_moe(res: dict, cfgs: dict) -> str:
    """The Mixture-of-Experts part of the explanation, read from the finished runs (empty without an MoE)."""
    moe = [k for k, c in cfgs.items() if c.n_experts]
    if not moe:
        return ""
    lines = ["", "### Mixture-of-Experts", "",
             "| run | parameters (total) | active per token | final val loss | tokens/s | busiest expert | idlest |",
             "|---|---|---|---|---|---|---|"]
    for k in res:
        r = res[k]
        load = r.get("expert_load")
        busy = max(max(row) for row in load) if load else None
        idle = min(min(row) for row in load) if load else None
        lines.append(f"| {k} | {r['params_total']:,} | {r['params_active']:,} | {r['val_loss']:.3f} | "
                     f"{r['tokens_per_s']:,.0f} | {'' if busy is None else f'{busy:.0%}'} | "
                     f"{'' if idle is None else f'{idle:.0%}'} |")
    lines.append("")
    for k in moe:
        c, load = cfgs[k], res[k]["expert_load"]
        E, busy, idle = c.n_experts, max(max(row) for row in load), min(min(row) for row in load)
        shares = "; ".join(f"layer {i}: " + " / ".join(f"{s:.0%}" for s in row) for i, row in enumerate(load))
        if busy >= 0.9:
            verdict = (f"has **collapsed**: one expert takes {busy:.0%} of the tokens in a layer, so the other experts "
                       "get almost no gradient and stay untrained (a self-reinforcing loop the router cannot leave).")
        elif busy >= 2.0 / E or idle < 0.4 / E:
            verdict = (f"is **unbalanced**: the busiest expert takes {busy:.0%} and the idlest {idle:.0%} of a layer's "
                       f"tokens (balanced: {1 / E:.0%} each).")
        else:
            verdict = (f"is **balanced**: every expert takes between {idle:.0%} and {busy:.0%} of a layer's tokens "
                       f"(perfect balance: {1 / E:.0%} each).")
        aux = (f"with the load-balancing loss at weight {c.moe_aux_weight:g}" if c.moe_aux_weight
               else "**without** the load-balancing loss")
        lines.append(f"* Run {k} ({E} experts, top-{c.moe_top_k}, {aux}) {verdict} Final shares of 64 validation "
                     f"windows — {shares}.")
    if len(moe) == 2 and cfgs["A"].moe_aux_weight != cfgs["B"].moe_aux_weight:
        on, off = sorted(moe, key=lambda k: -cfgs[k].moe_aux_weight)
        b_on = max(max(row) for row in res[on]["expert_load"])
        b_off = max(max(row) for row in res[off]["expert_load"])
        lines.append(f"* The auxiliary loss E·Σ f_e·P_e (Switch Transformer) is smallest when the load is uniform: "
                     f"with it, run {on}'s busiest expert takes {b_on:.0%}; with weight "
                     f"{cfgs[off].moe_aux_weight:g}, run {off}'s takes {b_off:.0%}. Collapse is not certain in a "
                     "short run: try more steps or another seed if both look alike.")
    if len(moe) == 1:
        m = moe[0]
        d = "A" if m == "B" else "B"
        if res[d]["params_total"] == res[m]["params_active"] or abs(res[d]["params_total"] - res[m]["params_active"]) \
                < 0.01 * res[m]["params_active"]:
            better = m if res[m]["val_loss"] < res[d]["val_loss"] else d
            lines.append(f"* **Equal active parameters** ({res[d]['params_total']:,} vs {res[m]['params_active']:,}): "
                         f"both runs spend about the same multiply-adds per token, but the MoE holds "
                         f"{res[m]['params_total'] / res[m]['params_active']:.1f}× more parameters in total. Here "
                         f"run {better} ends with the lower validation loss ({res[m]['val_loss']:.3f} MoE vs "
                         f"{res[d]['val_loss']:.3f} dense). On a CPU the MoE is slower per token "
                         f"({res[m]['tokens_per_s']:,.0f} vs {res[d]['tokens_per_s']:,.0f} tokens/s): routing and the "
                         "per-expert loop cost time that a FLOP count does not show.")
    return "\n".join(lines)


ROUTE_CSS = "display:inline;white-space:pre-wrap;font-family:var(--font-mono);border-radius:3px"


def routing_html(model, tok, text: str, name: str) -> str:
    """The text's tokens, once per MoE layer, each on the colour of the expert the router sent it to
    (hover: expert and gate probability)."""
    ids = tok.encode(text)
    if not ids:
        raise UserError("Type some text to route.")
    r = token_experts(model, ids)
    cut = len(ids) - len(r["ids"])
    E = model.config.n_experts
    legend = " ".join(f"<span style='background:{EXPERT_COLORS[e]};padding:0 6px;border-radius:3px'>expert {e}</span>"
                      for e in range(E))
    rows = []
    for layer, (choice, gate) in enumerate(zip(r["choice"], r["gate"])):
        spans = []
        for i, e, g in zip(r["ids"], choice, gate):
            piece = tok.piece(i)
            shown = html.escape(piece).replace("\n", "↵<br>")
            spans.append(f"<span style='background:{EXPERT_COLORS[e]};{ROUTE_CSS}' "
                         f"title='expert {e}, gate {g:.2f}'>{shown}</span>")
        share = " / ".join(f"{choice.count(e) / len(choice):.0%}" for e in range(E))
        rows.append(f"<div class='tg-sample' style='margin-top:6px'><div class='tg-sample-h'>run {name}, layer {layer} "
                    f"(shares {share})</div>{''.join(spans)}</div>")
    note = f" (first {len(r['ids'])} tokens: the model's context; {cut} more not shown)" if cut else ""
    return (f"<div class='tg-status'><b>Run {html.escape(name)}</b>: which expert took each token{note} · "
            f"{legend}</div>" + "".join(rows))


@user_errors
def on_route(sessions: SessionStore, text, request: gr.Request = None, quiet: bool = False):
    """The text (empty: each MoE run's own prompt and sample) coloured by expert, for every trained MoE run.
    quiet: return "" instead of an error when no MoE run was trained (the step that follows training)."""
    entry = sessions.get(request)
    runs = {k: v for k, v in (entry.get("trained") or {}).items() if v[0].config.n_experts}
    if not runs:
        if quiet:
            return ""
        raise UserError("Train a run with experts first (set experts to 2 or more for run A or B).")
    text = text if isinstance(text, str) else ""
    parts = []
    for k, (model, tok) in runs.items():
        t = text if text.strip() else entry.get("routing_texts", {}).get(k, "")
        parts.append(routing_html(model, tok, t, k))
    return "".join(parts)


PRESETS = {
    "dense vs MoE": dict(a_experts=0, a_top_k=1, a_aux=0.01, b_experts=4, b_top_k=1, b_aux=0.01, match_active=True),
    "aux on vs off": dict(a_experts=4, a_top_k=1, a_aux=0.01, b_experts=4, b_top_k=1, b_aux=0.0, match_active=False),
}
PRESET_KEYS = ("a_causal", "a_ln", "a_scale", "b_causal", "b_ln", "b_scale", "a_experts", "a_top_k", "a_aux",
               "b_experts", "b_top_k", "b_aux", "match_active")


def preset_values(name: str) -> tuple:
    """The form values of a preset, in PRESET_KEYS order: both runs full models (mask, LayerNorm, scaling on)."""
    return tuple({**dict.fromkeys(PRESET_KEYS[:6], True), **PRESETS[name]}[k] for k in PRESET_KEYS)


def build(sessions: SessionStore):
    with gr.Tab("Train from scratch", id="train"):
        gr.Markdown("Train two tiny GPTs **side by side** on the same data from the same initial weights. By default"
                    " run A has the causal mask and run B does not: watch B's loss collapse towards zero and its"
                    " text fall apart. Switch off LayerNorm or the 1/√d_k scaling to see why they matter, or give both"
                    " runs the causal mask and a different position encoding each (learned vs RoPE vs none).")
        with gr.Row():
            corpus = gr.Radio([*CORPORA, UPLOAD], value=list(CORPORA)[0], label="Corpus")
            upload = gr.File(label="Your .txt (for 'Upload')", file_types=[".txt"], type="filepath")
            tokenizer = gr.Radio(["characters", "GPT-2 BPE"], value="characters", label="Tokenizer")
        with gr.Row():
            n_layer = gr.Slider(1, 8, 4, step=1, label="Layers")
            n_head = gr.Slider(1, 8, 4, step=1, label="Heads")
            n_embd = gr.Slider(16, 256, 128, step=16, label="d_model")
            context = gr.Slider(16, 256, 64, step=16, label="Context")
        with gr.Row():
            embd_p = gr.Slider(0, 0.5, 0.0, step=0.05, label="Embedding dropout")
            attn_p = gr.Slider(0, 0.5, 0.0, step=0.05, label="Attention dropout")
            resid_p = gr.Slider(0, 0.5, 0.0, step=0.05, label="Residual dropout")
        with gr.Row():
            steps = gr.Slider(10, 3000, 500, step=10, label="Steps", elem_id="tr-steps")
            batch = gr.Slider(1, 64, 12, step=1, label="Batch size")
            lr = gr.Number(2e-3, label="Learning rate")
            sample_len = gr.Slider(50, 1000, 500, step=50, label="Sample length", elem_id="tr-sample-len")
            seed = gr.Number(1337, label="Seed", precision=0)
        with gr.Row():
            with gr.Column():
                gr.Markdown("**Run A**")
                a_causal = gr.Checkbox(True, label="causal mask")
                a_ln = gr.Checkbox(True, label="LayerNorm")
                a_scale = gr.Checkbox(True, label="1/√d_k scaling")
                a_pos = gr.Dropdown(list(POS_LABELS), value="learned", label="position encoding", elem_id="tr-a-pos")
            with gr.Column():
                gr.Markdown("**Run B**")
                b_causal = gr.Checkbox(False, label="causal mask")
                b_ln = gr.Checkbox(True, label="LayerNorm")
                b_scale = gr.Checkbox(True, label="1/√d_k scaling")
                b_pos = gr.Dropdown(list(POS_LABELS), value="learned", label="position encoding", elem_id="tr-b-pos")
        with gr.Row():
            with gr.Column():
                gr.Markdown("**Run A: feed-forward layer**")
                a_experts = gr.Slider(0, MAX_EXPERTS, 0, step=1, label="experts (0 = dense MLP)",
                                      elem_id="tr-a-experts")
                a_top_k = gr.Slider(1, 4, 1, step=1, label="top-k (experts per token)")
                a_aux = gr.Number(0.01, label="load-balancing loss weight")
            with gr.Column():
                gr.Markdown("**Run B: feed-forward layer**")
                b_experts = gr.Slider(0, MAX_EXPERTS, 0, step=1, label="experts (0 = dense MLP)",
                                      elem_id="tr-b-experts")
                b_top_k = gr.Slider(1, 4, 1, step=1, label="top-k (experts per token)")
                b_aux = gr.Number(0.01, label="load-balancing loss weight")
        with gr.Row():
            match_active = gr.Checkbox(False, label="dense run matches the MoE run's active parameters (FFN width)",
                                       elem_id="tr-match")
            preset_dense = gr.Button("Preset: dense vs MoE, equal active parameters", size="sm",
                                     elem_id="tr-preset-moe")
            preset_aux = gr.Button("Preset: MoE with vs without load balancing", size="sm", elem_id="tr-preset-aux")
        with gr.Row():
            go = gr.Button("Train both", variant="primary")
            stop = gr.Button("Stop")
        status = gr.Markdown(elem_id="tr-status")
        plot = gr.Plot(label="Curves", elem_id="tr-plot")
        samples = gr.HTML(elem_id="tr-samples")
        with gr.Accordion("Which expert took each token (MoE runs)", open=True):
            with gr.Row():
                route_text = gr.Textbox(label="Text to route (empty: each run's prompt and sample)", scale=4,
                                        elem_id="tr-route-text")
                route_go = gr.Button("Colour by expert", scale=1)
            routing = gr.HTML(elem_id="tr-routing")
        with gr.Accordion("Explain", open=True):
            explain_md = gr.Markdown()
        go.click(partial(on_train, sessions),
                 [corpus, upload, tokenizer, n_layer, n_head, n_embd, context, embd_p, attn_p, resid_p, steps, batch,
                  lr, a_causal, a_ln, a_scale, b_causal, b_ln, b_scale, sample_len, seed,
                  a_experts, a_top_k, a_aux, b_experts, b_top_k, b_aux, match_active, a_pos, b_pos],
                 [status, plot, samples, explain_md], api_name="train", concurrency_id="train", concurrency_limit=1
                 ).success(partial(on_route, sessions, "", quiet=True), None, routing, api_visibility="private")
        route_go.click(partial(on_route, sessions), route_text, routing, api_name="moe_routing")
        preset_outputs = [a_causal, a_ln, a_scale, b_causal, b_ln, b_scale, a_experts, a_top_k, a_aux, b_experts,
                          b_top_k, b_aux, match_active]
        preset_dense.click(partial(preset_values, "dense vs MoE"), None, preset_outputs, api_visibility="private",
                           queue=False)
        preset_aux.click(partial(preset_values, "aux on vs off"), None, preset_outputs, api_visibility="private",
                         queue=False)
        stop.click(partial(stop_session, sessions), None, status, api_visibility="private", queue=False)
        share.register("train", fields={
            "corpus": corpus, "tokenizer": tokenizer, "n_layer": n_layer, "n_head": n_head, "n_embd": n_embd,
            "context": context, "embd_pdrop": embd_p, "attn_pdrop": attn_p, "resid_pdrop": resid_p, "steps": steps,
            "batch_size": batch, "lr": lr, "sample_len": sample_len, "seed": seed, "a_causal": a_causal,
            "a_layernorm": a_ln, "a_attn_scale": a_scale, "b_causal": b_causal, "b_layernorm": b_ln,
            "b_attn_scale": b_scale, "a_experts": a_experts, "a_top_k": a_top_k, "a_aux": a_aux,
            "b_experts": b_experts, "b_top_k": b_top_k, "b_aux": b_aux, "match_active": match_active,
            "a_pos_encoding": a_pos, "b_pos_encoding": b_pos},
            command=command, run=go)


def command(v: dict) -> str:
    """Runs A and B as two `python -m tinygpt train` lines: same data, initial weights and schedule, so the
    same losses (the samples the tab draws afterwards start from a prompt taken from the held-out text)."""
    st, _ = check_settings(v["n_layer"], v["n_head"], v["n_embd"], v["context"], v["steps"], v["batch_size"], v["lr"],
                           (v["embd_pdrop"], v["attn_pdrop"], v["resid_pdrop"]), v["sample_len"], v["seed"])
    if v["corpus"] == UPLOAD:
        text, lines = "your-text.txt", ["# your uploaded .txt (the tab also cleans it: see tinygpt.data.clean_text)"]
    else:
        key = CORPORA.get(v["corpus"], v["corpus"])
        text = f"{key}.txt"
        code = (f"from tinygpt.data import load_corpus; "
                f"open({text!r}, 'w', encoding='utf-8').write(load_corpus({key!r}))")
        lines = ["# the corpus as a text file", share.cli_python(code)]
    tok = "char" if str(v["tokenizer"]).lower().startswith("char") else "gpt2"
    notes: list = []
    moe = {run: check_moe(run.upper(), v.get(f"{run}_experts", 0), v.get(f"{run}_top_k", 1), v.get(f"{run}_aux", 0.01),
                          notes) for run in ("a", "b")}
    cfgs = {run.upper(): run_config(256, st.context, st.n_layer, st.n_head, st.n_embd, st.drops, True, True, True,
                                    *moe[run]) for run in ("a", "b")}
    pos = {run: check_pos(v.get(f"{run}_pos_encoding")) for run in ("a", "b")}
    if v.get("match_active"):
        match_active_params(cfgs)  # the dense run's FFN width (independent of the vocabulary)
    for run in ("a", "b"):
        experts, top_k, aux = moe[run]
        n_inner = cfgs[run.upper()].n_inner
        lines.append(f"# run {run.upper()}")
        lines.append(share.cli(
            "train", text=text, tokenizer=tok, n_layer=st.n_layer, n_head=st.n_head, n_embd=st.n_embd,
            block_size=st.context, batch_size=st.batch_size, steps=st.steps, lr=st.lr,
            warmup=min(100, max(1, st.steps // 10)), eval_interval=max(1, st.steps // 20), eval_batches=4,
            seed=st.seed, embd_pdrop=st.drops[0], attn_pdrop=st.drops[1], resid_pdrop=st.drops[2],
            no_causal_mask=not v[f"{run}_causal"], no_layernorm=not v[f"{run}_layernorm"],
            no_attn_scale=not v[f"{run}_attn_scale"], n_experts=experts or None,
            moe_top_k=top_k if experts else None, moe_aux_weight=aux if experts else None, n_inner=n_inner,
            pos_encoding=None if pos[run] == "learned" else pos[run], out=f"runs/{run.upper()}"))
    return "\n".join(lines)
