"""How the Train tab shows its runs: a run's label, the live loss / perplexity and accuracy curves (training
windows beside validation; the expert load of an MoE run below), the samples side by side, and the Explain section.

Explain states outcomes only from the finished runs' own numbers (losses, accuracies, the train-vs-validation gap,
and what `probe` measured inside each model); for each ablation it says what this run shows, what theory predicts,
and, when the two disagree, why that can happen at this scale. A difference counts only when it is larger than the
noise: twice the paired standard error of the two runs' losses on the same held-out windows, and never less than
SEED_SPREAD, the seed-to-seed spread measured for the tab's default run."""
from __future__ import annotations

import math

import numpy as np

from ..kit.common import new_figure, sample_cards
from .moe import draw_load
from .probe import SEED_SPREAD, paired_se

COLORS = {"A": "#1c7ed6", "B": "#e8590c"}
POS_LABELS = {"learned": "learned positions", "sinusoidal": "sinusoidal positions", "rope": "RoPE",
              "none": "no positional encoding"}


def drops_of(cfg) -> tuple:
    return (cfg.embd_pdrop, cfg.attn_pdrop, cfg.resid_pdrop)


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
    if any(drops_of(cfg)):  # no dropout is the default and goes unmentioned
        arch.append("dropout " + "/".join(f"{d:g}" for d in drops_of(cfg)))
    if not off:
        return ", ".join(arch) if arch else "full model"
    return ", ".join(arch + ["no " + ", no ".join(off)])


def curves_figure(hist: dict, labels: dict, cfgs: dict | None = None):
    """Loss (thin: training batch, dashed: fixed training windows, dots: validation; perplexity = e^loss on the
    right axis) and next-token accuracy (dashed: training windows, dots: validation)."""
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
        ax1.plot([e["step"] for e in h], [e["train_loss"] for e in h], color=c, lw=.8, alpha=.4)
        ev = [e for e in h if e["val_loss"] is not None]
        fit = [e for e in ev if e.get("train_eval_loss") is not None]
        ax1.plot([e["step"] for e in ev], [e["val_loss"] for e in ev], "o-", color=c, ms=4,
                 label=f"{name}: {labels[name]}")
        ax2.plot([e["step"] for e in ev], [e["val_accuracy"] for e in ev], "o-", color=c, ms=4,
                 label=f"{name} validation")
        if fit:
            ax1.plot([e["step"] for e in fit], [e["train_eval_loss"] for e in fit], "x--", color=c, ms=4, lw=1)
            ax2.plot([e["step"] for e in fit], [e["train_eval_accuracy"] for e in fit], "x--", color=c, ms=4, lw=1,
                     label=f"{name} training windows")
    ax1.set(title="loss (thin: train batch, ×: train windows, ●: validation)", xlabel="step", ylabel="nats/token")
    if any(hist.values()):
        ppl = ax1.secondary_yaxis("right", functions=(lambda x: np.exp(np.clip(x, -50, 50)),
                                                       lambda p: np.log(np.clip(p, 1e-12, None))))
        ppl.set_ylabel("perplexity = e^loss")
    ax2.set(title="next-token accuracy (×: training windows, ●: validation)", xlabel="step", ylim=(0, 1))
    for ax in (ax1, ax2):
        ax.grid(alpha=.3)
        if any(hist.values()):
            ax.legend(fontsize=8)
    return fig


def samples_html(prompt, samples: dict, labels: dict) -> str:
    return sample_cards(prompt, list(samples.values()), [f"{k}: {labels[k]}" for k in samples])


# ---- Explain ---------------------------------------------------------------------------------------------------
def _gap(r: dict) -> float | None:
    """Validation loss minus the loss on the fixed training windows (None when not measured)."""
    if r.get("train_eval_loss") is None or r.get("val_loss") is None:
        return None
    return r["val_loss"] - r["train_eval_loss"]


def _f(x, fmt=".3f") -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def noise_of(ka: str, kb: str, probes: dict | None) -> tuple[float, str]:
    """(noise in nats, how it was found) for a difference between runs ka and kb."""
    se = None
    if probes and ka in probes and kb in probes:
        se = paired_se(probes[ka]["window_loss"], probes[kb]["window_loss"])
    if se is not None and math.isfinite(se) and 2 * se > SEED_SPREAD:
        return 2 * se, f"twice the paired standard error over the same held-out windows, {2 * se:.3f}"
    return SEED_SPREAD, (f"the seed-to-seed spread measured for the default run, {SEED_SPREAD:.2f}" +
                         (f"; the held-out windows alone account for ±{2 * se:.3f}" if se is not None and
                          math.isfinite(se) else ""))


