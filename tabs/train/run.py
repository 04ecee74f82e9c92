"""Running the Train tab: the form checked (model shape, schedule, each run's dropouts, position encodings) and the
corpus read in the handler (cheap, per visitor); then, in the jobs the room's run hub runs (tabs/kit/runs.py), one
tiny GPT (run A) or two built from the same initial weights, trained side by side in worker threads, sampled and
probed (tabs/train/probe.py) for the Explain section. A student who starts the same settings while they run (or
after) follows that one computation: the jobs' results hold the trained models, read-only."""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
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
from tinygpt.budget import estimate_train
from tinygpt.defaults import TRAIN_TAB
from tinygpt.moe import expert_load, match_active_params, with_expert_load

from ..kit.common import UserError, clamp_int, parse_float, seeded_sample, user_errors
from ..kit.runs import abandoned, run_key
from ..kit.sessions import SessionStore
from ..kit.stream import Stopper, once, stream
from .figures import POS_LABELS, curves_figure, describe_run, explain, samples_html
from .moe import check_moe, explain_moe
from .probe import probe

STOP = Stopper("train")
UPLOAD = "Upload a .txt file"
SAMPLE_T = 0.8  # the after-training samples' temperature (no top-k)
PROMPT_TOKENS = 8  # the samples' prompt: the first tokens of the held-out text
_INIT = threading.Lock()  # seeding torch's global generator and building the models happen as one step


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


def check_pos(value) -> str:
    """A run's position encoding (default learned, as GPT-2)."""
    v = "learned" if value in (None, "") else str(value).strip().lower()
    if v not in POS_LABELS:
        raise UserError(f"Position encoding must be one of {', '.join(POS_LABELS)} (got {value!r}).")
    return v


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


def check_drops(drops) -> tuple:
    """(embedding, attention, residual) dropout rates, checked. Raises UserError."""
    return tuple(parse_float(d, "Dropout", 0.0, 0.9) for d in drops)


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
                  drops=check_drops(drops),
                  sample_len=clamp_int(sample_len, 1, 2000, "Sample length", notes),
                  seed=clamp_int(seed, 0, 2**31 - 1, "Seed", notes))
    if st.n_embd % st.n_head:
        raise UserError(f"d_model ({st.n_embd}) must be divisible by the number of heads ({st.n_head}).")
    return st, notes


def run_drops(st: Settings, b_own_dropout, b_drops) -> dict:
    """Each run's dropout rates: A's are the form's three rates; B has its own only when b_own_dropout is on
    (off: the same as A, which is what the three rates meant before they were per run)."""
    return {"A": st.drops, "B": check_drops(b_drops) if b_own_dropout else st.drops}


def build_models(cfgs: dict, seed: int) -> dict:
    """{run: GPT} from the same seed (so run A and run B start from the same initial weights where their shapes
    agree), built under one lock: no other run's models are built from the global generator in between."""
    models = {}
    with _INIT:
        for k, c in cfgs.items():
            torch.manual_seed(seed)
            models[k] = tinygpt.GPT(c)
    return models


def train_jobs(cfgs: dict, tcfg, train_data, val_data, tok, prompt: str, sample_len: int) -> dict:
    """The runs' jobs for the hub: {run: fn(callback, should_stop)}. Each builds its model (both runs' models are
    built together, before either trains), trains it (an MoE run's evaluation events carry its expert load on 8
    fixed validation windows), then samples `sample_len` tokens from `prompt` and probes it; returns {train
    (tinygpt.train's result), model (eval mode; shared by everyone who follows the run: read-only), sample, probe,
    expert_load (an MoE run's final load on 64 validation windows, else None), seconds}. A run nobody follows any
    more returns after training ({train, abandoned: True})."""
    built, lock, T = {}, threading.Lock(), tcfg.context

    def job(k, callback, should_stop):
        t0 = time.perf_counter()
        callback({"phase": "building the models"})
        with lock:
            if not built:
                built.update(build_models(cfgs, tcfg.seed))
        m = built[k]
        res = tinygpt.train(m, train_data, val_data, tcfg, with_expert_load(callback, m, val_data, T), should_stop)
        if abandoned(should_stop):
            return {"train": res, "abandoned": True}
        callback({"phase": "sampling and probing"})
        m.eval()
        load = expert_load(m, val_data, T, max_windows=64)["per_layer"] if cfgs[k].n_experts else None
        sample = seeded_sample(m, tok, prompt, tcfg.seed, sample_len, SAMPLE_T, None)
        return {"train": res, "model": m, "sample": sample, "probe": probe(m, val_data, T), "expert_load": load,
                "seconds": time.perf_counter() - t0}
    return {k: partial(job, k) for k in cfgs}


