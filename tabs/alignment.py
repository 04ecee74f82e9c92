"""Alignment tabs ("Beyond pretraining"): DPO on preference pairs, and a toy RLHF pipeline (SFT, reward model,
PPO), both trained live with curves that update and an explanation that reads the run's numbers.

DPO trains a per-session copy of the chosen model (tinygpt.beyond.dpo.train_dpo); two values of beta can run side
by side. RLHF trains its own small character model (tinygpt.beyond.rlhf); "Re-run PPO only" reuses the
session's SFT model and reward model with another KL coefficient, which is how reward hacking is shown.
Both are long jobs, run by the room's run hub (tabs/kit/runs.py): budgeted before they start (tinygpt.budget), shared
by everyone who starts the same settings (one computation, followed by all), with a Stop button.
"""
from __future__ import annotations

import html
import json
import time
from dataclasses import asdict, replace
from functools import partial

import gradio as gr

from tinygpt.beyond import dpo as D
from tinygpt.beyond import rlhf as R
from tinygpt.budget import estimate_dpo, estimate_rlhf, estimate_rlhf_ppo
from tinygpt.defaults import DPO_TAB, RLHF
from tinygpt.train import trainable_parameters

from .kit.commands import cli
from .kit.common import (
    UserError,
    clamp_int,
    get_model,
    model_picker,
    new_figure,
    parse_float,
    sample_cards,
    seeded_sample,
    user_errors,
)
from .kit.registry import register
from .kit.runs import abandoned, run_key, weights_fingerprint
from .kit.sessions import SessionStore
from .kit.stream import Stopper, run_controls, stream

COLORS = {"A": "#1c7ed6", "B": "#e8590c"}
DPO_STOP, RLHF_STOP = Stopper("dpo"), Stopper("rlhf")  # two tabs: Stop in one never ends the other's run

# ---- DPO ---------------------------------------------------------------------------------------------------
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
BUDGET_NOTE = ("Every run is budgeted before it starts: one that would need more memory or time than a run may take on "
               "this server is refused, with both figures.")


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
    yield (f"Done{stopped} in {secs:.0f} s. {note}", dpo_figure(hist, betas),
           sample_cards(prompt, [out["A"]["before"]] + after, titles,
                        status=f"Same prompt and seed (T={SAMPLE_T}, top-k={SAMPLE_TOP_K}): only the weights differ."),
           dpo_explain(results, betas, len(pairs), synthetic, leaning))


# ---- RLHF --------------------------------------------------------------------------------------------------
RC = R.RLHFConfig()
# Relative cost of a step of each stage (wall seconds per step with the default model on a loaded 2-core machine):
# they weight the stages' progress, so the time left is measured across stages of unequal speed.
RLHF_SECONDS = {"sft": 0.45, "reward_model": 1.1, "ppo": 2.0}


