"""Fine-tune tab: upload an essay, clean and describe it, fine-tune a model on it with a live loss curve,
and compare the same prompt and seed before and after (held-out perplexity, tokens that became likelier).

The base model is shared and never modified: training happens on a copy whose frozen parts share the base's tensors
(tinygpt.finetune.trainable_copy), in a job of the room's run hub (tabs/kit/runs.py): students who start the same
settings on the same text follow one computation, and each keeps the fine-tuned model (read-only) in their session.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from functools import partial

import gradio as gr
import torch

import tinygpt
from tinygpt.budget import estimate_finetune
from tinygpt.data import check_length, describe, first_phrase, prepare_text
from tinygpt.defaults import FINETUNE_TAB
from tinygpt.evaluate import evaluate
from tinygpt.finetune import finetune_config, holdout_split, probability_shifts, trainable_copy
from tinygpt.sampling import encode_prompt
from tinygpt.train import trainable_parameters

from .kit.commands import cli
from .kit.common import (
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
from .kit.runs import abandoned, run_key
from .kit.sessions import SessionStore, session_tmpdir
from .kit.stream import Stopper, once, run_controls, stream

SAMPLE_T, SAMPLE_TOP_K = 0.8, 50  # fixed for before/after so only the weights differ
TRAINABLE = {"Top 2 blocks (fast)": "top:2", "Top 4 blocks": "top:4", "All weights (slow)": "all"}
# The form starts at tinygpt.defaults.FINETUNE_TAB (`python -m tinygpt finetune`'s defaults plus the tab's own),
# with the trainable choice as its radio label.
DEFAULTS = dict(FINETUNE_TAB, trainable=next(k for k, v in TRAINABLE.items() if v == FINETUNE_TAB["trainable"]))
STOP = Stopper("finetune")


@user_errors
def on_prepare(models, model_name, file, text, lossy, drop_boilerplate):
    """Clean + describe: (cleaned text, steps markdown, stats markdown, a prompt taken from the text)."""
    cleaned, steps = prepare_text(file, text, lossy, drop_boilerplate)
    model, tok = get_model(models, model_name)
    ids = tok.encode(cleaned)
    st = describe(cleaned, ids)
    ctx = min(128, model.config.block_size)
    ppl = evaluate(model, torch.tensor(ids), ctx)["perplexity"] if len(ids) > ctx + 1 else float("nan")
    steps_md = "**Cleaning applied:**\n" + "\n".join(f"- {s}" for s in steps)
    stats_md = (f"| characters | words | tokens | distinct tokens | type-token ratio | words / sentence | "
                f"chars / token | base perplexity |\n|---|---|---|---|---|---|---|---|\n"
                f"| {st['characters']:,} | {st['words']:,} | {st['tokens']:,} | {st['distinct_tokens']:,} | "
                f"{st['type_token_ratio']:.2f} | {st['avg_sentence_words']:.1f} | {st['chars_per_token']:.2f} | "
                f"{ppl:,.1f} |\n\nBase perplexity = exp(mean loss) of *{model.info.name}* on this text (windows of "
                f"{ctx} tokens): how surprised the model is before fine-tuning — roughly, it is choosing between "
                f"{ppl:,.0f} equally likely tokens at each step.")
    return cleaned, steps_md, stats_md, first_phrase(cleaned)


def before_after_html(prompt, before, after) -> str:
    return sample_cards(prompt, [before, after], ["Before fine-tuning", "After fine-tuning"])


def loss_figure(history, title="Fine-tuning"):
    fig = new_figure(8, 3.6)
    ax = fig.add_subplot(111)
    if history:
        ax.plot([e["step"] for e in history], [e["train_loss"] for e in history], lw=1, alpha=.7,
                label="train loss (batch)")
        ev = [e for e in history if e["val_loss"] is not None]
        ax.plot([e["step"] for e in ev], [e["val_loss"] for e in ev], "o-", label="held-out loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=.3)
    if history:
        ax.legend()
    return fig


def held_out_verdict(before: dict, after: dict) -> str:
    """One sentence on what fine-tuning did to the held-out part, from its own numbers (evaluate()'s dicts)."""
    b, a = before["perplexity"], after["perplexity"]
    change = a / b - 1 if b > 0 else float("nan")
    if not math.isfinite(change) or abs(change) < 0.01:
        return (f"Held-out perplexity hardly moved ({b:,.1f} → {a:,.1f}): too few steps or too low a learning "
                "rate to change what the model expects.")
    if change < 0:
        return (f"Held-out perplexity **fell** from {b:,.1f} to {a:,.1f} ({-change:.0%} lower): the model now "
                "expects text like yours, including the part it never trained on.")
    return (f"Held-out perplexity **rose** from {b:,.1f} to {a:,.1f} ({change:.0%} higher): on the part it "
            "never trained on, the model got worse — it memorised the training part (overfitting) or the learning "
            "rate was too high. Try fewer steps or a lower learning rate.")


@dataclass
class Settings:
    steps: int
    context: int
    batch_size: int
    lr: float
    seed: int
    max_new_tokens: int


def check_settings(steps, context, batch_size, lr, seed, max_new_tokens, block_size) -> tuple[Settings, list]:
    notes: list = []
    return Settings(steps=clamp_int(steps, 1, 2000, "Steps", notes),
                    context=clamp_int(context, 8, block_size, "Context", notes),
                    batch_size=clamp_int(batch_size, 1, 64, "Batch size", notes),
                    lr=parse_float(lr, "Learning rate", 1e-7, 1.0),
                    seed=clamp_int(seed, 0, 2**31 - 1, "Seed", notes),
                    max_new_tokens=clamp_int(max_new_tokens, 1, 300, "Sample length", notes)), notes


def finetune_job(base, tok, prompt: str, st: Settings, spec: str, ids, train_ids, val_ids):
    """The fine-tune's job for the hub: the before sample and held-out loss of the base (read only), a trainable
    copy trained on the text, the after sample and held-out loss, and the tokens whose probability rose most ->
    {before, after, ppl_before, ppl_after, shifts, result (tinygpt.train's), tuned (the fine-tuned model: shared by
    everyone who follows the run, read-only), seconds}. Its first event carries the before sample; a run nobody
    follows any more returns after training ({abandoned: True})."""
    def job(callback, should_stop):
        t0 = time.perf_counter()
        callback({"phase": "Sampling from the base model"})
        before = seeded_sample(base, tok, prompt, st.seed, st.max_new_tokens, SAMPLE_T, SAMPLE_TOP_K)
        callback({"phase": "Measuring the base model on the held-out part", "before": before})
        ppl_before = evaluate(base, val_ids, st.context)
        tuned = trainable_copy(base, spec)
        cfg = finetune_config(st.steps, st.context, st.batch_size, st.lr, st.seed, spec)
        result = tinygpt.train(tuned, train_ids, val_ids, cfg, callback, should_stop)
        if abandoned(should_stop):
            return {"abandoned": True}
        callback({"phase": "Sampling and scoring the fine-tuned model"})
        tuned.eval()
        after = seeded_sample(tuned, tok, prompt, st.seed, st.max_new_tokens, SAMPLE_T, SAMPLE_TOP_K)
        ppl_after = evaluate(tuned, val_ids, st.context)
        shifts = probability_shifts(base, tuned, tok, ids, st.context)
        return {"before": before, "after": after, "ppl_before": ppl_before, "ppl_after": ppl_after, "shifts": shifts,
                "result": result, "tuned": tuned, "seconds": time.perf_counter() - t0}
    return job


@user_errors
def on_finetune(models, sessions: SessionStore, model_name, file, text, lossy, drop_boilerplate, prompt, seed,
                trainable, steps, context, batch_size, lr, max_new_tokens, request: gr.Request = None,
                progress=gr.Progress()):
    """Stream (status, loss plot, before/after HTML, metrics markdown, probability-shift table).

    Keyed by the settings, the prompt, the base model's weights and the cleaned text (a student who starts the same
    follows the one computation) and budgeted before it starts (tinygpt.budget.estimate_finetune)."""
    cleaned, _ = prepare_text(file, text, lossy, drop_boilerplate, prefer_text=True)
    base, tok = get_model(models, model_name)
    st, notes = check_settings(steps, context, batch_size, lr, seed, max_new_tokens, base.config.block_size)
    spec = TRAINABLE.get(trainable, trainable)
    trainable_parameters(base, spec)  # raises a plain ValueError for a bad choice
    ids = torch.tensor(tok.encode(cleaned), dtype=torch.long)
    check_length(cleaned, 2 * (st.context + 2), len(ids))
    prompt = prompt.strip() if isinstance(prompt, str) and prompt.strip() else first_phrase(cleaned)
    train_ids, val_ids = holdout_split(ids, st.context)
    cfg = finetune_config(st.steps, st.context, st.batch_size, st.lr, st.seed, spec)
    key = run_key("finetune", {**asdict(st), "trainable": spec, "prompt": prompt, "sample_t": SAMPLE_T,
                               "sample_top_k": SAMPLE_TOP_K}, model=base, text=cleaned)
    estimate = estimate_finetune(base.config, spec, st.steps, st.batch_size, st.context, st.max_new_tokens,
                                 text_tokens=len(ids), keep_best=cfg.keep_best,
                                 prompt_tokens=len(encode_prompt(tok, prompt, base.config.block_size)))
    stop = STOP.fresh(sessions, request)
    note = (" ".join(notes) + " ").strip()
    history, seen = [], {"phase": "Starting", "before": None}

    def record(_, ev):
        if "step" in ev:
            history.append(ev)
        else:
            seen.update(ev)

    def view(clock):
        if not history or history[-1]["step"] == st.steps:
            status = f"{seen['phase']}… {note}"
        else:
            e = history[-1]
            eta = clock.tick(e["step"], st.steps, "fine-tuning")
            status = (f"Step {e['step']}/{st.steps} · train loss {e['train_loss']:.3f} · "
                      f"{e['tokens_per_s']:.0f} tokens/s · {eta}. {note}")
        return status, loss_figure(history), before_after_html(prompt, seen["before"], None), "", None

    def waiting(text):
        return f"{text} {note}", loss_figure(history), before_after_html(prompt, None, None), "", None

    out_all = yield from stream({"tuned": finetune_job(base, tok, prompt, st, spec, ids, train_ids, val_ids)}, stop,
                                record, view, progress, sessions=sessions, request=request, key=key,
                                estimate=estimate, label="Fine-tune", waiting=waiting)
    out = out_all.get("tuned") if out_all else None
    if not out or out.get("abandoned"):
        yield (f"Stopped before it started. {note}", loss_figure(history), before_after_html(prompt, None, None), "",
               None)
        return
    result, ppl_before, ppl_after = out["result"], out["ppl_before"], out["ppl_after"]
    sessions.get(request)["finetuned"] = (out["tuned"], tok)
    secs = out["seconds"]
    stopped = " (stopped early)" if result["stopped"] else ""
    metrics = (f"### Before vs after{stopped}\n"
               f"| | before | after |\n|---|---|---|\n"
               f"| held-out loss (last {len(val_ids):,} tokens) | {ppl_before['loss']:.3f} |"
               f" {ppl_after['loss']:.3f} |\n"
               f"| held-out perplexity | {ppl_before['perplexity']:,.1f} | {ppl_after['perplexity']:,.1f} |\n"
               f"| held-out next-token accuracy | {ppl_before['accuracy']:.1%} | {ppl_after['accuracy']:.1%} |\n\n"
               f"{held_out_verdict(ppl_before, ppl_after)}\n\n"
               f"Trained **{spec}** of *{base.info.name}* for {result['steps']} steps of "
               f"{st.batch_size}×{st.context} tokens in {secs:.0f} s (whole run, sampling and evaluation included)"
               + (f"; kept the weights of step {result['best_step']}, the best held-out loss (early stopping). "
                  if result.get("best_step") not in (None, result["steps"]) else ". ") +
               f"Same prompt, same seed (T={SAMPLE_T}, top-k={SAMPLE_TOP_K}): any difference in the two samples "
               f"comes from the new weights. The table lists the tokens of your text whose probability rose most "
               f"(mean gain in log-probability; +0.69 nats = twice as likely).")
    sig = lambda p: float(f"{p:.3g}")  # noqa: E731 - 3 significant digits: small probabilities stay visible
    rows = [[r["token"], r["count"], round(r["mean_logprob_gain"], 3), sig(r["p_before"]), sig(r["p_after"])]
            for r in out["shifts"]]
    yield once(out_all, "done", lambda: (  # drawn once for everyone who follows this run
        f"Done in {secs:.0f} s. {note}", loss_figure(history), before_after_html(prompt, out["before"], out["after"]),
        metrics, rows))


def on_download(sessions: SessionStore, request: gr.Request = None):
    entry = sessions.get(request)
    if not entry.get("finetuned"):
        raise gr.Error("Fine-tune a model first: there is nothing to download yet.", print_exception=False)
    model, tok = entry["finetuned"]
    out = os.path.join(session_tmpdir(entry), "finetuned")
    tinygpt.save_checkpoint(model, tok, out)
    return [os.path.join(out, f) for f in ("model.safetensors", "config.json", "tokenizer.json")]


def build(models, sessions: SessionStore, default_model: str = "gpt2"):
    with gr.Tab("Fine-tune", id="finetune"):
        gr.Markdown("Fine-tune a model on **your own text** (an article or essay of 5,000–15,000 characters), then"
                    " compare the same prompt and seed before and after. The shared model is never changed: you"
                    " train a private copy that lives in your session only.")
        model_dd, _, _, _, model0 = model_picker(models, default_model)
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Upload a .txt file", file_types=[".txt"], type="filepath")
                pasted = gr.Textbox(label="…or paste text", lines=6, elem_id="ft-text")
                with gr.Row():
                    lossy = gr.Checkbox(DEFAULTS["lossy"], label="Lossy decode (replace non-UTF-8 bytes with �)")
                    drop = gr.Checkbox(DEFAULTS["drop_boilerplate"], label="Drop URL / page-number / header lines")
                prep = gr.Button("Clean and describe")
            with gr.Column():
                cleaned = gr.Textbox(label="Cleaned text (used for training; you can edit it)", lines=10)
                steps_md = gr.Markdown()
        stats_md = gr.Markdown(elem_id="ft-stats")
        prompt = gr.Textbox(label="Prompt (a phrase from your text)")
        with gr.Accordion("Training settings (defaults fit a free CPU Space)", open=False):
            with gr.Row():
                trainable = gr.Radio(list(TRAINABLE), value=DEFAULTS["trainable"], label="Which weights to train")
                steps = gr.Slider(1, 300, DEFAULTS["steps"], step=1, label="Steps", elem_id="ft-steps")
                context = gr.Slider(16, 512, DEFAULTS["context"], step=16, label="Context (tokens)")
            with gr.Row():
                batch = gr.Slider(1, 16, DEFAULTS["batch_size"], step=1, label="Batch size")
                lr = gr.Number(DEFAULTS["lr"], label="Learning rate")
                seed = gr.Number(DEFAULTS["seed"], label="Seed", precision=0)
                max_new = gr.Slider(10, 200, DEFAULTS["max_new_tokens"], step=10, label="Sample length (tokens)")
        go, dl, status, plot = run_controls(STOP, sessions, "Fine-tune", "ft", "Loss", "Download fine-tuned weights")
        compare = gr.HTML(elem_id="ft-compare")
        metrics = gr.Markdown()
        shifts = gr.Dataframe(headers=["token", "count", "mean log-prob gain", "p before", "p after"],
                              label="Tokens whose probability rose most", interactive=False)
        files = gr.File(label="Fine-tuned weights (safetensors + config)", file_count="multiple")

        prep.click(partial(on_prepare, models), [model_dd, upload, pasted, lossy, drop],
                   [cleaned, steps_md, stats_md, prompt], api_name="finetune_prepare", concurrency_id="model")
        go.click(partial(on_finetune, models, sessions),
                 [model_dd, upload, cleaned, lossy, drop, prompt, seed, trainable, steps, context, batch, lr, max_new],
                 [status, plot, compare, metrics, shifts], api_name="finetune", concurrency_id="finetune",
                 concurrency_limit=None)  # the room's run hub schedules the runs
        dl.click(partial(on_download, sessions), None, files, api_visibility="private")
        register("finetune", fields={
            "model": model_dd, "lossy": lossy, "drop_boilerplate": drop, "prompt": prompt, "trainable": trainable,
            "steps": steps, "context": context, "batch_size": batch, "lr": lr, "seed": seed,
            "max_new_tokens": max_new}, command=command, run=[prep, go])


def command(v: dict) -> str:
    """The fine-tune and the before/after samples as command lines. Your text is not in a link or a command:
    save the cleaned text (the box on the right) as essay.txt."""
    st, _ = check_settings(v["steps"], v["context"], v["batch_size"], v["lr"], v["seed"], v["max_new_tokens"], 1024)
    prompt = str(v["prompt"] or "").strip() or "A PHRASE FROM YOUR TEXT"
    sample = dict(start=prompt, num_samples=1, max_new_tokens=st.max_new_tokens, temperature=SAMPLE_T,
                  top_k=SAMPLE_TOP_K, seed=st.seed)
    return "\n".join([
        "# save the cleaned text as essay.txt, then:",
        cli("finetune", model=v["model"], text="essay.txt",
                  trainable=TRAINABLE.get(v["trainable"], v["trainable"]), steps=st.steps, block_size=st.context,
                  batch_size=st.batch_size, lr=st.lr, seed=st.seed, out="finetuned"),
        "# before and after (same prompt and seed)",
        cli("sample", model=v["model"], **sample),
        cli("sample", model="finetuned", **sample)])
