"""Alignment tabs ("Beyond pretraining"): DPO on preference pairs, and a toy RLHF pipeline (SFT, reward model,
PPO), both trained live with curves that update and an explanation that reads the run's numbers.

DPO trains a per-session copy of the chosen model (tinygpt.beyond.dpo.train_dpo); two values of beta can run side
by side. RLHF trains its own small character model (tinygpt.beyond.rlhf); "Re-run PPO only" reuses the
session's SFT model and reward model with another KL coefficient, which is how reward hacking is shown.
Both are long jobs, run by the room's run hub (tabs/kit/runs.py): budgeted before they start (tinygpt.budget), shared
by everyone who starts the same settings (one computation, followed by all), with a Stop button.

    dpo.py   DPO: the pairs, the runs, curves, samples and Explain (on_dpo), its command line
    rlhf.py  RLHF: the three stages, "Re-run PPO only" (on_rlhf, on_rlhf_ppo), its command line
    here     the two tabs' layout and wiring (build)
"""
from __future__ import annotations

from functools import partial

import gradio as gr

from tinygpt.beyond import dpo as D
from tinygpt.beyond import rlhf as R
from tinygpt.defaults import RLHF

from ..kit.common import model_picker
from ..kit.registry import register
from ..kit.sessions import SessionStore
from ..kit.stream import run_controls
from .dpo import (COLORS, DPO_DEFAULTS, DPO_STOP, SAMPLE_T, SAMPLE_TOP_K, SYNTHETIC, TRAINABLE, UPLOAD, dpo_command,
                  dpo_explain, dpo_figure, dpo_jobs, on_dpo)
# RC, the RLHF pipeline's model and data, is the package's: rlhf.tab_config reads it here at each run
from .rlhf import (RC, RLHF_SECONDS, RLHF_STOP, STAGE_NAMES, check_rlhf, on_rlhf, on_rlhf_ppo, ppo_job, rlhf_command,
                   rlhf_explain, rlhf_figure, rlhf_job, rlhf_samples_html, rlhf_stopped, rlhf_stream, stage_progress,
                   stage_status, tab_config)

# every public name of the one-module tab it was, still `tabs.alignment.<name>`
__all__ = ["build", "BUDGET_NOTE",
           "COLORS", "DPO_DEFAULTS", "DPO_STOP", "SAMPLE_T", "SAMPLE_TOP_K", "SYNTHETIC", "TRAINABLE", "UPLOAD",
           "dpo_command", "dpo_explain", "dpo_figure", "dpo_jobs", "on_dpo",
           "RC", "RLHF_SECONDS", "RLHF_STOP", "STAGE_NAMES", "check_rlhf", "on_rlhf", "on_rlhf_ppo", "ppo_job",
           "rlhf_command", "rlhf_explain", "rlhf_figure", "rlhf_job", "rlhf_samples_html", "rlhf_stopped",
           "rlhf_stream", "stage_progress", "stage_status", "tab_config"]

BUDGET_NOTE = ("Every run is budgeted before it starts: one that would need more memory or time than a run may take on "
               "this server is refused, with both figures.")


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