def rlhf_figure(hist: dict, previous: list | None = None, kl_now=None, kl_before=None):
    """2 x 2: SFT loss, reward-model accuracy, PPO reward (reward model and labeller), PPO KL and grammatical %."""
    fig = new_figure(10, 6.4)
    a1, a2, a3, a4 = (fig.add_subplot(2, 2, i) for i in range(1, 5))
    sft = hist.get("sft", [])
    if sft:
        a1.plot([e["step"] for e in sft], [e["train_loss"] for e in sft], lw=.7, alpha=.5, label="train (batch)")
        ev = [e for e in sft if e["val_loss"] is not None]
        a1.plot([e["step"] for e in ev], [e["val_loss"] for e in ev], "o-", ms=3, label="validation")
        a1.legend(fontsize=7)
    a1.set(title="1. SFT: loss (nats per character)", xlabel="step")
    rm = [e for e in hist.get("reward_model", []) if e["step"] > 0]
    if hist.get("reward_model"):
        a2.plot([e["step"] for e in rm], [e["accuracy"] for e in rm], lw=.7, alpha=.5, label="batch")
        ev = [e for e in hist["reward_model"] if e["val_accuracy"] is not None]
        a2.plot([e["step"] for e in ev], [e["val_accuracy"] for e in ev], "o-", ms=3, label="held-out pairs")
        a2.axhline(0.5, color="gray", ls=":", lw=1)
        a2.legend(fontsize=7)
    a2.set(title="2. reward model: accuracy on pairs", xlabel="step", ylim=(0, 1.02))
    a4b = a4.twinx()
    runs = ([(previous, f"KL coef {kl_before:g} (before)", "--", .5)] if previous else []) + \
        [(hist.get("ppo", []), f"KL coef {kl_now:g}" if kl_now is not None else "", "-", 1.0)]
    for h, lab, ls, alpha in runs:
        if not h:
            continue
        st = [e["step"] for e in h]
        a3.plot(st, [e["reward"] for e in h], ls, color="#2f9e44", alpha=alpha, label=f"reward model · {lab}")
        a3.plot(st, [e["gold"] for e in h], ls, color="#845ef7", alpha=alpha, label=f"labeller score · {lab}")
        a4.plot(st, [e["kl"] for e in h], ls, color="#e8590c", alpha=alpha, label=f"KL · {lab}")
        a4b.plot(st, [e["grammatical"] for e in h], ls, color="#495057", alpha=alpha * .7, lw=1,
                 label=f"grammatical · {lab}")
    a3.set(title="3. PPO: reward of each rollout", xlabel="PPO step")
    a4.set(title="3. PPO: KL to the SFT model (nats) and grammatical share", xlabel="PPO step")
    a4b.set_ylim(0, 1.02)
    a4b.set_ylabel("grammatical share")
    if hist.get("ppo") or previous:
        a3.legend(fontsize=7)
        h1, l1 = a4.get_legend_handles_labels()
        h2, l2 = a4b.get_legend_handles_labels()
        a4.legend(h1 + h2, l1 + l2, fontsize=7)
    for ax in (a1, a2, a3, a4):
        ax.grid(alpha=.3)
    return fig


def rlhf_samples_html(ppo_runs: list, n_prompts: int = 3) -> str:
    """For the first evaluation prompts: an SFT sample and each PPO run's sample (same prompt, same seed)."""
    if not ppo_runs:
        return ""
    sft = ppo_runs[-1]["samples"]["sft"]
    per = R.EVAL_PER_PROMPT
    blocks = []
    for i in range(0, min(len(sft), per * n_prompts), per):
        prompt = sft[i][0]
        conts = [sft[i][1].rstrip("\n")]
        titles = [f"SFT · reward {sft[i][2]:+.2f}"]
        for run in ppo_runs:
            p = run["samples"]["ppo"][i]
            conts.append(p[1].rstrip("\n"))
            titles.append(f"PPO (KL coef {run['kl_coef']:g}) · reward {p[2]:+.2f}")
        blocks.append(sample_cards(prompt, conts, titles))
    return "".join(blocks)


