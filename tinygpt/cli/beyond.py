"""`python -m tinygpt scaling | dpo | rlhf`: beyond pretraining (the Scaling laws, DPO and RLHF tabs' commands):
a sweep of small models with L(N) and the compute-optimal N per budget; Direct Preference Optimization on pairs;
the toy RLHF pipeline (SFT, a reward model, PPO)."""
from __future__ import annotations

import argparse
import json

from ..defaults import DPO, RLHF, SCALING
from .common import (add_budget, add_json, add_seed, budget_report, emit, load, model_options, say, summary_line,
                     with_budget)


# ---- scaling ------------------------------------------------------------------------------------------------------
def shapes_arg(text):
    from ..beyond.scaling import parse_shapes
    try:
        return parse_shapes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def budgets_arg(text):
    from ..beyond.scaling import parse_budgets
    try:
        return parse_budgets(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def scaling_command(a) -> str:
    """The full command that reproduces a sweep (every setting spelled out), stored with the result."""
    parts = ["python -m tinygpt scaling", f"--shapes {','.join('x'.join(map(str, s)) for s in a.shapes)}",
             f"--steps {a.steps}", f"--budgets {','.join(f'{b:g}' for b in a.budgets)}", f"--context {a.context}",
             f"--batch-size {a.batch_size}", f"--lr {a.lr:g}", f"--min-steps {a.min_steps}",
             f"--max-steps {a.max_steps}", f"--eval-windows {a.eval_windows}", f"--tokenizer {a.tokenizer}",
             f"--seed {a.seed}"]
    if a.text:
        parts.append(f"--text {a.text}")
    return " ".join(parts + ["--json"])


def scaling_lines(r: dict):
    yield f"{'group':>8} {'params':>9} {'tokens':>11} {'FLOPs':>10} {'val loss':>9} {'seconds':>8}"
    for run in r["runs"]:
        g = "size" if run["group"] == "size" else f"C={run['budget']:.0e}"
        yield (f"{g:>8} {run['params']:>9,} {run['tokens']:>11,} {run['flops']:>10.2e} {run['val_loss']:>9.4f} "
               f"{run['seconds']:>8.1f}")
    if r["fit"]:
        f = r["fit"]
        yield f"L(N) = {f['a']:.4g} * N^-{f['alpha']:.3f} + {f['c']:.3f}   (r2 {f['r2']:.3f})"
    for b in r["budgets"]:
        yield (f"C = {b['flops']:.2e}: N_opt {b['n_opt']:,.0f}, D_opt {b['d_opt']:,.0f} "
               f"({b['tokens_per_param']:.1f} tokens/param), loss {b['loss_opt']:.4f}{' (edge)' if b['edge'] else ''}")
    if r["optimum"]:
        o = r["optimum"]
        yield f"N_opt ∝ C^{o['exponent']:.3f} (r2 {o['r2']:.3f}); L_opt ∝ C^{o['loss_exponent']:.3f}"
    yield f"{r['seconds']:.0f} s on {r['corpus']}" + (" (stopped)" if r["stopped"] else "")


def cmd_scaling(a) -> int:
    """The sweep alone, in --workers processes on this machine, or spread over the ranks of a torchrun job (each
    rank trains every world_size-th run; rank 0 joins the shares, fits and reports)."""
    import time

    from .. import distributed as D
    from ..beyond.scaling import SweepConfig, merge_sweeps, scaling_sweep, sweep_corpus
    from ..data import read_text

    if a.workers < 1:
        raise ValueError("--workers must be at least 1.")
    ctx = D.from_env()
    if ctx.enabled:
        ctx, _ = D.init("cpu")  # the ranks only exchange their results: gloo is enough

    cfg = SweepConfig(shapes=a.shapes, steps=a.steps, budgets=a.budgets, context=a.context, batch_size=a.batch_size,
                      lr=a.lr, min_steps=a.min_steps, max_steps=a.max_steps, eval_windows=a.eval_windows,
                      tokenizer=a.tokenizer, seed=a.seed)
    text, name = (read_text(a.text), a.text) if a.text else sweep_corpus()
    if not a.text and name != "tiny-shakespeare":
        say(f"note: using {name}")
    budget = budget_report(a, lambda: sweep_estimate(cfg, text))

    def progress(ev):
        if ev["kind"] == "run":
            r = ev["result"]
            say(f"run {ev['run'] + 1}/{ev['runs_total']} ({r['group']}): N {r['params']:,} D {r['tokens']:,} "
                f"val {r['val_loss']:.4f} {r['seconds']:.1f}s")

    t0 = time.perf_counter()
    if ctx.enabled:
        part = scaling_sweep(cfg, text, progress, corpus_name=name, shard=(ctx.rank, ctx.world_size))
        parts = D.gather(part, ctx)
        D.shutdown(ctx)
        if not ctx.is_main:
            return 0
        result = merge_sweeps(parts, time.perf_counter() - t0)
    else:
        result = scaling_sweep(cfg, text, progress, corpus_name=name, workers=a.workers)
    result["command"] = scaling_command(a)
    result["workers"] = ctx.world_size if ctx.enabled else a.workers
    if a.out:
        import os
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return emit(a, with_budget(result, budget), scaling_lines)


def sweep_estimate(cfg, text: str):
    """tinygpt.budget.estimate_scaling for the sweep on `text` (the whole sweep in one process: its largest run's
    memory, every run's time). GPT-2 BPE token counts are taken at Tiny Shakespeare's characters per token rather
    than encoding the corpus twice."""
    from ..budget.estimates import SHAKESPEARE_CHARS, SHAKESPEARE_GPT2_TOKENS, estimate_scaling
    from ..data import make_tokenizer

    tok = make_tokenizer(cfg.tokenizer, text)
    tokens = len(text) if cfg.tokenizer == "char" else int(len(text) * SHAKESPEARE_GPT2_TOKENS / SHAKESPEARE_CHARS)
    return estimate_scaling(cfg, tok.vocab_size, tokens)


# ---- dpo / rlhf ------------------------------------------------------------------------------------------------------
def cmd_dpo(a) -> int:
    from ..beyond.dpo import DPOConfig, read_pairs, synthetic_pairs, train_dpo
    from ..checkpoint import save_checkpoint

    if a.synthetic is not None and a.synthetic < 2:
        raise ValueError("--synthetic needs at least 2 pairs.")
    pairs = synthetic_pairs(a.synthetic, a.seed) if a.synthetic is not None else read_pairs(a.pairs)
    base, tok = load(a)
    cfg = DPOConfig(steps=a.steps, batch_size=a.batch_size, lr=a.lr, beta=a.beta, seed=a.seed, trainable=a.trainable,
                    eval_interval=max(1, a.steps // 10))
    budget = budget_report(a, lambda: dpo_estimate(base, tok, pairs, cfg))

    def progress(ev):
        if ev["val"] is not None:
            v = ev["val"]
            say(f"step {ev['step']}/{ev['steps_total']}: loss {v['loss']:.4f} reward accuracy "
                f"{v['reward_accuracy']:.0%} margin {v['reward_margin']:+.3f} (chosen {v['chosen_reward']:+.3f}, "
                f"rejected {v['rejected_reward']:+.3f}) {ev['elapsed']:.0f}s")

    result = train_dpo(base, tok, pairs, cfg, callback=progress)
    where = f"{result['held_out']} held-out pairs" if result["held_out"] else "the training pairs (too few to hold out)"
    say(f"{len(pairs)} pairs, beta {a.beta}; reported numbers are on {where}")
    if a.out:
        save_checkpoint(result["policy"], tok, a.out)
    report = {k: result[k] for k in ("steps", "loss", "reward_accuracy", "reward_margin", "seconds")}
    return emit(a, with_budget(report, budget), [summary_line(report)] + ([f"saved to {a.out}"] if a.out else []))


def dpo_estimate(base, tok, pairs, cfg):
    """tinygpt.budget.estimate_dpo for one policy on these pairs, padded as train_dpo pads them (prompt + the longer
    response, at most the context)."""
    from ..budget.estimates import estimate_dpo
    from ..sampling import encode_prompt

    seq = max(len(encode_prompt(tok, p.prompt)) + max(len(tok.encode(p.chosen)), len(tok.encode(p.rejected)))
              for p in pairs)
    return estimate_dpo(base.config, cfg.trainable, cfg.steps, cfg.batch_size, min(seq, base.config.block_size),
                        len(pairs), runs=1, eval_interval=cfg.eval_interval)


def cmd_rlhf(a) -> int:
    import torch

    from ..beyond.rlhf import RLHFConfig, run_rlhf, summary
    from ..budget.estimates import estimate_rlhf

    changes = {k: getattr(a, k) for k in ("seed", "n_layer", "n_embd", "sft_steps", "sft_lr", "rm_steps", "ppo_steps",
                                          "kl_coef", "ppo_lr") if getattr(a, k) is not None}
    if any(getattr(a, k, 0) is not None and getattr(a, k) < 0 for k in ("sft_steps", "rm_steps", "ppo_steps")):
        raise ValueError("Step counts must be >= 0.")
    if any(getattr(a, k) is not None and getattr(a, k) < 1 for k in ("n_layer", "n_embd")):
        raise ValueError("--n-layer and --n-embd must be >= 1.")
    if a.n_embd is not None and a.n_embd % RLHFConfig.n_head:
        raise ValueError(f"--n-embd must be a multiple of the {RLHFConfig.n_head} heads (got {a.n_embd}).")
    if a.sft_lr is not None and not a.sft_lr > 0:
        raise ValueError("--sft-lr must be > 0.")
    if a.kl_coef is not None and a.kl_coef < 0:
        raise ValueError("--kl-coef must be >= 0.")
    cfg = RLHFConfig(**changes)
    if a.threads:
        torch.set_num_threads(a.threads)
    budget = budget_report(a, lambda: estimate_rlhf(cfg))

    def progress(ev):
        s = ev["stage"]
        if s == "sft" and ev["val_loss"] is not None:
            say(f"SFT step {ev['step']}/{ev['steps_total']}: train {ev['train_loss']:.4f} val {ev['val_loss']:.4f} "
                f"{ev['elapsed']:.0f}s")
        elif s == "reward_model" and ev["val_accuracy"] is not None:
            say(f"reward model step {ev['step']}/{ev['steps_total']}: val accuracy {ev['val_accuracy']:.1%} "
                f"{ev['elapsed']:.0f}s")
        elif s == "ppo" and (ev["step"] % max(1, ev["steps_total"] // 10) == 0 or ev["step"] == ev["steps_total"]):
            say(f"PPO step {ev['step']}/{ev['steps_total']}: reward {ev['reward']:+.3f} KL {ev['kl']:.3f} "
                f"grammatical {ev['grammatical']:.0%} {ev['elapsed']:.0f}s  {ev['sample']!r}")

    result = run_rlhf(cfg, progress)

    def lines(r):
        p = result["ppo"]
        yield (f"{result['params']:,}-parameter model; SFT val loss {r['sft']['val_loss']:.4f}; reward model "
               f"val accuracy {r['reward_model']['val_accuracy']:.1%}; {r['seconds']:.0f} s")
        for name, st in (("SFT (start)", p["start"]), ("PPO (end)", p["end"])):
            yield (f"{name:>12}: reward {st['reward']:+.3f}  KL {st['kl']:.3f}  labeller score {st['gold']:+.2f}  "
                   f"grammatical {st['grammatical']:.0%}  length {st['length']:.1f} chars")
        yield "samples, same prompts and seed (SFT | PPO):"
        for (pa, sa, _), (_, sb, _) in list(zip(p["samples"]["sft"], p["samples"]["ppo"]))[:a.samples]:
            yield f"  {(pa + sa).strip()!r:<50} | {(pa + sb).strip()!r}"
    return emit(a, with_budget(summary(result), budget), lines)


# ---- parsers ---------------------------------------------------------------------------------------------------------
def register(sub) -> None:
    d = SCALING
    c = sub.add_parser("scaling", help="train a sweep of small models; fit L(N) and the compute-optimal N per budget")
    c.add_argument("--text", default=d["text"], help="UTF-8 text (default: Tiny Shakespeare, offline: the Python docs)")
    c.add_argument("--shapes", type=shapes_arg, default=d["shapes"],
                   help="model sizes as layers x heads x d_model, e.g. 1x2x16,2x4x64")
    c.add_argument("--steps", type=int, default=d["steps"], help="training steps of every model in the size sweep")
    c.add_argument("--budgets", type=budgets_arg, default=d["budgets"],
                   help="compute budgets in FLOPs, e.g. 3e10,1e11")
    c.add_argument("--context", type=int, default=d["context"])
    c.add_argument("--batch-size", type=int, default=d["batch_size"])
    c.add_argument("--lr", type=float, default=d["lr"])
    c.add_argument("--min-steps", type=int, default=d["min_steps"], help="budget runs shorter than this are skipped")
    c.add_argument("--max-steps", type=int, default=d["max_steps"], help="budget runs longer than this are skipped")
    c.add_argument("--eval-windows", type=int, default=d["eval_windows"], help="validation windows per loss")
    c.add_argument("--tokenizer", choices=["char", "gpt2"], default=d["tokenizer"])
    add_seed(c, d["seed"])
    c.add_argument("--out", default=None, help="also write the result (with the command) to this JSON file")
    c.add_argument("--workers", type=int, default=d["workers"],
                   help="train the sweep's runs in this many processes on this machine (under torchrun: the ranks)")
    add_json(c)
    add_budget(c)
    c.set_defaults(func=cmd_scaling)

    d = DPO
    p = sub.add_parser("dpo", parents=[model_options(d["model"])],
                       help="Direct Preference Optimization on preference pairs (the loaded model is copied)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pairs", help='JSONL file, one {"prompt": ..., "chosen": ..., "rejected": ...} per line')
    src.add_argument("--synthetic", type=int, help="make N synthetic pairs: kind vs unkind adjective (see docs)")
    p.add_argument("--beta", type=float, default=d["beta"], help="how far the policy may move from the reference")
    p.add_argument("--steps", type=int, default=d["steps"])
    p.add_argument("--batch-size", type=int, default=d["batch_size"], help="pairs per step")
    p.add_argument("--lr", type=float, default=d["lr"])
    p.add_argument("--trainable", default=d["trainable"], help='"all" or "top:N" (last N blocks)')
    add_seed(p, d["seed"])
    p.add_argument("--out", default=None, help="checkpoint directory for the trained policy")
    add_budget(p)
    p.set_defaults(func=cmd_dpo)

    # None = RLHFConfig's value (tinygpt.defaults.RLHF), so only what was given is passed on
    d = RLHF
    r = sub.add_parser("rlhf", help="the toy RLHF pipeline: SFT, a reward model, PPO (a small character model)")
    r.add_argument("--n-layer", type=int, default=None, help=f"the toy model's blocks (default {d['n_layer']})")
    r.add_argument("--n-embd", type=int, default=None, help=f"its width (default {d['n_embd']})")
    r.add_argument("--sft-steps", type=int, default=None, help=f"default {d['sft_steps']}")
    r.add_argument("--sft-lr", type=float, default=None, help=f"SFT's peak learning rate (default {d['sft_lr']})")
    r.add_argument("--rm-steps", type=int, default=None, help=f"default {d['rm_steps']}")
    r.add_argument("--ppo-steps", type=int, default=None, help=f"default {d['ppo_steps']}")
    r.add_argument("--kl-coef", type=float, default=None,
                   help=f"KL penalty (default {d['kl_coef']}; 0 = reward hacking)")
    r.add_argument("--ppo-lr", type=float, default=None, help=f"default {d['ppo_lr']}")
    add_seed(r, None, help=f"default {d['seed']}")
    r.add_argument("--threads", type=int, default=d["threads"], help="torch threads (default: torch's choice)")
    r.add_argument("--samples", type=int, default=d["samples"], help="SFT vs PPO samples to print (text output)")
    add_json(r)
    add_budget(r)
    r.set_defaults(func=cmd_rlhf)