@user_errors
def on_train(sessions: SessionStore, corpus, file, tokenizer, n_layer, n_head, n_embd, context, embd_pdrop,
             attn_pdrop, resid_pdrop, steps, batch, lr, a_causal, a_ln, a_scale, b_causal, b_ln, b_scale, sample_len,
             seed, a_experts=0, a_top_k=1, a_aux=0.01, b_experts=0, b_top_k=1, b_aux=0.01, match_active=False,
             a_pos="learned", b_pos="learned", compare_b=TRAIN_TAB["compare_b"],
             b_own_dropout=TRAIN_TAB["b_own_dropout"], b_embd_pdrop=TRAIN_TAB["b_embd_pdrop"],
             b_attn_pdrop=TRAIN_TAB["b_attn_pdrop"], b_resid_pdrop=TRAIN_TAB["b_resid_pdrop"],
             request: gr.Request = None, progress=gr.Progress()):
    """Stream (status, curves, samples HTML, explanation) while run A, and run B beside it, train.

    embd/attn/resid_pdrop: run A's dropout rates, and B's unless b_own_dropout (then b_*_pdrop are B's).
    a_/b_experts, top_k, aux: make a run a Mixture-of-Experts (0 experts = dense). match_active: the dense run
    gets the feed-forward width that gives it the MoE run's active parameters per token. a_/b_pos: each run's
    position encoding (learned, sinusoidal, rope, none). compare_b: train run B too (off: run A alone). These
    inputs come last so older API clients still work.

    The run is keyed by everything that decides it (the models' configurations, the schedule and seed, the sample
    length, the tokenizer and the corpus text) and budgeted before it starts (tinygpt.budget.estimate_train)."""
    st, notes = check_settings(n_layer, n_head, n_embd, context, steps, batch, lr,
                               (embd_pdrop, attn_pdrop, resid_pdrop), sample_len, seed)
    drops = run_drops(st, b_own_dropout, (b_embd_pdrop, b_attn_pdrop, b_resid_pdrop))
    names = ("A", "B") if compare_b else ("A",)
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
    switches = {"A": (a_causal, a_ln, a_scale), "B": (b_causal, b_ln, b_scale)}
    cfgs = {k: run_config(tok.vocab_size, T, L, st.n_head, st.n_embd, drops[k], *switches[k], *moe[k],
                          pos_encoding=pos[k]) for k in names}
    if match_active and len(cfgs) == 2:
        notes.append(match_active_params(cfgs))
    labels = {k: describe_run(c) for k, c in cfgs.items()}
    tcfg = tinygpt.TrainConfig(steps=S, batch_size=st.batch_size, context=T, lr=st.lr, warmup=min(100, max(1, S // 10)),
                               eval_interval=max(1, S // 20), eval_batches=TRAIN_TAB["eval_batches"], seed=seed,
                               eval_train=True)
    prompt = tok.decode(val_data[:PROMPT_TOKENS].tolist())
    key = run_key("train", {"configs": {k: asdict(c) for k, c in cfgs.items()}, "train": asdict(tcfg),
                            "sample_len": st.sample_len, "sample_t": SAMPLE_T, "tokenizer": tok_kind}, text=text)
    estimate = estimate_train(list(cfgs.values()), S, st.batch_size, T, eval_interval=tcfg.eval_interval,
                              eval_batches=tcfg.eval_batches, sample_len=st.sample_len, corpus_tokens=len(data),
                              prompt_tokens=PROMPT_TOKENS)
    stop = STOP.fresh(sessions, request)
    hist = {k: [] for k in cfgs}
    phase: dict = {}
    note = " ".join([corpus_note] + notes)
    sizes = {k: tinygpt.count_parameters(c)["total"] for k, c in cfgs.items()}
    pending = dict.fromkeys(cfgs)
    if len(cfgs) == 1:
        head = f"Training one {L}-layer model ({sizes['A']:,} parameters)"
    else:
        size_note = f"{sizes['A']:,} parameters each" if sizes["A"] == sizes["B"] else \
            f"A: {sizes['A']:,} parameters, B: {sizes['B']:,}"
        head = f"Training two {L}-layer models ({size_note})"
    head = f"{head} on {len(train_data):,} tokens."

    def record(name, ev):
        if "step" in ev:
            hist[name].append(ev)
        else:
            phase[name] = ev["phase"]

    def view(clock):
        eta = clock.tick(min(h[-1]["step"] if h else 0 for h in hist.values()), S, "training")
        status = " · ".join(f"{k}: step {h[-1]['step']} loss {h[-1]['train_loss']:.3f}" for k, h in hist.items() if h)
        if all(h and h[-1]["step"] == S for h in hist.values()) or not status:
            status = f"{head} {'; '.join(sorted(set(phase.values())))}…"
        return (f"{status} · {eta}. {note}", curves_figure(hist, labels, cfgs), samples_html(prompt, pending, labels),
                "")

    def waiting(text):
        return (f"{head} {text} {note}", curves_figure(hist, labels, cfgs), samples_html(prompt, pending, labels), "")

    out = yield from stream(train_jobs(cfgs, tcfg, train_data, val_data, tok, prompt, st.sample_len), stop, record,
                            view, progress, sessions=sessions, request=request, key=key, estimate=estimate,
                            label="Train from scratch", waiting=waiting)
    if not out or any(r.get("abandoned") for r in out.values()):
        yield (f"Stopped before it started. {note}", curves_figure(hist, labels, cfgs), "", "")
        return
    out_all, out = out, {k: out[k] for k in cfgs}  # A before B, whichever finished first
    results = {k: r["train"] for k, r in out.items()}
    samples = {k: r["sample"] for k, r in out.items()}
    probes = {k: r["probe"] for k, r in out.items()}
    secs = max(r["seconds"] for r in out.values())
    stopped = " (stopped early)" if any(r["stopped"] for r in results.values()) else ""
    entry = sessions.get(request)
    entry["trained"] = {k: (r["model"], tok) for k, r in out.items()}
    entry["train_results"] = {k: {key: r[key] for key in ("steps", "train_loss", "val_loss", "val_accuracy")}
                              for k, r in results.items()}
    entry["train_probes"] = probes
    for k, r in out.items():  # parameters per run and, for an MoE, the final load on 64 validation windows
        counts = tinygpt.count_parameters(cfgs[k])
        entry["train_results"][k].update(params_total=counts["total"], params_active=counts["active"],
                                         tokens_per_s=results[k]["tokens_per_s"])
        if cfgs[k].n_experts:
            entry["train_results"][k]["expert_load"] = r["expert_load"]
    entry["routing_texts"] = {k: prompt + samples[k] for k in cfgs if cfgs[k].n_experts}
    train_results = entry["train_results"]
    yield once(out_all, "done", lambda: (  # drawn once for everyone who follows this run
        f"Done{stopped} in {secs:.0f} s. {note}", curves_figure(hist, labels, cfgs),
        samples_html(prompt, samples, labels),
        explain(results, cfgs, samples, tok_kind, probes) + explain_moe(train_results, cfgs)))
