"""Command line: `python -m tinygpt sample|params|train|finetune|eval|embed|attention|profile|scaling|dpo|rlhf ...`.

Each subcommand is one `cmd_*` function: check the arguments, load a model through `load()` (which prints the
offline-fallback notice), call into tinygpt, and print text or, with --json, one JSON object.
Every failure is one line on stderr and a non-zero exit code, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys

from .dtypes import torch_dtype


class CliError(Exception):
    """A user mistake: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + error
        raise CliError(message)


def load(a, dtype: str = "fp32"):
    """(model, tokenizer) for --model; the offline-fallback notice goes to stderr as one line."""
    from .loading import load_model

    model, tok = load_model(a.model, dtype=torch_dtype(dtype), hub_timeout=a.hub_timeout)
    if model.info.fallback:
        print(model.info.notice, file=sys.stderr)
    return model, tok


def emit(a, report: dict, lines) -> int:
    """Print the report as JSON (--json) or the human-readable lines."""
    if a.json:
        print(json.dumps(report))
    else:
        for line in lines(report) if callable(lines) else lines:
            print(line)
    return 0


def read_start(start: str) -> str:
    if start.startswith("FILE:"):
        with open(start[5:], "r", encoding="utf-8") as f:
            return f.read()
    return start


# ---- sample -------------------------------------------------------------------------------------
def cmd_sample(a) -> int:
    import torch

    from .sampling import check_sampling_args, encode_prompt, generate

    top_p = None if a.top_p == 1.0 else a.top_p
    a.top_k = a.top_k or None  # --top-k 0 = off, as in the Sampling tab
    check_sampling_args(a.temperature, a.top_k, a.top_p)
    if a.num_samples < 1 or a.max_new_tokens < 0:
        raise ValueError("--num-samples must be >= 1 and --max-new-tokens >= 0.")
    start = read_start(a.start)
    torch.manual_seed(a.seed)
    model, tok = load(a, a.dtype)
    layers = None if a.layers is None else named_layers_or_list(a.layers, model)
    x = torch.tensor([encode_prompt(tok, start)] * a.num_samples, dtype=torch.long)
    gen = torch.Generator().manual_seed(a.seed)
    out = generate(model, x, a.max_new_tokens, a.temperature, a.top_k, top_p, gen, layers=layers)
    samples = [tok.decode(row.tolist()) for row in out]
    report = {"samples": samples, "model": model.info.name, "fallback": model.info.fallback, "layers": layers}
    return emit(a, report, [line for s in samples for line in (s, "---------------")])


def named_layers_or_list(spec: str, model) -> list:
    """--layers 0,2,4, or a configuration of the Layer pruning tab: even, odd, first-half, last-half, full."""
    from .interpret.pruning import CONFIGS, named_layers

    key = spec.strip().lower().replace("-", " ")
    if key in CONFIGS and key != "custom":
        return named_layers(key, model.config.n_layer)
    return model.check_layers(spec)


# ---- params ---------------------------------------------------------------------------------------
def whole_number(text) -> int:
    """"1e12", "1_000_000", "300000000000" -> int, exactly (floats would round big token counts)."""
    from decimal import Decimal, InvalidOperation
    try:
        d = Decimal(str(text).replace("_", "").replace(",", ""))
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"expected a whole number like 1e12, got {text!r}") from None
    if not d.is_finite() or d != d.to_integral_value():
        raise argparse.ArgumentTypeError(f"expected a whole number like 1e12, got {text!r}")
    return int(d)


