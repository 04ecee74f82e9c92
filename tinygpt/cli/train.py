"""`python -m tinygpt train | finetune | eval`: train a GPT from scratch, fine-tune a loaded one (copied, never
changed), and measure a model's held-out loss. train and finetune share their options (`training_options`); finetune
starts from the Fine-tune tab's defaults (tinygpt.defaults.FINETUNE).

train and finetune run data-parallel under torchrun (tinygpt.distributed):

    torchrun --nproc_per_node 2 -m tinygpt train --text input.txt --out runs/ddp --json     # gloo on CPUs
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 -m tinygpt train ...

Every rank trains on its own micro-batches (--grad-accum of them per step); rank 0 evaluates, prints, and writes
the same checkpoint a single process would; --json reports the world size and the tokens/s of all ranks together.
"""
from __future__ import annotations

import argparse
from functools import partial

from ..config import POS_ENCODINGS
from ..defaults import EVAL, FINETUNE, TRAIN
from .common import (Parser, add_budget, add_device, add_dtype, add_json, add_seed, budget_report, emit, load,
                     model_options, say, summary_line, with_budget)


CORPUS_NAMES = ("tiny-shakespeare", "python-docs")  # tinygpt.data.CORPORA's values (no torch import here)


def print_progress(ev):
    """The training callback of the command line: one stderr line per evaluation (rank 0's, under torchrun)."""
    if ev["val_loss"] is None:
        return
    fit = ("" if ev.get("train_eval_loss") is None else
           f" (train windows {ev['train_eval_loss']:.4f}, acc {ev['train_eval_accuracy']:.3f})")
    say(f"step {ev['step']}/{ev['steps_total']}: train {ev['train_loss']:.4f} val {ev['val_loss']:.4f} "
        f"acc {ev['val_accuracy']:.3f}{fit} {ev['tokens_per_s']:.0f} tok/s {ev['elapsed']:.0f}s")


def training_text(a) -> str:
    """--text FILE, or --corpus NAME: a built-in corpus read as the Train tab reads it (Tiny Shakespeare falls back
    to the offline Python docs when it cannot be downloaded, with a note)."""
    from ..data import load_corpus, python_docs, read_text

    if getattr(a, "corpus", None) is None:
        return read_text(a.text)
    try:
        return load_corpus(a.corpus)
    except ConnectionError as e:
        say(f"{e} Using the offline Python-docs corpus instead.")
        return python_docs()


def finish_training(a, model, tok, result, ctx, device, extra: dict | None = None) -> int:
    """Rank 0 (or a lone process) writes the checkpoint and prints the report; the other ranks print nothing."""
    from .. import distributed as D
    from ..checkpoint import save_checkpoint
    from ..dtypes import torch_dtype

    if ctx.is_main:
        save_checkpoint(model, tok, a.out, dtype=torch_dtype(a.save_dtype))
    D.shutdown(ctx)  # every rank waits here until rank 0 has written the checkpoint
    if not ctx.is_main:
        return 0
    keys = ("steps", "train_loss", "val_loss", "val_accuracy", "tokens_per_s", "seconds")
    summary = {**{k: result[k] for k in keys}, "world_size": ctx.world_size, "grad_accum": a.grad_accum,
               "global_batch": a.batch_size * a.grad_accum * ctx.world_size, "device": str(device),
               "losses": [ev["train_loss"] for ev in result["history"]], **(extra or {})}
    return emit(a, summary, lambda s: [summary_line({k: v for k, v in s.items() if k not in ("losses", "budget")}),
                                       f"saved to {a.out}"])


