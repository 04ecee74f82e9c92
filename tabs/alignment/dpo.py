"""The DPO tab's work: preference pairs (synthetic or uploaded) checked, one or two copies of the chosen model
trained with DPO (tinygpt.beyond.dpo.train_dpo; run B is a second beta side by side) through the room's run hub,
the curves, the before/after samples and an explanation that reads the runs' numbers; and the tab's command line.

The layout and its wiring are in __init__.py.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from functools import partial

import gradio as gr

from tinygpt.beyond import dpo as D
from tinygpt.budget import estimate_dpo
from tinygpt.defaults import DPO_TAB
from tinygpt.train import trainable_parameters

from ..kit.commands import cli
from ..kit.common import (
    UserError,
    clamp_int,
    get_model,
    new_figure,
    parse_float,
    sample_cards,
    seeded_sample,
    user_errors,
)
from ..kit.runs import abandoned, run_key
from ..kit.sessions import SessionStore
from ..kit.stream import Stopper, once, stream

COLORS = {"A": "#1c7ed6", "B": "#e8590c"}
DPO_STOP = Stopper("dpo")  # the tab's own Stop: Stop in RLHF never ends a DPO run
SYNTHETIC = "Synthetic pairs (kind vs unkind word)"
UPLOAD = "Upload a JSONL file"
TRAINABLE = {"All weights": "all", "Top 2 blocks": "top:2"}
# The DPO form's start-up values: tinygpt.defaults.DPO_TAB under the form's names.
DPO_DEFAULTS = dict(n_synthetic=DPO_TAB["synthetic"], beta_a=DPO_TAB["beta"], beta_b=DPO_TAB["beta_b"],
                    steps=DPO_TAB["steps"], batch=DPO_TAB["batch_size"], lr=DPO_TAB["lr"], seed=DPO_TAB["seed"],
                    prompt=DPO_TAB["prompt"], sample_len=DPO_TAB["sample_len"],
                    source=SYNTHETIC if DPO_TAB["source"] == "synthetic" else UPLOAD,
                    trainable=next(k for k, v in TRAINABLE.items() if v == DPO_TAB["trainable"]))
SAMPLE_T, SAMPLE_TOP_K = 0.8, 50


def dpo_figure(hist: dict, betas: dict):
    """2 x 2: held-out loss (ln 2 marked), implicit rewards chosen vs rejected, margin, accuracy."""
    fig = new_figure(10, 6.4)
    axes = [fig.add_subplot(2, 2, i) for i in range(1, 5)]
    for name, h in hist.items():
        if not h:
            continue
        c, lab = COLORS[name], f"{name}: β={betas[name]:g}"
        ev = [e for e in h if e["val"] is not None]
        steps = [e["step"] for e in ev]
        axes[0].plot([e["step"] for e in h], [e["loss"] for e in h], color=c, lw=.7, alpha=.4)
        axes[0].plot(steps, [e["val"]["loss"] for e in ev], "o-", color=c, ms=3, label=lab)
        axes[1].plot(steps, [e["val"]["chosen_reward"] for e in ev], "o-", color=c, ms=3, label=f"{lab} chosen")
        axes[1].plot(steps, [e["val"]["rejected_reward"] for e in ev], "s--", color=c, ms=3, label=f"{lab} rejected")
        axes[2].plot(steps, [e["val"]["reward_margin"] for e in ev], "o-", color=c, ms=3, label=lab)
        axes[3].plot(steps, [e["val"]["reward_accuracy"] for e in ev], "o-", color=c, ms=3, label=lab)
    axes[0].axhline(D.LN2, color="gray", ls=":", lw=1)
    axes[0].annotate("ln 2 = 0.693 (start)", (1, D.LN2), xycoords=("axes fraction", "data"), fontsize=8,
                     color="gray", va="bottom", ha="right")
    axes[1].axhline(0, color="gray", ls=":", lw=1)
    axes[0].set(title="DPO loss (thin: batch, dots: evaluation pairs)", xlabel="step", ylabel="loss")
    axes[1].set(title="implicit rewards β·log(π/π_ref)", xlabel="step")
    axes[2].set(title="reward margin (chosen − rejected)", xlabel="step")
    axes[3].set(title="reward accuracy (chosen > rejected)", xlabel="step", ylim=(-0.02, 1.02))
    for ax in axes:
        ax.grid(alpha=.3)
        if any(hist.values()):
            ax.legend(fontsize=7)
    return fig


def dpo_explain(results: dict, betas: dict, n_pairs: int, synthetic: bool, leaning: dict) -> str:
    any_r = next(iter(results.values()))
    where = (f"{any_r['held_out']} held-out pairs (not trained on)" if any_r["held_out"]
             else f"the {any_r['train_pairs']} training pairs (too few pairs to hold some out)")
    lines = ["### What happened (numbers from these runs)", "",
             f"{n_pairs} pairs; the curves' dots and the table are measured on {where}.", "",
             "| run | β | loss start → end | reward accuracy | chosen reward | rejected reward | margin | "
             "log-prob gap moved (margin / β) | steps |", "|---|---|---|---|---|---|---|---|---|"]
    for k, r in results.items():
        e = r["end"]
        lines.append(f"| {k} | {betas[k]:g} | {r['start']['loss']:.3f} → {e['loss']:.3f} | "
                     f"{e['reward_accuracy']:.0%} | {e['chosen_reward']:+.3f} | {e['rejected_reward']:+.3f} | "
                     f"{e['reward_margin']:+.3f} | {e['reward_margin'] / betas[k]:+.2f} nats | {r['steps']} |")
    lines.append("")
    a = results["A"]
    s0, e = a["start"], a["end"]
    fell = e["loss"] < s0["loss"] - 1e-3
    lines.append(f"* At step 0 the policy *is* the reference: both implicit rewards are 0, every pair is a tie "
                 f"(accuracy {s0['reward_accuracy']:.0%}) and the loss is −log σ(0) = ln 2 = {s0['loss']:.3f}. "
                 f"After {a['steps']} steps run A's loss is {e['loss']:.3f} and it ranks "
                 f"{e['reward_accuracy']:.0%} of the pairs correctly"
                 + (". " if fell else ": the loss did **not** fall — more steps or a higher learning rate. "))
    c, rj = e["chosen_reward"], e["rejected_reward"]
    if e["reward_margin"] > 0 and rj < 0 and abs(rj) > abs(c):
        lines.append(f"* DPO raised the *gap*, mostly by pushing the rejected responses down (rejected reward "
                     f"{rj:+.3f}, chosen {c:+.3f}): the loss only sees the difference, so both may even fall — a "
                     "well-known DPO behaviour.")
    else:
        lines.append(f"* Relative to the reference, the chosen responses became {'more' if c > 0 else 'less'} likely "
                     f"(reward {c:+.3f}) and the rejected ones {'less' if rj < 0 else 'more'} likely ({rj:+.3f}): "
                     + (f"the gap between them grew by {e['reward_margin']:+.3f}, which is all the loss asks for."
                        if e["reward_margin"] > 0 else
                        f"the gap between them is {e['reward_margin']:+.3f}, so DPO has not learned these pairs "
                        "yet."))
    if "B" in results:
        b = results["B"]
        ga, gb = a["end"]["reward_margin"] / betas["A"], b["end"]["reward_margin"] / betas["B"]
        big, small = ("B", "A") if betas["B"] > betas["A"] else ("A", "B")
        g = {"A": ga, "B": gb}
        if abs(g[big] - g[small]) < 0.1 * max(abs(g[big]), abs(g[small]), 1e-9):
            verdict = ("about the same so far: Adam's steps do not depend on the gradient's scale, so both runs "
                       "start alike; β shows once the loss saturates — the larger β's loss flattens sooner and its "
                       "policy stops drifting. Train longer to see it")
        elif g[big] < g[small]:
            verdict = ("the larger β reached its loss with a smaller change of the model: β sets how far the policy "
                       "may drift from the reference")
        else:
            verdict = "here the larger β moved the model further — the optimiser, not β, limits the drift so far"
        lines.append(f"* **Effect of β.** The loss reads β × (log-prob gap), so β={betas[big]:g} needs a smaller gap "
                     f"than β={betas[small]:g} for the same loss. Run {big} moved the gap by {g[big]:+.2f} nats, "
                     f"run {small} by {g[small]:+.2f}: {verdict}.")
    if synthetic and leaning:
        lines.append("* **Before vs after, measured.** Probability that the next token starts a kind adjective vs an "
                     "unkind one after the sample prompt: "
                     + "; ".join(f"{name}: kind {v[0]:.1%}, unkind {v[1]:.1%}" for name, v in leaning.items()) + ".")
    return "\n".join(lines)


def dpo_jobs(base, tok, pairs, cfgs: dict, prompt: str, synthetic: bool) -> dict:
    """DPO's jobs for the hub, one per beta: {run: fn(callback, should_stop)}. Each trains a copy of the frozen base
    (tinygpt.beyond.dpo.train_dpo scores the pairs with the reference first), then samples the policy and, for the
    synthetic pairs, measures how likely a kind vs an unkind adjective comes next -> {result (train_dpo's, without
    the policy: the page keeps no model), after, leaning, seconds}; run A also samples the reference first (its
    first events carry it) -> before, leaning_before. A run nobody follows any more returns after training."""
    def lean(model):
        return (D.next_word_probability(model, tok, prompt, D.KIND),
                D.next_word_probability(model, tok, prompt, D.UNKIND)) if synthetic else None

    def job(k, callback, should_stop):
        t0, c, out = time.perf_counter(), cfgs[k], {}
        if k == "A":
            callback({"phase": "Sampling from the reference model"})
            out["before"] = seeded_sample(base, tok, prompt, c.seed, DPO_DEFAULTS["sample_len"], SAMPLE_T,
                                          SAMPLE_TOP_K)
            callback({"before": out["before"]})
        callback({"phase": f"Scoring {len(pairs)} pairs with the reference model"})
        res = D.train_dpo(base, tok, pairs, c, callback, should_stop)
        if abandoned(should_stop):
            return {"abandoned": True}
        policy = res.pop("policy")
        out.update(result=res, after=seeded_sample(policy, tok, prompt, c.seed, DPO_DEFAULTS["sample_len"], SAMPLE_T,
                                                   SAMPLE_TOP_K), leaning=lean(policy))
        if k == "A":
            out["leaning_before"] = lean(base)
        out["seconds"] = time.perf_counter() - t0
        return out
    return {k: partial(job, k) for k in cfgs}


@user_errors
def on_dpo(models, sessions: SessionStore, model_name, source, n_synthetic, file, beta_a, beta_b, steps, batch, lr,
           trainable, prompt, seed, request: gr.Request = None, progress=gr.Progress()):
    """Stream (status, curves, before/after samples HTML, explanation) while DPO trains one or two copies.

    Keyed by the runs' settings, the prompt, the base model's weights and the pairs (a student who starts the same
    follows the one computation) and budgeted before it starts (tinygpt.budget.estimate_dpo)."""
    base, tok = get_model(models, model_name)
    notes: list = []
    n_syn = clamp_int(n_synthetic, 4, 2000, "Synthetic pairs", notes)
    steps = clamp_int(steps, 1, 500, "Steps", notes)
    batch = clamp_int(batch, 1, 64, "Pairs per step", notes)
    seed = clamp_int(seed, 0, 2**31 - 1, "Seed", notes)
    lr = parse_float(lr, "Learning rate", 1e-7, 1.0)
    betas = {"A": parse_float(beta_a, "β (run A)", 0.0, 100.0)}
    if betas["A"] <= 0:
        raise UserError("β must be above 0: it sets how far the policy may move from the reference.")
    if beta_b not in (None, "") and parse_float(beta_b, "β (run B)", 0.0, 100.0) > 0:
        betas["B"] = float(beta_b)
    spec = TRAINABLE.get(trainable, trainable)
    trainable_parameters(base, spec)  # raises a plain ValueError for a bad choice
    if source == UPLOAD:
        if file is None:
            raise UserError('Upload a .jsonl file (one {"prompt", "chosen", "rejected"} object per line), or use the '
                            "synthetic pairs.")
        pairs = D.read_pairs(getattr(file, "name", file))
    else:
        pairs = D.synthetic_pairs(n_syn, seed)
    if len(pairs) < 2:
        raise UserError("DPO needs at least 2 pairs.")
    tokens = max(len(tok.encode(p.prompt)) + max(len(tok.encode(p.chosen)), len(tok.encode(p.rejected)))
                 for p in pairs[:200])
    prompt = prompt if isinstance(prompt, str) and prompt.strip() else pairs[0].prompt
    cfgs = {k: D.DPOConfig(steps=steps, batch_size=batch, lr=lr, beta=b, seed=seed, trainable=spec,
                           eval_interval=max(1, steps // 10)) for k, b in betas.items()}
    synthetic = source != UPLOAD
    key = run_key("dpo", {"runs": {k: asdict(c) for k, c in cfgs.items()}, "prompt": prompt, "synthetic": synthetic,
                          "sample_len": DPO_DEFAULTS["sample_len"], "sample_t": SAMPLE_T, "sample_top_k": SAMPLE_TOP_K},
                  model=base, text=json.dumps([[p.prompt, p.chosen, p.rejected] for p in pairs]))
    estimate = estimate_dpo(base.config, spec, steps, batch, seq_len=tokens, n_pairs=len(pairs), runs=len(cfgs),
                            eval_interval=cfgs["A"].eval_interval)
    stop = DPO_STOP.fresh(sessions, request)
    hist = {k: [] for k in cfgs}
    seen = {"phase": "Starting", "before": None}
    titles = ["Before (reference)"] + [f"After DPO, β={b:g}" for b in betas.values()]
    note = " ".join(notes)

    def cards():
        return sample_cards(prompt, [seen["before"]] + [None] * len(betas), titles)

    def record(name, ev):
        if "step" in ev:
            hist[name].append(ev)
        else:
            seen.update(ev)

    def view(clock):
        if not any(hist.values()):
            return f"{seen['phase']}… {note}", dpo_figure(hist, betas), cards(), ""
        eta = clock.tick(min((h[-1]["step"] if h else 0) for h in hist.values()), steps, "DPO")
        status = " · ".join(f"{k} (β={betas[k]:g}): step {h[-1]['step']} loss {h[-1]['loss']:.3f}"
                            for k, h in hist.items() if h)
        return f"{status} · {eta}. {note}", dpo_figure(hist, betas), cards(), ""

    def waiting(text):
        return f"{text} {note}", dpo_figure(hist, betas), cards(), ""

    out = yield from stream(dpo_jobs(base, tok, pairs, cfgs, prompt, synthetic), stop, record, view, progress,
                            sessions=sessions, request=request, key=key, estimate=estimate, label="DPO",
                            waiting=waiting)
    if not out or any(r.get("abandoned") for r in out.values()):
        yield f"Stopped before it started. {note}", dpo_figure(hist, betas), "", ""
        return
    results = {k: out[k]["result"] for k in cfgs}
    after = [out[k]["after"] for k in cfgs]
    leaning = {}
    if synthetic:
        leaning["before"] = out["A"]["leaning_before"]
        leaning.update({f"after β={betas[k]:g}": out[k]["leaning"] for k in cfgs})
    stopped = " (stopped early)" if any(r["stopped"] for r in results.values()) else ""
    secs = max(r["seconds"] for r in out.values())
    yield once(out, "done", lambda: (  # drawn once for everyone who follows this run
        f"Done{stopped} in {secs:.0f} s. {note}", dpo_figure(hist, betas),
        sample_cards(prompt, [out["A"]["before"]] + after, titles,
                     status=f"Same prompt and seed (T={SAMPLE_T}, top-k={SAMPLE_TOP_K}): only the weights differ."),
        dpo_explain(results, betas, len(pairs), synthetic, leaning)))


def dpo_command(v: dict) -> str:
    """The DPO runs as `python -m tinygpt dpo` lines (one per beta; the tab's second run is β of run B)."""
    pairs = dict(synthetic=int(v["synthetic"])) if v["source"] == SYNTHETIC else dict(pairs="your-pairs.jsonl")
    betas = [b for b in (v["beta_a"], v["beta_b"]) if b not in (None, "") and float(b) > 0]
    return "\n".join(cli("dpo", model=v["model"], **pairs, beta=float(b), steps=int(v["steps"]),
                          batch_size=int(v["batch_size"]), lr=float(v["lr"]),
                          trainable=TRAINABLE.get(v["trainable"], v["trainable"]), seed=int(v["seed"]),
                          out=f"runs/dpo-beta{float(b):g}", json=True) for b in betas) or None