def rlhf_explain(state: dict) -> str:
    rm, runs = state["reward_model"], state["ppo_runs"]
    p = runs[-1]
    s, e = p["start"], p["end"]
    lines = ["### What happened (numbers from this run)", "",
             f"**Task.** {html.escape(R.TASK)}", "",
             "| stage | result |", "|---|---|",
             f"| 1. SFT ({state['params']:,} parameters, {state['sft']['steps']} steps) | validation loss "
             f"{state['sft']['val_loss']:.3f} nats/character; {s['grammatical']:.0%} of its samples are grammatical |",
             f"| 2. reward model ({rm['steps']} steps) | {rm['val_accuracy']:.1%} of {rm['val_pairs']} held-out "
             f"pairs ranked as the labeller did (chance: 50%) |"]
    for r in runs:
        lines.append(f"| 3. PPO, KL coef {r['kl_coef']:g} ({r['steps']} steps) | reward {r['start']['reward']:+.2f} → "
                     f"**{r['end']['reward']:+.2f}**, labeller score {r['start']['gold']:+.2f} → "
                     f"**{r['end']['gold']:+.2f}**, KL {r['end']['kl']:.2f} nats, grammatical "
                     f"{r['start']['grammatical']:.0%} → **{r['end']['grammatical']:.0%}** |")
    lines += ["", "Rewards are in reward-model units: the demonstrations score mean 0 and standard deviation 1. The "
              "labeller score (kind minus gloomy words) and grammaticality are what the reward model was meant to "
              "capture; PPO never sees them.", ""]
    up = e["reward"] > s["reward"] + 0.2
    if s["grammatical"] < 0.5:
        lines.append(f"* Only {s['grammatical']:.0%} of the SFT model's sentences are grammatical: it has not learned "
                     "the demonstrations yet, so the reward model is judging text it never saw from the start. Train "
                     f"SFT longer (the default is {R.RLHFConfig().sft_steps} steps) before reading PPO's effect.")
    elif up and e["gold"] > s["gold"] + 0.2 and e["grammatical"] >= 0.6:
        held = (f"the KL penalty (coefficient {p['kl_coef']:g}) held the policy near the SFT model ({e['kl']:.2f} nats "
                "per sentence), where the reward model is reliable. Try *Re-run PPO only* with a KL coefficient of 0 "
                "to see what happens without it." if p["kl_coef"] > 0 else
                f"even without a KL penalty the policy stayed {e['kl']:.2f} nats per sentence from the SFT model — "
                f"PPO's clipped steps move it slowly, and {p['steps']} steps were not enough to drift into text the "
                "reward model misjudges. Theory says it will with more steps: try more PPO steps.")
        lines.append(f"* **PPO worked.** The reward rose and so did the labeller's score ({s['gold']:+.2f} → "
                     f"{e['gold']:+.2f}) while {e['grammatical']:.0%} of the sentences stay grammatical: {held}")
    elif up and (e["gold"] <= s["gold"] + 0.2 or e["grammatical"] < s["grammatical"] - 0.3):
        follow = (f"but the labeller's score did not follow ({s['gold']:+.2f} → {e['gold']:+.2f})"
                  if e["gold"] <= s["gold"] + 0.2 else
                  f"and the kind-word count rose too ({s['gold']:+.2f} → {e['gold']:+.2f}), but only "
                  f"{e['grammatical']:.0%} of the sentences are still grammatical (SFT: {s['grammatical']:.0%})")
        lines.append(f"* **Reward hacking.** The reward model's score rose ({s['reward']:+.2f} → {e['reward']:+.2f}) "
                     f"{follow}; responses average {e['length']:.0f} characters (SFT: {s['length']:.0f}). With a KL "
                     f"coefficient of {p['kl_coef']:g} the policy drifted {e['kl']:.1f} nats from the SFT model, into "
                     "text the reward model never saw during training and scores wrongly. This is why RLHF keeps a "
                     "KL penalty.")
    elif up:
        lines.append(f"* The reward rose ({s['reward']:+.2f} → {e['reward']:+.2f}), the labeller's score by "
                     f"{e['gold'] - s['gold']:+.2f}, with {e['grammatical']:.0%} grammatical sentences.")
    else:
        lines.append(f"* The reward barely moved ({s['reward']:+.2f} → {e['reward']:+.2f}): more PPO steps, a smaller "
                     "KL coefficient, or a better reward model would help.")
    return "\n".join(lines)


def check_rlhf(sft_steps, rm_steps, ppo_steps, kl_coef, seed):
    notes: list = []
    cfg = replace(RC, sft_steps=clamp_int(sft_steps, 10, 2000, "SFT steps", notes),
                  rm_steps=clamp_int(rm_steps, 5, 500, "Reward-model steps", notes),
                  ppo_steps=clamp_int(ppo_steps, 1, 300, "PPO steps", notes),
                  kl_coef=parse_float(kl_coef, "KL coefficient", 0.0, 10.0),
                  seed=clamp_int(seed, 0, 2**31 - 1, "Seed", notes))
    return cfg, notes