def training_budget(a, estimate, **settings) -> dict | None:
    """The run's budget (common.budget_report), estimated per process: its micro-batches (--grad-accum of them per
    step) run one after another, so memory is one micro-batch's and time counts every micro-batch; under torchrun
    each rank checks its own share."""
    ga = max(1, a.grad_accum)
    interval = a.eval_interval if a.eval_interval is not None else max(1, a.steps // 10)
    return budget_report(a, lambda: estimate(steps=a.steps * ga, batch_size=a.batch_size,
                                             eval_interval=interval * ga, **settings))


def train_config(a, context, **extra):
    from ..train import TrainConfig
    return TrainConfig(steps=a.steps, batch_size=a.batch_size, context=context, lr=a.lr, warmup=a.warmup,
                       eval_interval=a.eval_interval, seed=a.seed, weight_decay=a.weight_decay,
                       keep_best=a.keep_best, grad_accum=a.grad_accum, **extra)


def join(a):
    """(distributed context, device): this process's place in a torchrun job (alone: rank 0 of 1) and device."""
    from .. import distributed as D
    from .common import device_of

    device_of(a)  # an unknown --device is one line before anything else happens
    return D.init(getattr(a, "device", None))


def cmd_train(a) -> int:
    import torch

    from ..config import GPTConfig
    from ..data import encode_text, make_tokenizer, split_tokens
    from ..model import GPT
    from ..train import train

    ctx, device = join(a)
    text = training_text(a)
    tok = make_tokenizer(a.tokenizer, text)
    train_data, val_data = split_tokens(encode_text(tok, text), a.val_fraction)
    d = a.dropout
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=a.block_size, n_layer=a.n_layer, n_head=a.n_head,
                    n_embd=a.n_embd, embd_pdrop=d if a.embd_pdrop is None else a.embd_pdrop,
                    attn_pdrop=d if a.attn_pdrop is None else a.attn_pdrop,
                    resid_pdrop=d if a.resid_pdrop is None else a.resid_pdrop, bias=not a.no_bias,
                    causal=not a.no_causal_mask, layernorm=not a.no_layernorm, attn_scale=not a.no_attn_scale,
                    n_inner=a.n_inner, n_experts=a.n_experts, moe_top_k=a.moe_top_k, moe_aux_weight=a.moe_aux_weight,
                    pos_encoding=a.pos_encoding)
    from ..budget.estimates import estimate_train
    budget = training_budget(a, partial(estimate_train, cfg), context=a.block_size, eval_batches=a.eval_batches,
                             sample_len=0, corpus_tokens=len(train_data) + len(val_data))
    torch.manual_seed(a.seed)
    model = GPT(cfg).to(device)  # the same initial weights on every rank (same seed)
    if ctx.is_main:
        say(f"{model.num_params():,} parameters; {len(train_data):,} train / {len(val_data):,} val tokens"
            + (f"; {ctx.world_size} processes ({ctx.backend})" if ctx.enabled else ""))
    result = train(model, train_data, val_data,
                   train_config(a, a.block_size, eval_batches=a.eval_batches, eval_train=True),
                   callback=print_progress if ctx.is_main else None, dist=ctx)
    extra = moe_report(model, val_data, a.block_size) if ctx.is_main else {}
    return finish_training(a, model, tok, result, ctx, device, with_budget(extra, budget))


def moe_report(model, val_data, context) -> dict:
    """params_total / params_active (per token) for every model; for an MoE also expert_load (fraction of the
    validation tokens each expert takes, per layer and averaged) and the dense width with equal active params."""
    from ..moe import dense_n_inner, expert_load
    from ..params import count_parameters

    counts = count_parameters(model.config)
    out = {"params_total": counts["total"], "params_active": counts["active"]}
    if model.config.n_experts:
        load = expert_load(model, val_data, context)
        out["expert_load"] = {"per_layer": [[round(f, 4) for f in row] for row in load["per_layer"]],
                              "average": [round(f, 4) for f in load["average"]], "tokens": load["tokens"]}
        out["dense_equal_active_n_inner"] = dense_n_inner(model.config)
    return out


def cmd_finetune(a) -> int:
    from ..data import encode_text, read_text
    from ..finetune import finetune_config, holdout_split, trainable_copy
    from ..train import train

    ctx, device = join(a)
    base, tok = load(a, device=device)
    context = min(a.block_size, base.config.block_size)
    train_data, val_data = holdout_split(encode_text(tok, read_text(a.text)), context, a.val_fraction)
    cfg = finetune_config(steps=a.steps, context=context, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                          trainable=a.trainable, keep_best=a.keep_best, weight_decay=a.weight_decay,
                          grad_accum=a.grad_accum,
                          **({"warmup": a.warmup} if a.warmup is not None else {}),
                          **({"eval_interval": a.eval_interval} if a.eval_interval is not None else {}))
    from ..budget.estimates import estimate_finetune
    budget = training_budget(a, lambda steps, batch_size, eval_interval: estimate_finetune(
        base.config, cfg.trainable, steps, batch_size, context, max_new_tokens=0,
        text_tokens=len(train_data) + len(val_data), keep_best=cfg.keep_best))
    model = trainable_copy(base, cfg.trainable)  # the loaded model stays as it was (it may be shared)
    result = train(model, train_data, val_data, cfg, callback=print_progress if ctx.is_main else None, dist=ctx)
    return finish_training(a, model, tok, result, ctx, device, with_budget({"best_step": result["best_step"]}, budget))


def cmd_eval(a) -> int:
    import torch

    from ..data import encode_text, read_text, split_tokens
    from ..evaluate import evaluate

    model, tok = load(a)
    _, held_out = split_tokens(encode_text(tok, read_text(a.text)), a.val_fraction)
    context = min(a.context, model.config.block_size)
    torch.set_grad_enabled(False)
    res = {**evaluate(model, held_out, context), "model": model.info.name, "fallback": model.info.fallback,
           "context": context}
    return emit(a, res, [f"held-out loss {res['loss']:.4f} nats/token, perplexity {res['perplexity']:.1f}, "
                         f"accuracy {res['accuracy']:.3f} on {res['tokens']:,} tokens (windows of {context})"])


