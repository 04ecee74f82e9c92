"""How the Train tab shows its two runs: a run's label, the live loss and accuracy curves (with the expert load of
an MoE run below), the samples side by side, and the Explain section that reads the finished runs' numbers."""
from __future__ import annotations

import math

from ..kit.common import new_figure, sample_cards
from .moe import draw_load

COLORS = {"A": "#1c7ed6", "B": "#e8590c"}
POS_LABELS = {"learned": "learned positions", "sinusoidal": "sinusoidal positions", "rope": "RoPE",
              "none": "no positional encoding"}


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