STAGE_NAMES = {"sft": "1/3 SFT", "reward_model": "2/3 reward model", "ppo": "3/3 PPO"}


def stage_status(ev) -> str:
    name = STAGE_NAMES[ev["stage"]]
    if ev["stage"] == "sft":
        return f"Stage {name}: step {ev['step']}/{ev['steps_total']}, loss {ev['train_loss']:.3f}"
    if ev["stage"] == "reward_model":
        acc = "" if ev["accuracy"] is None else f", batch accuracy {ev['accuracy']:.0%}"
        return f"Stage {name}: step {ev['step']}/{ev['steps_total']}{acc}"
    return (f"Stage {name}: step {ev['step']}/{ev['steps_total']}, reward {ev['reward']:+.2f}, KL {ev['kl']:.2f}, "
            f"“{ev['sample'].strip()}”")


def stage_progress(cfg, stages) -> tuple:
    """(before, total, progress_of): each stage's steps weighted by its cost per step (RLHF_SECONDS); before[stage]
    = the weighted work of the stages before it; progress_of(name, event) = the fraction done (the hub's)."""
    steps = {"sft": cfg.sft_steps, "reward_model": cfg.rm_steps, "ppo": cfg.ppo_steps}
    before = dict(zip(stages, [sum(RLHF_SECONDS[s] * steps[s] for s in stages[:i]) for i in range(len(stages))]))
    total = sum(RLHF_SECONDS[s] * steps[s] for s in stages)

    def progress_of(_, ev):
        if not isinstance(ev, dict) or ev.get("stage") not in before:
            return None
        return min(1.0, (before[ev["stage"]] + RLHF_SECONDS[ev["stage"]] * ev["step"]) / max(total, 1e-9))
    return before, total, progress_of


def rlhf_stream(job, stop, hist, cfg, stages, outputs, note, progress, **hub):
    """Run one RLHF job (`stages` of it, in order) through the kit's stream and the room's hub (`hub`: sessions,
    request, key, estimate, label), appending events to hist[stage]; yields outputs(status) while it runs or waits
    and returns the job's result ({} when stopped before it started). Progress counts each stage's steps weighted by
    its cost per step (RLHF_SECONDS), so the time left is measured across stages of unequal speed."""
    before, total, progress_of = stage_progress(cfg, stages)
    last: list = []

    def record(_, ev):
        hist.setdefault(ev["stage"], []).append(ev)
        last[:] = [ev]

    def view(clock):
        if not last:
            return outputs(f"Starting… {note}")
        ev = last[0]
        done = before[ev["stage"]] + RLHF_SECONDS[ev["stage"]] * ev["step"]
        eta = clock.tick(done, total, STAGE_NAMES[ev["stage"]], counted=False)
        return outputs(f"{stage_status(ev)} · {clock.elapsed:.0f} s, {eta}. {note}")

    return (yield from stream({"job": job}, stop, record, view, progress, progress_of=progress_of,
                              waiting=lambda text: outputs(f"{text} {note}"), **hub)).get("job", {})


def rlhf_job(cfg):
    """The whole pipeline as the hub's job -> tinygpt.beyond.rlhf.run_rlhf's result without the PPO policy (the
    page keeps the SFT and reward models, shared read-only by everyone who follows the run)."""
    def job(callback, should_stop):
        res = R.run_rlhf(cfg, callback, should_stop)
        return {**res, "models": {k: m for k, m in res["models"].items() if k != "policy"}}
    return job


def ppo_job(sft, rm, tok, cfg):
    """PPO again from a finished pipeline's SFT and reward models (read only) -> run_ppo's result, no policy."""
    return lambda callback, should_stop: R.run_ppo(sft, rm, tok, cfg, callback, should_stop)[1]