def params_config(a):
    """(GPTConfig, source): the starting shape (--preset, --config or --hub-id) with the command-line overrides
    applied (validated); source describes a config.json that was read (None for a preset)."""
    from .config import GPTConfig
    from .hf_config import fetch_hub_config, from_hf_config, hf_config_notes, hf_family, load_config_json

    starts = [flag for flag, v in (("--preset", a.preset), ("--config", a.config), ("--hub-id", a.hub_id)) if v]
    if len(starts) > 1:
        raise CliError(f"use one of {', '.join(starts)}: each gives the starting configuration")
    source = None
    if a.config or a.hub_id:
        d = load_config_json(a.config) if a.config else fetch_hub_config(a.hub_id, timeout=a.hub_timeout)
        cfg = from_hf_config(d)
        source = {"config_json": a.config or a.hub_id, "model_type": hf_family(d), "notes": hf_config_notes(d)}
    else:
        cfg = GPTConfig.from_preset(a.preset or "gpt2")
    names = ("n_layer", "n_embd", "n_head", "n_kv_head", "block_size", "vocab_size", "n_inner", "mlp", "norm",
             "pos_encoding", "qkv_bias", "n_experts", "moe_top_k")
    changes = {k: getattr(a, k) for k in names if getattr(a, k) is not None}
    if a.head_dim is not None:
        changes["head_size"] = a.head_dim
    if a.no_bias:
        changes["bias"] = False
    if a.untied and a.tied:
        raise CliError("use one of --tied, --untied")
    if a.untied or a.tied:
        changes["tie_weights"] = bool(a.tied)
    if a.ffn_mult is not None:
        if a.n_inner is not None:
            raise CliError("use one of --ffn-mult, --n-inner")
        changes["n_inner"] = round(a.ffn_mult * changes.get("n_embd", cfg.n_embd))
    return cfg.replace(**changes), source  # replace() re-runs validate(): bad shapes raise a plain ValueError


def params_lines(report: dict):
    if report.get("source"):
        src = report["source"]
        yield f"config.json: {src['config_json']} ({src['model_type']})"
        yield from (f"  note: {n}" for n in src["notes"])
    for k, v in report["params"].items():
        yield f"{k:>14}: {v:,}"
    i = report["inputs"]
    yield f"memory ({i['dtype']}, {i['optimizer']}, batch {i['batch_size']}, seq {i['seq_len']}):"
    for k, v in report["memory_bytes"].items():
        yield f"{k:>18}: {v:,} B ({v / 2 ** 30:.2f} GiB)"
    f = report["flops"]
    yield f"FLOPs per token: train {f['per_token_train']:,}, inference {f['per_token_inference']:,}"
    yield f"training FLOPs for {i['tokens']:,} tokens: {f['train_total']:.3e}"
    yield f"GPU-hours at {i['tflops']:g} TFLOPS x {i['mfu']:.0%} utilisation: {report['gpu_hours']:,.0f}"
    yield "formulas:"
    yield from (f"{k:>27}: {v}" for k, v in report["formulas"].items())


def cmd_params(a) -> int:
    from .compute import estimate

    cfg, source = params_config(a)
    report = estimate(cfg, batch_size=a.batch_size, seq_len=a.seq_len, dtype=a.dtype,
                      optimizer=a.optimizer, tokens=a.tokens, tflops=a.tflops, mfu=a.mfu)
    if source:
        report["source"] = source
    return emit(a, report, params_lines)


# ---- train / finetune / eval ------------------------------------------------------------------------
def print_progress(ev):
    """The training callback of the command line: one stderr line per evaluation."""
    if ev["val_loss"] is None:
        return
    print(f"step {ev['step']}/{ev['steps_total']}: train {ev['train_loss']:.4f} val {ev['val_loss']:.4f} "
          f"acc {ev['val_accuracy']:.3f} {ev['tokens_per_s']:.0f} tok/s {ev['elapsed']:.0f}s", file=sys.stderr,
          flush=True)