def outcome(name_x: str, x: float, name_y: str, y: float, noise: float) -> int:
    """-1 if x is lower than y by more than the noise, +1 if higher, 0 if within it."""
    if not (math.isfinite(x) and math.isfinite(y)) or abs(x - y) <= noise:
        return 0
    return -1 if x < y else 1


def differing(ca, cb) -> list[str]:
    """The settings in which two runs differ, in words."""
    keys = [("causal", "causal mask"), ("layernorm", "LayerNorm"), ("attn_scale", "1/√d_k scaling"),
            ("pos_encoding", "position encoding"), ("n_experts", "experts")]
    if ca.n_experts and cb.n_experts:  # routing settings matter only between two MoE runs
        keys += [("moe_top_k", "top-k"), ("moe_aux_weight", "load-balancing weight")]
    if not (ca.n_experts or cb.n_experts):  # dense vs MoE: the dense width is part of that comparison
        keys.append(("n_inner", "FFN width"))
    out = [name for key, name in keys if getattr(ca, key) != getattr(cb, key)]
    if drops_of(ca) != drops_of(cb):
        out.append("dropout")
    return out


def explain(results: dict, cfgs: dict, samples: dict, tok_kind: str, probes: dict | None = None) -> str:
    """The Explain section from the finished runs: `results` {run: tinygpt.train's result}, `cfgs` {run: GPTConfig},
    `probes` {run: probe()} (optional: without it the sentences that need it are left out)."""
    unit = "characters" if tok_kind == "char" else "tokens"
    results = dict(sorted(results.items()))  # A before B, whichever finished first
    lines = ["### What happened (numbers from " + ("these two runs)" if len(results) > 1 else "this run)"), "",
             "| run | setting | final train loss (batch) | train-window loss | final val loss | val perplexity | "
             "train-window accuracy | val accuracy | gap (val − train windows) | steps |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for k, r in results.items():
        vl = r.get("val_loss")
        ppl = math.exp(min(vl, 50)) if vl is not None and math.isfinite(vl) else None
        lines.append(f"| {k} | {describe_run(cfgs[k])} | {_f(r['train_loss'])} | {_f(r.get('train_eval_loss'))} | "
                     f"{_f(vl)} | {_f(ppl, '.1f')} | {_f(r.get('train_eval_accuracy'), '.1%')} | "
                     f"{_f(r.get('val_accuracy'), '.1%')} | {_f(_gap(r), '+.3f')} | {r['steps']} |")
    lines.append("")
    if any(r.get("val_loss") is None or r.get("train_loss") is None for r in results.values()):
        lines.append("* A run was stopped before its first evaluation: there is nothing to compare yet.")
        return "\n".join(lines)
    if any(not (math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"])) for r in results.values()):
        lines.append("* A loss of NaN/inf means training diverged: lower the learning rate.")
        return "\n".join(lines)
    if len(results) == 1:
        lines += explain_one(*next(iter(results.items())), cfgs, unit)
        return "\n".join(lines)
    ka, kb = list(results)[:2]
    ca, cb = cfgs[ka], cfgs[kb]
    diff = differing(ca, cb)
    noise, how = noise_of(ka, kb, probes)
    if not diff:
        lines.append(f"* Runs {ka} and {kb} have the same settings, the same seed and the same data, so they are the "
                     "same run twice: switch run B off, or change one of its settings to compare something.")
        return "\n".join(lines)
    lines.append(f"* A difference in loss counts here when it is larger than **{noise:.3f} nats** ({how}); smaller "
                 "ones could change sign with another seed.")
    if len(diff) > 1:
        lines.append(f"* Runs {ka} and {kb} differ in {len(diff)} settings ({', '.join(diff)}): each difference "
                     "below mixes their effects. Change one setting at a time to separate them.")
    for part in (explain_mask, explain_layernorm, explain_scale, explain_dropout, explain_positions):
        lines += part(results, cfgs, probes or {}, noise, unit)
    return "\n".join(lines)


def explain_one(k: str, r: dict, cfgs: dict, unit: str) -> list:
    """One run: loss, perplexity and accuracy, and whether it has begun to overfit."""
    c = cfgs[k]
    vl = r["val_loss"]
    out = [f"* Run {k} ends at a validation loss of **{vl:.3f} nats per {unit[:-1]}**, a perplexity of "
           f"**e^{vl:.3f} = {math.exp(min(vl, 50)):.1f}**: on average it is as unsure as a choice among "
           f"{math.exp(min(vl, 50)):.1f} equally likely {unit} (a uniform guess over the {c.vocab_size:,}-{unit[:-1]}"
           f" vocabulary would be {c.vocab_size:,}). It predicts the next {unit[:-1]} right "
           f"{r['val_accuracy']:.1%} of the time on held-out text."]
    gap = _gap(r)
    if gap is not None:
        side = ("has begun to **memorise** its training text (overfitting): more steps would widen the gap, and "
                "dropout or more data would narrow it" if gap > SEED_SPREAD else
                "does **not overfit** yet: it is at least as good on text it never trained on as on its training text")
        out.append(f"* On fixed windows of its training text (scored exactly like the held-out ones, no dropout) the "
                   f"loss is {r['train_eval_loss']:.3f} and the accuracy {r['train_eval_accuracy']:.1%}: the gap to "
                   f"validation is {gap:+.3f} nats, so the model {side}.")
    return out


def _pair(cfgs: dict, key: str) -> tuple | None:
    """(run with the setting on, run with it off), when the two runs differ in it."""
    ks = list(cfgs)[:2]
    on = [k for k in ks if getattr(cfgs[k], key)]
    off = [k for k in ks if not getattr(cfgs[k], key)]
    return (on[0], off[0]) if on and off else None


def explain_mask(results, cfgs, probes, noise, unit) -> list:
    pair = _pair(cfgs, "causal")
    if not pair:
        return []
    m, u = pair
    a, b = results[m], results[u]
    out = []
    if outcome(u, b["train_loss"], m, a["train_loss"], noise) < 0:
        out.append(f"* **This run:** Without the causal mask, run {u} reaches a training loss of "
                   f"**{b['train_loss']:.3f}**, below run {m}'s {a['train_loss']:.3f} with the mask, and a validation "
                   f"loss of {b['val_loss']:.3f} (vs {a['val_loss']:.3f}). **Why:** position *t* can attend to "
                   f"position *t+1*, which *is* the {unit[:-1]} it must predict, so it learns to copy the answer "
                   "instead of predicting it; the held-out windows show it the future too.")
    else:
        out.append(f"* **This run:** after {b['steps']} steps the unmasked run {u} (training loss "
                   f"{b['train_loss']:.3f}) has not pulled away from run {m} ({a['train_loss']:.3f}). **Theory:** it "
                   f"can read the next {unit[:-1]} through attention and copy it; it has not discovered that yet. "
                   "Train for more steps (a few hundred) and its loss should collapse towards zero.")
    if m in probes and u in probes:
        lm, lu = probes[m]["last_loss"], probes[u]["last_loss"]
        where = (f"Where nothing of the future is visible — the last position of each held-out window, exactly the "
                 f"situation of every generation step — run {u}'s loss is **{lu:.3f}** against run {m}'s "
                 f"**{lm:.3f}**")
        if outcome(u, lu, m, lm, noise) > 0:
            out.append(f"* {where}: its low loss was copying, and when there is nothing to copy it predicts worse "
                       f"than the masked model. That is why its sample breaks down (compare the two texts), while "
                       f"the masked model, trained exactly as it is used, writes plausible {unit}.")
        else:
            out.append(f"* {where}: no worse than the masked model, beyond the noise, so this measure does not show "
                       "the cost of copying in this run. It does once the masked model has learned to predict (real "
                       "text, a few hundred steps): then the unmasked model falls behind exactly where the future "
                       "is hidden.")
    return out


def explain_layernorm(results, cfgs, probes, noise, unit) -> list:
    pair = _pair(cfgs, "layernorm")
    if not pair:
        return []
    w, wo = pair
    a, b = results[w], results[wo]
    theory = ("**Theory:** LayerNorm rescales each block's input to unit size, so every block sees inputs of the same "
              "scale however much the residual stream has grown; without it, the activations (and with them the "
              "gradients and the logits) grow block after block, and training is less stable and needs a lower "
              "learning rate.")
    grow = ""
    if w in probes and wo in probes:
        grow = (f" Measured: from the embeddings to the last block the residual stream's RMS grows "
                f"**×{probes[wo]['resid_growth']:.1f}** without LayerNorm (run {wo}) and ×"
                f"{probes[w]['resid_growth']:.1f} with it (run {w}).")
    o = outcome(wo, b["val_loss"], w, a["val_loss"], noise)
    if o > 0:
        verdict = (f"**This run agrees:** without LayerNorm run {wo} ends at a validation loss of "
                   f"**{b['val_loss']:.3f}**, worse than run {w}'s **{a['val_loss']:.3f}**.")
        why = ""
    else:
        verdict = (f"**This run does not show it:** without LayerNorm run {wo} ends at **{b['val_loss']:.3f}**, run "
                   f"{w} at **{a['val_loss']:.3f}** — " + ("lower, by more than the noise." if o < 0 else
                                                          "within the noise of each other."))
        why = (f" **Why they can disagree here:** with {cfgs[wo].n_layer} blocks, gradient clipping at 1.0 and "
               f"{b['steps']} steps the growth stays small enough for the optimiser to cope; the cost of no "
               "normalisation shows with depth (dozens of blocks), larger learning rates and long runs, where "
               "unnormalised models diverge. Try 8 layers or a 10× learning rate.")
    return [f"* **LayerNorm.** {verdict}{grow} {theory}{why}"]


def explain_scale(results, cfgs, probes, noise, unit) -> list:
    pair = _pair(cfgs, "attn_scale")
    if not pair:
        return []
    s, ns = pair
    a, b = results[s], results[ns]
    dk = cfgs[ns].head_dim
    theory = (f"**Theory:** q·k is a sum of d_k = {dk} products, so its standard deviation grows like √d_k = "
              f"{math.sqrt(dk):.1f}; dividing by √d_k keeps the scores near unit size. Without it the softmax "
              "saturates towards one-hot attention, where its gradient (p(1 − p) per weight) vanishes, and learning "
              "slows or stalls.")
    meas = ""
    if s in probes and ns in probes:
        ps, pn = probes[s], probes[ns]
        meas = (f" Measured on held-out windows: the largest attention weight of a softmax row averages "
                f"**{pn['attn_max']:.2f}** without the scaling (run {ns}) vs {ps['attn_max']:.2f} with it (run {s}); "
                f"{pn['attn_saturated']:.0%} vs {ps['attn_saturated']:.0%} of the rows are saturated (largest "
                f"weight above 0.9).")
    o = outcome(ns, b["val_loss"], s, a["val_loss"], noise)
    if o > 0:
        verdict = (f"**This run agrees:** without the scaling run {ns} ends at a validation loss of "
                   f"**{b['val_loss']:.3f}**, worse than run {s}'s **{a['val_loss']:.3f}**.")
        why = ""
    else:
        verdict = (f"**This run does not show it:** without the scaling run {ns} ends at **{b['val_loss']:.3f}**, "
                   f"run {s} at **{a['val_loss']:.3f}** — " + (
                       "*lower*, by more than the noise." if o < 0 else "within the noise of each other, so this run "
                       "cannot tell them apart."))
        sat, sat0 = probes.get(ns, {}).get("attn_saturated"), probes.get(s, {}).get("attn_saturated")
        if sat is not None and sat0 is not None and sat > sat0 + 0.1:
            why = (f" **Why they can disagree here:** the saturation is there ({sat:.0%} of the rows vs {sat0:.0%}), "
                   "but it did not cost loss in this run: the residual connection carries the gradient around a "
                   "saturated softmax, and a character model's heads often want near one-hot attention anyway (the "
                   "previous character, the start of a word). The cost shows when saturation freezes heads before "
                   "they have learned: wider heads (larger d_k), larger learning rates, longer training.")
        else:
            why = (" **Why they can disagree here:** the weights start small (standard deviation 0.02), so the "
                   f"scores stay far from the saturating range even ×{math.sqrt(dk):.1f}"
                   + (f" (here {sat:.0%} of the rows saturated, vs {sat0:.0%} with the scaling)"
                      if sat is not None and sat0 is not None else "")
                   + "; removing the scale then acts mostly as a larger learning rate for the attention scores, "
                   "which can *help* a short run. Saturation bites when the scores grow large: wider heads, longer "
                   "training, larger weights.")
        why += " One seed and a few hundred steps decide little: rerun with another seed or more steps."
    return [f"* **1/√d_k.** {verdict}{meas} {theory}{why}"]


def explain_dropout(results, cfgs, probes, noise, unit) -> list:
    ks = list(cfgs)[:2]
    if drops_of(cfgs[ks[0]]) == drops_of(cfgs[ks[1]]):
        return []
    hi, lo = sorted(ks, key=lambda k: -sum(drops_of(cfgs[k])))
    rh, rl = results[hi], results[lo]
    rates = lambda k: "/".join(f"{d:g}" for d in drops_of(cfgs[k]))  # noqa: E731
    out = [f"* **Dropout** (embedding / attention / residual): run {hi} trains with {rates(hi)}, run {lo} with "
           f"{rates(lo)}. **Theory:** dropout zeroes a random share of the activations at every training step, so "
           "the model cannot rely on any single path; it costs training fit (the batch loss is measured with dropout "
           "on) and buys a smaller gap between training and held-out text. It improves the validation loss only "
           "once a model overfits."]
    gh, gl = _gap(rh), _gap(rl)
    if gh is None or gl is None:
        return out
    over = gl > noise
    passes = ""
    fit_hi = outcome(hi, rh["train_eval_loss"], lo, rl["train_eval_loss"], noise)
    o_val = outcome(hi, rh["val_loss"], lo, rl["val_loss"], noise)
    out.append(f"* **This run:** the gap between validation and the training windows is **{gh:+.3f}** with more "
               f"dropout (run {hi}) and **{gl:+.3f}** with less (run {lo}); validation loss {rh['val_loss']:.3f} vs "
               f"{rl['val_loss']:.3f}, training-window loss {rh['train_eval_loss']:.3f} vs "
               f"{rl['train_eval_loss']:.3f}.")
    if over:
        if gh < gl - noise / 2:
            verdict = f"run {lo} overfits (gap {gl:+.3f}) and dropout narrowed the gap, as theory says"
        else:
            verdict = f"run {lo} overfits (gap {gl:+.3f}) but dropout did not narrow the gap here"
        verdict += (" — and it paid off on held-out text" if o_val < 0 else
                    " — but the validation loss is not better for it")
    else:
        why_not = (f"run {lo}'s gap {gl:+.3f} is within the noise {noise:.3f}" if gl >= -noise else
                   f"run {lo}'s held-out loss is even lower than on its training windows, gap {gl:+.3f}: the held-out "
                   "end of this text is easier than its training part")
        verdict = (f"neither run overfits yet ({why_not}), so there is nothing for dropout to cure"
                   + (f": it only slowed learning (run {hi}'s losses are higher)" if fit_hi > 0 or o_val > 0 else
                      "; its cost is within the noise too"))
        passes = (" Dropout pays off when a model is large for its data: more steps, a bigger model, or a "
                  "shorter text.")
    out.append(f"* **So:** {verdict}.{passes}")
    return out


def explain_positions(results, cfgs, probes, noise, unit) -> list:
    pos = {k: cfgs[k].pos_encoding for k in results}
    if len(set(pos.values())) < 2 or not all(cfgs[k].causal for k in results):
        return []
    (ka, ra), (kb, rb) = sorted(results.items(), key=lambda kv: kv[1]["val_loss"])
    o = outcome(ka, ra["val_loss"], kb, rb["val_loss"], noise)
    out = [f"* **Position encodings:** run {ka} ({POS_LABELS[pos[ka]]}) ends at a validation loss of"
           f" **{ra['val_loss']:.3f}**, run {kb} ({POS_LABELS[pos[kb]]}) at **{rb['val_loss']:.3f}** (a difference"
           f" of {rb['val_loss'] - ra['val_loss']:.3f} nats/token, "
           + ("more than the noise)." if o else "within the noise: this run cannot rank them).")]
    if "none" in pos.values():
        none = next(k for k in results if pos[k] == "none")
        other = next(k for k in results if k != none)
        worse = outcome(none, results[none]["val_loss"], other, results[other]["val_loss"], noise) > 0
        out.append(
            "* **Theory:** a model with **no positional encoding** still learns something about order — the causal "
            "mask lets position t attend to exactly t + 1 tokens, so attention can count — but it has to work harder"
            " for the same information. "
            + (f"**This run agrees:** run {none} ends worse than run {other}." if worse else
               f"**This run does not show a cost:** run {none} is not worse than run {other} beyond the noise — at "
               "this context length and step count, counting through the mask is enough for a character model; the "
               "cost grows with longer contexts."))
    if "rope" in pos.values():
        out.append(
            "* **RoPE** adds no parameters: it turns q and k by the position, so every attention score depends"
            " only on the distance between the two tokens, in every layer.")
    return out
