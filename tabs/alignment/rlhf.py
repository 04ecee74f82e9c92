"""The RLHF tab's work: a toy pipeline on its own small character model (tinygpt.beyond.rlhf: SFT, a reward
model, PPO against it with a KL penalty) trained through the room's run hub, its progress weighted across stages of
unequal speed, the curves, the samples and an explanation that reads the run's numbers; "Re-run PPO only" (on_rlhf_ppo)
reuses the session's SFT model and reward model with another KL coefficient, which is how reward hacking is shown.
And the tab's command line.

The layout and its wiring are in __init__.py.
"""
from __future__ import annotations

import html
import sys
from dataclasses import asdict, replace

import gradio as gr

from tinygpt.beyond import rlhf as R
from tinygpt.budget import estimate_rlhf, estimate_rlhf_ppo

from ..kit.commands import cli
from ..kit.common import UserError, clamp_int, new_figure, parse_float, sample_cards, user_errors
from ..kit.runs import run_key, weights_fingerprint
from ..kit.sessions import SessionStore
from ..kit.stream import Stopper, once, stream

RLHF_STOP = Stopper("rlhf")  # the tab's own Stop: Stop in DPO never ends an RLHF run
RC = R.RLHFConfig()  # the pipeline's model and data; read through the package at each run (tab_config)
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


def tab_config() -> R.RLHFConfig:
    """The package's RC (tabs.alignment.RC, re-exported from here), read at each run: replacing it there, as the
    tests do with a tiny pipeline, reaches the runs."""
    return sys.modules[__package__].RC


def check_rlhf(sft_steps, rm_steps, ppo_steps, kl_coef, seed):
    notes: list = []
    cfg = replace(tab_config(), sft_steps=clamp_int(sft_steps, 10, 2000, "SFT steps", notes),
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
                              waiting=lambda text: outputs(f"{text} {note}"), **hub))


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
    out = yield from rlhf_stream(rlhf_job(cfg), stop, hist, cfg, stages, lambda status: (status, fig(), "", ""),
                                 note, progress, sessions=sessions, request=request, key=key,
                                 estimate=estimate_rlhf(cfg), label="RLHF")
    result = out.get("job") if out else None
    if not result:
        yield f"Stopped before it started. {note}", fig(), "", ""
        return
    m = result["models"]
    stopped = rlhf_stopped(cfg, {stage: result[stage]["steps"] for stage in stages})
    state = {"sft_model": m["sft"], "rm": m["reward_model"], "tok": result["tokenizer"], "cfg": cfg,
             "sft": result["sft"], "reward_model": result["reward_model"], "ppo_runs": [result["ppo"]],
             "hist": hist, "params": result["params"], "key": key, "stopped": stopped}
    sessions.get(request)["rlhf"] = state
    yield once(out, "done", lambda: (  # drawn once for everyone who follows this run
        f"Done{' (stopped early)' if stopped else ''} in {result['seconds']:.0f} s. {note}", fig(),
        rlhf_samples_html(state["ppo_runs"]), rlhf_explain(state)))


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
    # drawn per page (no `once`): the run it is compared with is this session's previous one, not part of the key
    res = (yield from rlhf_stream(ppo_job(state["sft_model"], state["rm"], state["tok"], cfg), stop, hist, cfg,
                                  ("ppo",), lambda status: (status, fig(), rlhf_samples_html([prev]), ""), note,
                                  progress, sessions=sessions, request=request, key=key,
                                  estimate=estimate_rlhf_ppo(cfg), label="RLHF (PPO only)") or {}).get("job")
    if not res:
        yield f"Stopped before it started. {note}", fig(), rlhf_samples_html([prev]), ""
        return
    state["ppo_runs"] = [prev, res]
    state["hist"] = hist
    stopped = " (stopped early)" if rlhf_stopped(cfg, {"ppo": res["steps"]}) else ""
    yield (f"Done{stopped} in {res['seconds']:.0f} s. {note}", fig(), rlhf_samples_html([prev, res]),
           rlhf_explain(state))


def rlhf_command(v: dict) -> str:
    return cli("rlhf", sft_steps=int(v["sft_steps"]), rm_steps=int(v["rm_steps"]), ppo_steps=int(v["ppo_steps"]),
               kl_coef=float(v["kl_coef"]), seed=int(v["seed"]), json=True)
