"""Running the Train tab: the form checked (model shape, schedule, each run's dropouts, position encodings), the
corpus read, one tiny GPT (run A) or two built from the same initial weights and trained side by side in worker
threads, then sampled and probed (tabs/train/probe.py) for the Explain section."""
from __future__ import annotations

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
from tinygpt.defaults import TRAIN_TAB
from tinygpt.moe import expert_load, match_active_params, with_expert_load

from ..kit.common import UserError, clamp_int, parse_float, seeded_sample, user_errors
from ..kit.sessions import SessionStore
from ..kit.stream import Stopper, stream
from .figures import POS_LABELS, curves_figure, describe_run, explain, samples_html
from .moe import check_moe, explain_moe
from .probe import probe

STOP = Stopper("train")
UPLOAD = "Upload a .txt file"


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
    inputs come last so older API clients still work."""
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
    entry = sessions.get(request)
    stop = STOP.fresh(sessions, request)
    models = {}
    for k, c in cfgs.items():
        torch.manual_seed(seed)  # same initial weights for both runs: only the switch differs
        models[k] = tinygpt.GPT(c)
    tcfg = tinygpt.TrainConfig(steps=S, batch_size=st.batch_size, context=T, lr=st.lr, warmup=min(100, max(1, S // 10)),
                               eval_interval=max(1, S // 20), eval_batches=TRAIN_TAB["eval_batches"], seed=seed,
                               eval_train=True)
    # an MoE run's evaluation events also carry its expert load on 8 fixed validation windows
    jobs = {k: partial(lambda m, cb, should_stop: tinygpt.train(m, train_data, val_data, tcfg,
                                                                with_expert_load(cb, m, val_data, T), should_stop),
                       models[k]) for k in models}
    hist = {k: [] for k in models}
    note = " ".join([corpus_note] + notes)
    sizes = {k: m.num_params() for k, m in models.items()}
    t0 = time.perf_counter()
    prompt = tok.decode(val_data[:8].tolist())
    waiting = dict.fromkeys(models)
    if len(models) == 1:
        head = f"Training one {L}-layer model ({sizes['A']:,} parameters)"
    else:
        size_note = f"{sizes['A']:,} parameters each" if sizes["A"] == sizes["B"] else \
            f"A: {sizes['A']:,} parameters, B: {sizes['B']:,}"
        head = f"Training two {L}-layer models ({size_note})"
    yield (f"{head} on {len(train_data):,} tokens. {note}", curves_figure(hist, labels, cfgs),
           samples_html(prompt, waiting, labels), "")

    def view(clock):
        eta = clock.tick(min(h[-1]["step"] if h else 0 for h in hist.values()), S, "training")
        status = " · ".join(f"{k}: step {h[-1]['step']} loss {h[-1]['train_loss']:.3f}" for k, h in hist.items() if h)
        return (f"{status} · {eta}. {note}", curves_figure(hist, labels, cfgs), samples_html(prompt, waiting, labels),
                "")

    results = yield from stream(jobs, stop, lambda name, ev: hist[name].append(ev), view, progress)
    results = {k: results[k] for k in models}  # A before B, whichever finished first
    samples = {k: seeded_sample(m, tok, prompt, seed, st.sample_len, 0.8, None) for k, m in models.items()}
    probes = {k: probe(m, val_data, T) for k, m in models.items()}
    secs = time.perf_counter() - t0
    stopped = " (stopped early)" if any(r["stopped"] for r in results.values()) else ""
    entry["trained"] = {k: (m, tok) for k, m in models.items()}
    entry["train_results"] = {k: {key: r[key] for key in ("steps", "train_loss", "val_loss", "val_accuracy")}
                              for k, r in results.items()}
    entry["train_probes"] = probes
    for k, m in models.items():  # parameters per run and, for an MoE, the final load on 64 validation windows
        counts = tinygpt.count_parameters(cfgs[k])
        entry["train_results"][k].update(params_total=counts["total"], params_active=counts["active"],
                                         tokens_per_s=results[k]["tokens_per_s"])
        if cfgs[k].n_experts:
            entry["train_results"][k]["expert_load"] = expert_load(m, val_data, T, max_windows=64)["per_layer"]
    entry["routing_texts"] = {k: prompt + samples[k] for k in models if cfgs[k].n_experts}
    yield (f"Done{stopped} in {secs:.0f} s. {note}", curves_figure(hist, labels, cfgs),
           samples_html(prompt, samples, labels),
           explain(results, cfgs, samples, tok_kind, probes) + explain_moe(entry["train_results"], cfgs))