def training_options(d, text: bool = True) -> Parser:
    """The options train and finetune share, with defaults from the table d (TRAIN's keys). text: add a required
    --text (train adds its own, either --text or --corpus)."""
    t = Parser(add_help=False)
    if text:
        t.add_argument("--text", required=True, help="UTF-8 text file to train on")
    t.add_argument("--block-size", type=int, default=d["block_size"], help="context length")
    t.add_argument("--batch-size", type=int, default=d["batch_size"])
    t.add_argument("--steps", type=int, default=d["steps"])
    t.add_argument("--lr", type=float, default=d["lr"])
    t.add_argument("--warmup", type=int, default=d["warmup"])
    t.add_argument("--weight-decay", type=float, default=d["weight_decay"])
    t.add_argument("--eval-interval", type=int, default=d["eval_interval"])
    t.add_argument("--val-fraction", type=float, default=d["val_fraction"])
    add_seed(t, d["seed"])
    add_dtype(t, flag="--save-dtype", default=d["save_dtype"])
    t.add_argument("--keep-best", action=argparse.BooleanOptionalAction, default=d["keep_best"],
                   help="end with the best-validation weights")
    t.add_argument("--grad-accum", type=int, default=d["grad_accum"],
                   help="micro-batches per optimizer step on each process (global batch = batch size x this x "
                        "processes)")
    t.add_argument("--out", required=True, help="checkpoint directory to write")
    add_budget(t)
    return t


def register(sub) -> None:
    d = TRAIN
    t = sub.add_parser("train", parents=[training_options(d, text=False)], help="train a GPT from scratch")
    source = t.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="UTF-8 text file to train on")
    source.add_argument("--corpus", choices=list(CORPUS_NAMES),
                        help="a built-in corpus, as the Train tab reads it (tinygpt.data.CORPORA)")
    t.add_argument("--tokenizer", choices=["char", "gpt2"], default=d["tokenizer"])
    t.add_argument("--n-layer", type=int, default=d["n_layer"])
    t.add_argument("--n-head", type=int, default=d["n_head"])
    t.add_argument("--n-embd", type=int, default=d["n_embd"])
    t.add_argument("--dropout", type=float, default=d["dropout"], help="all three dropout rates")
    t.add_argument("--embd-pdrop", type=float, default=d["embd_pdrop"])
    t.add_argument("--attn-pdrop", type=float, default=d["attn_pdrop"])
    t.add_argument("--resid-pdrop", type=float, default=d["resid_pdrop"])
    t.add_argument("--no-bias", action="store_true")
    t.add_argument("--no-causal-mask", action="store_true")
    t.add_argument("--no-layernorm", action="store_true")
    t.add_argument("--no-attn-scale", action="store_true")
    t.add_argument("--n-inner", type=int, default=d["n_inner"], help="feed-forward width (default 4 * n_embd)")
    t.add_argument("--n-experts", type=int, default=d["n_experts"],
                   help="Mixture-of-Experts: expert MLPs per block (0 = dense)")
    t.add_argument("--moe-top-k", type=int, default=d["moe_top_k"], help="experts per token (1 = Switch routing)")
    t.add_argument("--moe-aux-weight", type=float, default=d["moe_aux_weight"],
                   help="weight of the load-balancing loss")
    t.add_argument("--eval-batches", type=int, default=d["eval_batches"], help="validation batches per evaluation")
    t.add_argument("--pos-encoding", choices=list(POS_ENCODINGS), default=d["pos_encoding"],
                   help="learned (GPT-2's wpe), sinusoidal (fixed table), rope (rotary, in attention) or none")
    add_device(t)
    add_json(t)
    t.set_defaults(func=cmd_train)

    # the Fine-tune tab's defaults; warm-up and evaluations scale with --steps (None: finetune_config decides)
    ft = {**TRAIN, **FINETUNE, "block_size": FINETUNE["context"], "warmup": None, "eval_interval": None}
    f = sub.add_parser("finetune", parents=[model_options(), training_options(ft)],
                       help="fine-tune a model on a text file (the loaded model is copied, never changed)")
    f.add_argument("--trainable", default=ft["trainable"], help='"all" or "top:N" (last N blocks)')
    f.set_defaults(func=cmd_finetune)

    v = sub.add_parser("eval", parents=[model_options()], help="held-out loss of a model on the last part of a text")
    v.add_argument("--text", required=True)
    v.add_argument("--context", type=int, default=EVAL["context"])
    v.add_argument("--val-fraction", type=float, default=EVAL["val_fraction"])
    v.set_defaults(func=cmd_eval)