def rlhf_stopped(cfg, done: dict) -> bool:
    """Did a stage end before its steps (Stop)? done: {stage: steps done}."""
    planned = {"sft": cfg.sft_steps, "reward_model": cfg.rm_steps, "ppo": cfg.ppo_steps}
    return any(n < planned[stage] for stage, n in done.items())


@user_errors
def on_rlhf(sessions: SessionStore, sft_steps, rm_steps, ppo_steps, kl_coef, seed, request: gr.Request = None,
            progress=gr.Progress()):
    """Stream (status, curves, samples HTML, explanation) through the three stages. Keyed by the whole pipeline's
    settings (a student who starts the same follows the one computation), budgeted by tinygpt.budget.estimate_rlhf."""
    cfg, notes = check_rlhf(sft_steps, rm_steps, ppo_steps, kl_coef, seed)
    key = run_key("rlhf", asdict(cfg))
    stop = RLHF_STOP.fresh(sessions, request)
    hist: dict = {}
    note = " ".join(notes)
    fig = lambda: rlhf_figure(hist, kl_now=cfg.kl_coef)  # noqa: E731
    stages = ("sft", "reward_model", "ppo")
    result = yield from rlhf_stream(rlhf_job(cfg), stop, hist, cfg, stages, lambda status: (status, fig(), "", ""),
                                    note, progress, sessions=sessions, request=request, key=key,
                                    estimate=estimate_rlhf(cfg), label="RLHF")
    if not result:
        yield f"Stopped before it started. {note}", fig(), "", ""
        return
    m = result["models"]
    stopped = rlhf_stopped(cfg, {stage: result[stage]["steps"] for stage in stages})
    state = {"sft_model": m["sft"], "rm": m["reward_model"], "tok": result["tokenizer"], "cfg": cfg,
             "sft": result["sft"], "reward_model": result["reward_model"], "ppo_runs": [result["ppo"]],
             "hist": hist, "params": result["params"], "key": key, "stopped": stopped}
    sessions.get(request)["rlhf"] = state
    yield (f"Done{' (stopped early)' if stopped else ''} in {result['seconds']:.0f} s. {note}", fig(),
           rlhf_samples_html(state["ppo_runs"]), rlhf_explain(state))


@user_errors
def on_rlhf_ppo(sessions: SessionStore, ppo_steps, kl_coef, seed, request: gr.Request = None,
                progress=gr.Progress()):
    """PPO again from the session's SFT model and reward model, with another KL coefficient (reward hacking).
    Keyed by the PPO settings and the run it continues from (its key and its two models' weights: a pipeline
    stopped early has other models than the finished one), budgeted by tinygpt.budget.estimate_rlhf_ppo."""
    entry = sessions.get(request)
    state = entry.get("rlhf")
    if not state:
        raise UserError("Run the whole pipeline first: PPO needs this session's SFT model and reward model.")
    cfg, notes = check_rlhf(state["cfg"].sft_steps, state["cfg"].rm_steps, ppo_steps, kl_coef, seed)
    key = run_key("rlhf_ppo", {**asdict(cfg), "from": state["key"], "sft": weights_fingerprint(state["sft_model"]),
                               "reward_model": weights_fingerprint(state["rm"])})
    stop = RLHF_STOP.fresh(sessions, request)
    prev = state["ppo_runs"][-1]
    hist = {k: v for k, v in state["hist"].items() if k != "ppo"}
    note = " ".join(notes)
    fig = lambda: rlhf_figure(hist, prev["history"], cfg.kl_coef, prev["kl_coef"])  # noqa: E731
    res = yield from rlhf_stream(ppo_job(state["sft_model"], state["rm"], state["tok"], cfg), stop, hist, cfg,
                                 ("ppo",), lambda status: (status, fig(), rlhf_samples_html([prev]), ""), note,
                                 progress, sessions=sessions, request=request, key=key,
                                 estimate=estimate_rlhf_ppo(cfg), label="RLHF (PPO only)")
    if not res:
        yield f"Stopped before it started. {note}", fig(), rlhf_samples_html([prev]), ""
        return
    state["ppo_runs"] = [prev, res]
    state["hist"] = hist
    stopped = " (stopped early)" if rlhf_stopped(cfg, {"ppo": res["steps"]}) else ""
    yield (f"Done{stopped} in {res['seconds']:.0f} s. {note}", fig(), rlhf_samples_html([prev, res]),
           rlhf_explain(state))