def finish_training(a, model, tok, result, extra: dict | None = None) -> int:
    from .checkpoint import save_checkpoint

    save_checkpoint(model, tok, a.out, dtype=torch_dtype(a.save_dtype))
    keys = ("steps", "train_loss", "val_loss", "val_accuracy", "tokens_per_s", "seconds")
    summary = {**{k: result[k] for k in keys}, **(extra or {})}
    return emit(a, summary, lambda s: [", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                 for k, v in s.items()), f"saved to {a.out}"])


def train_config(a, context, **extra):
    from .train import TrainConfig
    return TrainConfig(steps=a.steps, batch_size=a.batch_size, context=context, lr=a.lr, warmup=a.warmup,
                       eval_interval=a.eval_interval, seed=a.seed, weight_decay=a.weight_decay,
                       keep_best=a.keep_best, **extra)


def cmd_train(a) -> int:
    import torch

    from .config import GPTConfig
    from .data import encode_text, make_tokenizer, read_text, split_tokens
    from .model import GPT
    from .train import train

    text = read_text(a.text)
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
    torch.manual_seed(a.seed)
    model = GPT(cfg)
    print(f"{model.num_params():,} parameters; {len(train_data):,} train / {len(val_data):,} val tokens",
          file=sys.stderr)
    result = train(model, train_data, val_data, train_config(a, a.block_size, eval_batches=a.eval_batches),
                   callback=print_progress)
    return finish_training(a, model, tok, result, moe_report(model, val_data, a.block_size))


def moe_report(model, val_data, context) -> dict:
    """params_total / params_active (per token) for every model; for an MoE also expert_load (fraction of the
    validation tokens each expert takes, per layer and averaged) and the dense width with equal active params."""
    from .moe import dense_n_inner, expert_load
    from .params import count_parameters

    counts = count_parameters(model.config)
    out = {"params_total": counts["total"], "params_active": counts["active"]}
    if model.config.n_experts:
        load = expert_load(model, val_data, context)
        out["expert_load"] = {"per_layer": [[round(f, 4) for f in row] for row in load["per_layer"]],
                              "average": [round(f, 4) for f in load["average"]], "tokens": load["tokens"]}
        out["dense_equal_active_n_inner"] = dense_n_inner(model.config)
    return out


def cmd_finetune(a) -> int:
    from .data import encode_text, read_text
    from .finetune import finetune_config, holdout_split, trainable_copy
    from .train import train

    base, tok = load(a)
    context = min(a.block_size, base.config.block_size)
    train_data, val_data = holdout_split(encode_text(tok, read_text(a.text)), context, a.val_fraction)
    cfg = finetune_config(steps=a.steps, context=context, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                          trainable=a.trainable, keep_best=a.keep_best, weight_decay=a.weight_decay,
                          **({"warmup": a.warmup} if a.warmup is not None else {}),
                          **({"eval_interval": a.eval_interval} if a.eval_interval is not None else {}))
    model = trainable_copy(base, cfg.trainable)  # the loaded model stays as it was (it may be shared)
    result = train(model, train_data, val_data, cfg, callback=print_progress)
    return finish_training(a, model, tok, result, {"best_step": result["best_step"]})


def cmd_eval(a) -> int:
    import torch

    from .data import encode_text, read_text, split_tokens
    from .evaluate import evaluate

    model, tok = load(a)
    _, held_out = split_tokens(encode_text(tok, read_text(a.text)), a.val_fraction)
    context = min(a.context, model.config.block_size)
    torch.set_grad_enabled(False)
    res = {**evaluate(model, held_out, context), "model": model.info.name, "fallback": model.info.fallback,
           "context": context}
    return emit(a, res, [f"held-out loss {res['loss']:.4f} nats/token, perplexity {res['perplexity']:.1f}, "
                         f"accuracy {res['accuracy']:.3f} on {res['tokens']:,} tokens (windows of {context})"])


# ---- embed ------------------------------------------------------------------------------------------
def cmd_embed(a) -> int:
    import torch

    from .interpret.embeddings import cosine_matrix, word_vectors

    words = [w.strip() for w in str(a.words).split(",") if w.strip()]
    if not words:
        raise ValueError("--words needs at least one word, e.g. --words dog,city,xqzt")
    model, tok = load(a)
    rows = word_vectors(model, tok, words, pool=a.pool, space=a.space)
    cos = cosine_matrix(torch.stack([r["vector"] for r in rows]))  # (N, N)
    report = {"model": model.info.name, "fallback": model.info.fallback, "pool": a.pool, "space": a.space,
              "words": [{k: r[k] for k in ("word", "ids", "pieces", "norm")} for r in rows],
              "cosine": [[round(v, 6) for v in row] for row in cos.tolist()]}
    width = max(len(w) for w in words)
    lines = [f"{r['word']:>{width}}  norm {r['norm']:.4f}  ids {r['ids']}  pieces {r['pieces']}" for r in rows]
    lines += [f"cosine ({a.pool} of each word's tokens):"]
    lines += [f"{w:>{width}}  " + " ".join(f"{v:+.3f}" for v in row) for w, row in zip(words, cos.tolist())]
    return emit(a, report, lines)


# ---- attention ------------------------------------------------------------------------------------
def cmd_attention(a) -> int:
    import torch

    from .interpret.attention import attention_maps, head_patterns

    text = read_start(a.text)
    if not text.strip():
        raise ValueError("--text is empty: give the text whose attention to show.")
    model, tok = load(a)
    ids = tok.encode(text)
    if not ids:
        raise ValueError("--text gives no tokens.")
    block = model.config.block_size
    if len(ids) > block:
        print(f"note: {len(ids)} tokens is longer than the context; kept the first {block}.", file=sys.stderr)
        ids = ids[:block]
    layers = model.check_layers(a.layers)
    maps = attention_maps(model, torch.tensor([ids]), layers)  # per block: (1, nh, T, T)
    report = {"tokens": [tok.piece(i) for i in ids],
              "weights": [[[[round(w, 6) for w in row] for row in head] for head in m[0].float().tolist()]
                          for m in maps]}

    def lines(_):
        yield f"{len(ids)} tokens: " + " | ".join(repr(t) for t in report["tokens"])
        yield "layer head  previous  first(sink)  self  max-weight  entropy  pattern"
        for r in head_patterns(maps, layers, model.config.causal):
            yield (f"{r['layer']:>5} {r['head']:>4}  {r['previous']:8.3f}  {r['first']:11.3f}  {r['self']:4.3f}  "
                   f"{r['max_weight']:10.3f}  {r['entropy']:7.3f}  {r['pattern']}")
    return emit(a, report, lines)


# ---- profile ----------------------------------------------------------------------------------------
def profile_lines(r: dict):
    from .efficiency.profile import shares

    t, f = shares(r["seconds"]), shares(r["flops"])
    yield (f"{r['model']}: forward pass of batch {r['batch']} x {r['seq_len']} tokens, median of {r['repeats']} "
           f"runs on {r['threads']} thread(s): {1000 * r['total_seconds']:.2f} ms")
    yield f"{'component':<13} {'ms':>9} {'time share':>11} {'FLOPs':>12} {'FLOPs share':>12}"
    for k in r["seconds"]:
        yield (f"{k:<13} {1000 * r['seconds'][k]:>9.3f} {t[k]:>11.1%} {r['flops'][k]:>12.3e} {f[k]:>12.1%}")


def cmd_profile(a) -> int:
    import torch

    from .efficiency import profile_forward

    if a.threads is not None:
        if a.threads < 1:
            raise ValueError("--threads must be at least 1.")
        torch.set_num_threads(a.threads)
    model, _ = load(a, a.dtype)
    r = profile_forward(model, a.batch, a.seq_len, a.repeats)
    report = {**r, "model": model.info.name, "fallback": model.info.fallback, "dtype": a.dtype}
    return emit(a, report, profile_lines)


# ---- scaling ----------------------------------------------------------------------------------------
def shapes_arg(text):
    from .beyond.scaling import parse_shapes
    try:
        return parse_shapes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def budgets_arg(text):
    from .beyond.scaling import parse_budgets
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
    from .beyond.scaling import SweepConfig, scaling_sweep, sweep_corpus
    from .data import read_text

    cfg = SweepConfig(shapes=a.shapes, steps=a.steps, budgets=a.budgets, context=a.context, batch_size=a.batch_size,
                      lr=a.lr, min_steps=a.min_steps, max_steps=a.max_steps, eval_windows=a.eval_windows,
                      tokenizer=a.tokenizer, seed=a.seed)
    text, name = (read_text(a.text), a.text) if a.text else sweep_corpus()
    if not a.text and name != "tiny-shakespeare":
        print(f"note: using {name}", file=sys.stderr)

    def progress(ev):
        if ev["kind"] == "run":
            r = ev["result"]
            print(f"run {ev['run'] + 1}/{ev['runs_total']} ({r['group']}): N {r['params']:,} D {r['tokens']:,} "
                  f"val {r['val_loss']:.4f} {r['seconds']:.1f}s", file=sys.stderr, flush=True)

    result = scaling_sweep(cfg, text, progress, corpus_name=name)
    result["command"] = scaling_command(a)
    if a.out:
        import os
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return emit(a, result, scaling_lines)


# ---- dpo / rlhf -------------------------------------------------------------------------------------------
def cmd_dpo(a) -> int:
    from .beyond.dpo import DPOConfig, read_pairs, synthetic_pairs, train_dpo
    from .checkpoint import save_checkpoint

    if a.synthetic is not None and a.synthetic < 2:
        raise ValueError("--synthetic needs at least 2 pairs.")
    pairs = synthetic_pairs(a.synthetic, a.seed) if a.synthetic is not None else read_pairs(a.pairs)
    base, tok = load(a)
    cfg = DPOConfig(steps=a.steps, batch_size=a.batch_size, lr=a.lr, beta=a.beta, seed=a.seed, trainable=a.trainable,
                    eval_interval=max(1, a.steps // 10))

    def progress(ev):
        if ev["val"] is not None:
            v = ev["val"]
            print(f"step {ev['step']}/{ev['steps_total']}: loss {v['loss']:.4f} reward accuracy "
                  f"{v['reward_accuracy']:.0%} margin {v['reward_margin']:+.3f} (chosen {v['chosen_reward']:+.3f}, "
                  f"rejected {v['rejected_reward']:+.3f}) {ev['elapsed']:.0f}s", file=sys.stderr, flush=True)

    result = train_dpo(base, tok, pairs, cfg, callback=progress)
    where = f"{result['held_out']} held-out pairs" if result["held_out"] else "the training pairs (too few to hold out)"
    print(f"{len(pairs)} pairs, beta {a.beta}; reported numbers are on {where}", file=sys.stderr)
    if a.out:
        save_checkpoint(result["policy"], tok, a.out)
    report = {k: result[k] for k in ("steps", "loss", "reward_accuracy", "reward_margin", "seconds")}
    return emit(a, report, [", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in report.items())] + ([f"saved to {a.out}"] if a.out else []))


def cmd_rlhf(a) -> int:
    import torch

    from .beyond.rlhf import RLHFConfig, run_rlhf, summary

    changes = {k: getattr(a, k) for k in ("seed", "sft_steps", "rm_steps", "ppo_steps", "kl_coef", "ppo_lr")
               if getattr(a, k) is not None}
    if any(getattr(a, k, 0) is not None and getattr(a, k) < 0 for k in ("sft_steps", "rm_steps", "ppo_steps")):
        raise ValueError("Step counts must be >= 0.")
    if a.kl_coef is not None and a.kl_coef < 0:
        raise ValueError("--kl-coef must be >= 0.")
    cfg = RLHFConfig(**changes)
    if a.threads:
        torch.set_num_threads(a.threads)

    def progress(ev):
        s = ev["stage"]
        if s == "sft" and ev["val_loss"] is not None:
            print(f"SFT step {ev['step']}/{ev['steps_total']}: train {ev['train_loss']:.4f} val {ev['val_loss']:.4f} "
                  f"{ev['elapsed']:.0f}s", file=sys.stderr, flush=True)
        elif s == "reward_model" and ev["val_accuracy"] is not None:
            print(f"reward model step {ev['step']}/{ev['steps_total']}: val accuracy {ev['val_accuracy']:.1%} "
                  f"{ev['elapsed']:.0f}s", file=sys.stderr, flush=True)
        elif s == "ppo" and (ev["step"] % max(1, ev["steps_total"] // 10) == 0 or ev["step"] == ev["steps_total"]):
            print(f"PPO step {ev['step']}/{ev['steps_total']}: reward {ev['reward']:+.3f} KL {ev['kl']:.3f} "
                  f"grammatical {ev['grammatical']:.0%} {ev['elapsed']:.0f}s  {ev['sample']!r}", file=sys.stderr,
                  flush=True)

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
    return emit(a, summary(result), lines)


# ---- parser -----------------------------------------------------------------------------------------
def model_options(default_model: str = "gpt2") -> Parser:
    """The options every model command shares: --model, --hub-timeout, --json."""
    p = Parser(add_help=False)
    p.add_argument("--model", default=default_model,
                   help="gpt2, gpt2-medium, gpt2-large, gpt2-xl, tiny-shakespeare, or a checkpoint directory")
    p.add_argument("--hub-timeout", type=float, default=5.0, help="seconds to wait for the Hub before falling back")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def training_options(steps: int = 1000, lr: float = 1e-3, block_size: int = 128, batch_size: int = 16,
                     warmup=50, eval_interval=100, keep_best: bool = False) -> Parser:
    """The options train and finetune share."""
    t = Parser(add_help=False)
    t.add_argument("--text", required=True, help="UTF-8 text file to train on")
    t.add_argument("--block-size", type=int, default=block_size, help="context length")
    t.add_argument("--batch-size", type=int, default=batch_size)
    t.add_argument("--steps", type=int, default=steps)
    t.add_argument("--lr", type=float, default=lr)
    t.add_argument("--warmup", type=int, default=warmup)
    t.add_argument("--weight-decay", type=float, default=0.1)
    t.add_argument("--eval-interval", type=int, default=eval_interval)
    t.add_argument("--val-fraction", type=float, default=0.1)
    t.add_argument("--seed", type=int, default=1337)
    t.add_argument("--save-dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    t.add_argument("--keep-best", action=argparse.BooleanOptionalAction, default=keep_best,
                   help="end with the best-validation weights")
    t.add_argument("--out", required=True, help="checkpoint directory to write")
    return t


def build_parser() -> Parser:
    from .config import POS_ENCODINGS
    from .finetune import DEFAULTS as FT

    p = Parser(prog="python -m tinygpt", description="TinyGPT Lab command line")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    model = model_options()

    s = sub.add_parser("sample", parents=[model], help="generate text (like nanoGPT's sample.py)")
    s.add_argument("--start", default="\n", help='prompt, or FILE:path to read it from a file')
    s.add_argument("--num-samples", type=int, default=10)
    s.add_argument("--max-new-tokens", type=int, default=500)
    s.add_argument("--temperature", type=float, default=0.8)
    s.add_argument("--top-k", type=int, default=200, help="keep the k most likely tokens (0 = off)")
    s.add_argument("--top-p", type=float, default=1.0)
    s.add_argument("--seed", type=int, default=1337)
    s.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    s.add_argument("--layers", default=None, help="blocks to run, e.g. 0,2,4 or even/odd/first-half/last-half")
    s.set_defaults(func=cmd_sample)

    q = sub.add_parser("params", help="parameters, memory, FLOPs and KV cache of a configuration")
    q.add_argument("--preset", default=None, help="starting shape (default gpt2); the flags below override its fields")
    q.add_argument("--config", default=None, help="start from a Hugging Face config.json (file or its directory)")
    q.add_argument("--hub-id", default=None, help="start from a Hub model's config.json, e.g. mistralai/Mistral-7B-v0.1"
                   " (downloads only config.json, into the Hugging Face cache)")
    q.add_argument("--hub-timeout", type=float, default=10.0, help="seconds to wait for the Hub")
    for flag in ("--n-layer", "--n-embd", "--n-head", "--n-kv-head", "--block-size", "--vocab-size"):
        q.add_argument(flag, type=int, default=None)
    q.add_argument("--head-dim", type=int, default=None, help="width of each head (default n_embd / n_head)")
    q.add_argument("--ffn-mult", type=float, default=None, help="feed-forward width = round(mult * n_embd)")
    q.add_argument("--n-inner", type=int, default=None, help="feed-forward width, exactly (e.g. 11008)")
    q.add_argument("--mlp", choices=["gelu", "gated"], default=None, help="gated = SwiGLU, 3 matrices (LLaMA)")
    q.add_argument("--norm", choices=["layernorm", "rmsnorm"], default=None)
    q.add_argument("--pos-encoding", choices=["learned", "sinusoidal", "rope", "none"], default=None)
    q.add_argument("--qkv-bias", action=argparse.BooleanOptionalAction, default=None,
                   help="biases on q, k, v (default: as --no-bias says); --qkv-bias --no-bias is Qwen2")
    q.add_argument("--n-experts", type=int, default=None, help="Mixture-of-Experts: expert MLPs per block (0 = dense)")
    q.add_argument("--moe-top-k", type=int, default=None, help="experts each token runs")
    q.add_argument("--no-bias", action="store_true")
    q.add_argument("--untied", action="store_true", help="separate LM head instead of reusing wte")
    q.add_argument("--tied", action="store_true", help="LM head reuses wte")
    q.add_argument("--batch-size", type=int, default=1)
    q.add_argument("--seq-len", type=int, default=None, help="default: the block size")
    q.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32",
                   help="fp16/bf16 = mixed precision with fp32 master weights")
    q.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw", help="sgd = SGD with momentum")
    q.add_argument("--tokens", type=whole_number, default=10 ** 12, help="training tokens D (e.g. 1e12)")
    q.add_argument("--tflops", type=float, default=312.0, help="GPU peak TFLOPS (A100: 312)")
    q.add_argument("--mfu", type=float, default=0.4, help="utilisation, a fraction in (0, 1]")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_params)

    t = sub.add_parser("train", parents=[training_options()], help="train a GPT from scratch")
    t.add_argument("--tokenizer", choices=["char", "gpt2"], default="char")
    t.add_argument("--n-layer", type=int, default=4)
    t.add_argument("--n-head", type=int, default=4)
    t.add_argument("--n-embd", type=int, default=128)
    t.add_argument("--dropout", type=float, default=0.0, help="all three dropout rates")
    t.add_argument("--embd-pdrop", type=float, default=None)
    t.add_argument("--attn-pdrop", type=float, default=None)
    t.add_argument("--resid-pdrop", type=float, default=None)
    t.add_argument("--no-bias", action="store_true")
    t.add_argument("--no-causal-mask", action="store_true")
    t.add_argument("--no-layernorm", action="store_true")
    t.add_argument("--no-attn-scale", action="store_true")
    t.add_argument("--n-inner", type=int, default=None, help="feed-forward width (default 4 * n_embd)")
    t.add_argument("--n-experts", type=int, default=0, help="Mixture-of-Experts: expert MLPs per block (0 = dense)")
    t.add_argument("--moe-top-k", type=int, default=1, help="experts per token (1 = Switch routing)")
    t.add_argument("--moe-aux-weight", type=float, default=0.01, help="weight of the load-balancing loss")
    t.add_argument("--eval-batches", type=int, default=8, help="validation batches per evaluation")
    t.add_argument("--pos-encoding", choices=list(POS_ENCODINGS), default="learned",
                   help="learned (GPT-2's wpe), sinusoidal (fixed table), rope (rotary, in attention) or none")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_train)

    # the Fine-tune tab's defaults (tinygpt.finetune.DEFAULTS): warm-up and evaluations scale with --steps
    f = sub.add_parser("finetune", parents=[model, training_options(
        FT["steps"], FT["lr"], FT["context"], FT["batch_size"], None, None, FT["keep_best"])],
        help="fine-tune a model on a text file (the loaded model is copied, never changed)")
    f.add_argument("--trainable", default=FT["trainable"], help='"all" or "top:N" (last N blocks)')
    f.set_defaults(func=cmd_finetune)

    v = sub.add_parser("eval", parents=[model], help="held-out loss of a model on the last part of a text")
    v.add_argument("--text", required=True)
    v.add_argument("--context", type=int, default=128)
    v.add_argument("--val-fraction", type=float, default=0.1)
    v.set_defaults(func=cmd_eval)

    e = sub.add_parser("embed", parents=[model], help="token ids, embedding norms and cosine similarities of words")
    e.add_argument("--words", required=True, help="comma-separated, e.g. dog,city,xqzt")
    e.add_argument("--pool", choices=["first", "mean"], default="mean",
                   help="a multi-token word is its first token's embedding or the mean of its tokens'")
    e.add_argument("--space", action="store_true", help="encode ' word' (as mid-sentence) instead of 'word'")
    e.set_defaults(func=cmd_embed)

    w = sub.add_parser("attention", parents=[model],
                       help="attention weights of every layer and head for a text (--json: [layer][head][query][key])")
    w.add_argument("--text", required=True, help="the text, or FILE:path to read it from a file")
    w.add_argument("--layers", default=None, help="blocks to run and show, e.g. 0,5 (default: all)")
    w.set_defaults(func=cmd_attention)

    r = sub.add_parser("profile", parents=[model], help="time one forward pass by component next to its FLOPs")
    r.add_argument("--batch", type=int, default=1)
    r.add_argument("--seq-len", type=int, default=128)
    r.add_argument("--repeats", type=int, default=5, help="timed runs after 2 warm-up runs; medians are reported")
    r.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    r.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    r.set_defaults(func=cmd_profile)

    from .beyond.scaling import SweepConfig
    sd = SweepConfig()
    c = sub.add_parser("scaling", help="train a sweep of small models; fit L(N) and the compute-optimal N per budget")
    c.add_argument("--text", default=None, help="UTF-8 text (default: Tiny Shakespeare, offline: the Python docs)")
    c.add_argument("--shapes", type=shapes_arg, default=sd.shapes,
                   help="model sizes as layers x heads x d_model, e.g. 1x2x16,2x4x64")
    c.add_argument("--steps", type=int, default=sd.steps, help="training steps of every model in the size sweep")
    c.add_argument("--budgets", type=budgets_arg, default=sd.budgets, help="compute budgets in FLOPs, e.g. 3e10,1e11")
    c.add_argument("--context", type=int, default=sd.context)
    c.add_argument("--batch-size", type=int, default=sd.batch_size)
    c.add_argument("--lr", type=float, default=sd.lr)
    c.add_argument("--min-steps", type=int, default=sd.min_steps, help="budget runs shorter than this are skipped")
    c.add_argument("--max-steps", type=int, default=sd.max_steps, help="budget runs longer than this are skipped")
    c.add_argument("--eval-windows", type=int, default=sd.eval_windows, help="validation windows per loss")
    c.add_argument("--tokenizer", choices=["char", "gpt2"], default=sd.tokenizer)
    c.add_argument("--seed", type=int, default=sd.seed)
    c.add_argument("--out", default=None, help="also write the result (with the command) to this JSON file")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_scaling)
    from .beyond.dpo import DPOConfig
    from .beyond.rlhf import RLHFConfig
    dc, rc = DPOConfig(), RLHFConfig()
    d = sub.add_parser("dpo", parents=[model_options("tiny-shakespeare")],
                       help="Direct Preference Optimization on preference pairs (the loaded model is copied)")
    src = d.add_mutually_exclusive_group(required=True)
    src.add_argument("--pairs", help='JSONL file, one {"prompt": ..., "chosen": ..., "rejected": ...} per line')
    src.add_argument("--synthetic", type=int, help="make N synthetic pairs: kind vs unkind adjective (see docs)")
    d.add_argument("--beta", type=float, default=dc.beta, help="how far the policy may move from the reference")
    d.add_argument("--steps", type=int, default=dc.steps)
    d.add_argument("--batch-size", type=int, default=dc.batch_size, help="pairs per step")
    d.add_argument("--lr", type=float, default=dc.lr)
    d.add_argument("--trainable", default=dc.trainable, help='"all" or "top:N" (last N blocks)')
    d.add_argument("--seed", type=int, default=dc.seed)
    d.add_argument("--out", default=None, help="checkpoint directory for the trained policy")
    d.set_defaults(func=cmd_dpo)

    r = sub.add_parser("rlhf", help="the toy RLHF pipeline: SFT, a reward model, PPO (a ~1M-parameter model)")
    r.add_argument("--sft-steps", type=int, default=None, help=f"default {rc.sft_steps}")
    r.add_argument("--rm-steps", type=int, default=None, help=f"default {rc.rm_steps}")
    r.add_argument("--ppo-steps", type=int, default=None, help=f"default {rc.ppo_steps}")
    r.add_argument("--kl-coef", type=float, default=None, help=f"KL penalty (default {rc.kl_coef}; 0 = reward hacking)")
    r.add_argument("--ppo-lr", type=float, default=None, help=f"default {rc.ppo_lr}")
    r.add_argument("--seed", type=int, default=None, help=f"default {rc.seed}")
    r.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    r.add_argument("--samples", type=int, default=8, help="SFT vs PPO samples to print (text output)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_rlhf)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        a = parser.parse_args(argv)
        return a.func(a)
    except (CliError, ValueError, KeyError, FileNotFoundError, OSError, RuntimeError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