# ---- layout ------------------------------------------------------------------------------------------------
def build(models, sessions: SessionStore, default_model: str = "gpt2"):
    with gr.Tab("DPO", id="dpo"):
        gr.Markdown(
            "**Direct Preference Optimization** (Rafailov et al. 2023) learns from pairs *(prompt, chosen, rejected)* "
            "with no reward model and no RL. A copy of the model (the policy π) is trained; the model itself stays "
            "frozen as the reference π_ref. For each pair, implicit reward r = β·(log π(y|x) − log π_ref(y|x)) "
            "(log-probabilities summed over the response's tokens) and loss = −log σ(r_chosen − r_rejected). "
            "It starts at ln 2 = 0.693.\n\n"
            f"**Synthetic pairs** (exercise 7): {D.SYNTHETIC_RULE}")
        model_dd, _, _, _, _ = model_picker(models, default_model)
        with gr.Row():
            source = gr.Radio([SYNTHETIC, UPLOAD], value=DPO_DEFAULTS["source"], label="Preference pairs")
            n_syn = gr.Slider(4, 1000, DPO_DEFAULTS["n_synthetic"], step=1, label="Synthetic pairs",
                              elem_id="dpo-pairs")
            upload = gr.File(label='JSONL: {"prompt", "chosen", "rejected"} per line', file_types=[".jsonl", ".json",
                                                                                                    ".txt"],
                             type="filepath")
        with gr.Row():
            beta_a = gr.Number(DPO_DEFAULTS["beta_a"], label="β, run A", elem_id="dpo-beta-a")
            beta_b = gr.Number(DPO_DEFAULTS["beta_b"], label="β, run B (0 = no second run)", elem_id="dpo-beta-b")
            steps = gr.Slider(1, 300, DPO_DEFAULTS["steps"], step=1, label="Steps", elem_id="dpo-steps")
            batch = gr.Slider(1, 32, DPO_DEFAULTS["batch"], step=1, label="Pairs per step")
        with gr.Row():
            lr = gr.Number(DPO_DEFAULTS["lr"], label="Learning rate")
            trainable = gr.Radio(list(TRAINABLE), value=DPO_DEFAULTS["trainable"], label="Which weights to train")
            seed = gr.Number(DPO_DEFAULTS["seed"], label="Seed", precision=0)
        prompt = gr.Textbox(DPO_DEFAULTS["prompt"], label="Prompt for the before/after samples", lines=2)
        gr.Markdown(f"{BUDGET_NOTE} The numbers on the curves are measured on held-out pairs (10%) when there are at "
                    "least 20 pairs.")
        go, status, plot = run_controls(DPO_STOP, sessions, "Train with DPO", "dpo", "DPO curves")
        samples = gr.HTML(elem_id="dpo-samples")
        explain = gr.Markdown(elem_id="dpo-explain")
        go.click(partial(on_dpo, models, sessions),
                 [model_dd, source, n_syn, upload, beta_a, beta_b, steps, batch, lr, trainable, prompt, seed],
                 [status, plot, samples, explain], api_name="dpo", concurrency_id="dpo", concurrency_limit=None)
        register("dpo", fields={
            "model": model_dd, "source": source, "synthetic": n_syn, "beta_a": beta_a, "beta_b": beta_b,
            "steps": steps, "batch_size": batch, "lr": lr, "trainable": trainable, "prompt": prompt, "seed": seed},
            command=dpo_command, run=go)

    with gr.Tab("RLHF", id="rlhf"):
        gr.Markdown(
            "**A toy RLHF pipeline** (Ouyang et al. 2022), trained live on a character model of"
            f" {R.policy_parameters(RC):,} parameters: "
            "**1. SFT** on demonstration sentences, **2. a reward model** (the transformer with a scalar head on the "
            "last token) trained on labelled pairs with the Bradley–Terry loss, **3. PPO** (Schulman et al. 2017) "
            "against the reward model, with a KL penalty that keeps the policy near the SFT model.\n\n"
            f"**The task.** {R.TASK}\n\n"
            "Toy scale, honestly: the \"labeller\" is a rule and the SFT model starts from random weights (there is no "
            "pretraining), but every stage is the real algorithm. Set the KL coefficient to 0 and PPO finds text the "
            "reward model likes and no one would write: **reward hacking**.")
        with gr.Row():
            sft_steps = gr.Slider(10, 1000, RLHF["sft_steps"], step=10, label="SFT steps", elem_id="rlhf-sft-steps")
            rm_steps = gr.Slider(5, 300, RLHF["rm_steps"], step=5, label="Reward-model steps", elem_id="rlhf-rm-steps")
            ppo_steps = gr.Slider(1, 200, RLHF["ppo_steps"], step=1, label="PPO steps", elem_id="rlhf-ppo-steps")
        with gr.Row():
            kl = gr.Number(RLHF["kl_coef"], label="KL coefficient (0 = no penalty)", elem_id="rlhf-kl")
            rseed = gr.Number(RLHF["seed"], label="Seed", precision=0)
        gr.Markdown(f"{BUDGET_NOTE} The default takes a few minutes.")
        run, again, rstatus, rplot = run_controls(RLHF_STOP, sessions, "Run RLHF (SFT → reward model → PPO)", "rlhf",
                                                  "RLHF curves", "Re-run PPO only (new KL coefficient)")
        rsamples = gr.HTML(elem_id="rlhf-samples")
        rexplain = gr.Markdown(elem_id="rlhf-explain")
        run.click(partial(on_rlhf, sessions), [sft_steps, rm_steps, ppo_steps, kl, rseed],
                  [rstatus, rplot, rsamples, rexplain], api_name="rlhf", concurrency_id="rlhf",
                  concurrency_limit=None)
        again.click(partial(on_rlhf_ppo, sessions), [ppo_steps, kl, rseed], [rstatus, rplot, rsamples, rexplain],
                    api_name="rlhf_ppo", concurrency_id="rlhf_ppo", concurrency_limit=None)
        register("rlhf", fields={"sft_steps": sft_steps, "rm_steps": rm_steps, "ppo_steps": ppo_steps,
                                       "kl_coef": kl, "seed": rseed}, command=rlhf_command, run=run)


def dpo_command(v: dict) -> str:
    """The DPO runs as `python -m tinygpt dpo` lines (one per beta; the tab's second run is β of run B)."""
    pairs = dict(synthetic=int(v["synthetic"])) if v["source"] == SYNTHETIC else dict(pairs="your-pairs.jsonl")
    betas = [b for b in (v["beta_a"], v["beta_b"]) if b not in (None, "") and float(b) > 0]
    return "\n".join(cli("dpo", model=v["model"], **pairs, beta=float(b), steps=int(v["steps"]),
                               batch_size=int(v["batch_size"]), lr=float(v["lr"]),
                               trainable=TRAINABLE.get(v["trainable"], v["trainable"]), seed=int(v["seed"]),
                               out=f"runs/dpo-beta{float(b):g}", json=True) for b in betas) or None


def rlhf_command(v: dict) -> str:
    return cli("rlhf", sft_steps=int(v["sft_steps"]), rm_steps=int(v["rm_steps"]),
                     ppo_steps=int(v["ppo_steps"]), kl_coef=float(v["kl_coef"]), seed=int(v["seed"]), json=True)

