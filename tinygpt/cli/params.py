"""`python -m tinygpt params`: parameters, memory, FLOPs and KV cache of any configuration (the Parameters &
compute tab's command). Nothing is allocated, and torch is never imported: GPT-3 answers at once."""
from __future__ import annotations

import argparse

from ..config import POS_ENCODINGS
from ..defaults import PARAMS
from .common import CliError, add_dtype, add_json, emit


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
    from ..config import GPTConfig
    from ..hf_config import fetch_hub_config, from_hf_config, hf_config_notes, hf_family, load_config_json

    starts = [flag for flag, v in (("--preset", a.preset), ("--config", a.config), ("--hub-id", a.hub_id)) if v]
    if len(starts) > 1:
        raise CliError(f"use one of {', '.join(starts)}: each gives the starting configuration")
    source = None
    if a.config or a.hub_id:
        d = load_config_json(a.config) if a.config else fetch_hub_config(a.hub_id, timeout=a.hub_timeout)
        cfg = from_hf_config(d)
        source = {"config_json": a.config or a.hub_id, "model_type": hf_family(d), "notes": hf_config_notes(d)}
    else:
        cfg = GPTConfig.from_preset(a.preset or PARAMS["preset"])
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
    from ..compute import estimate

    cfg, source = params_config(a)
    report = estimate(cfg, batch_size=a.batch_size, seq_len=a.seq_len, dtype=a.dtype,
                      optimizer=a.optimizer, tokens=a.tokens, tflops=a.tflops, mfu=a.mfu)
    if source:
        report["source"] = source
    return emit(a, report, params_lines)


def register(sub) -> None:
    from ..compute import OPTIMIZERS

    d = PARAMS
    q = sub.add_parser("params", help="parameters, memory, FLOPs and KV cache of a configuration")
    q.add_argument("--preset", default=None,  # None: --preset, --config and --hub-id exclude each other
                   help=f"starting shape (default {d['preset']}); the flags below override its fields")
    q.add_argument("--config", default=None, help="start from a Hugging Face config.json (file or its directory)")
    q.add_argument("--hub-id", default=None, help="start from a Hub model's config.json, e.g. mistralai/Mistral-7B-v0.1"
                   " (downloads only config.json, into the Hugging Face cache)")
    q.add_argument("--hub-timeout", type=float, default=d["hub_timeout"], help="seconds to wait for the Hub")
    for flag in ("--n-layer", "--n-embd", "--n-head", "--n-kv-head", "--block-size", "--vocab-size"):
        q.add_argument(flag, type=int, default=None)
    q.add_argument("--head-dim", type=int, default=None, help="width of each head (default n_embd / n_head)")
    q.add_argument("--ffn-mult", type=float, default=None, help="feed-forward width = round(mult * n_embd)")
    q.add_argument("--n-inner", type=int, default=None, help="feed-forward width, exactly (e.g. 11008)")
    q.add_argument("--mlp", choices=["gelu", "gated"], default=None, help="gated = SwiGLU, 3 matrices (LLaMA)")
    q.add_argument("--norm", choices=["layernorm", "rmsnorm"], default=None)
    q.add_argument("--pos-encoding", choices=list(POS_ENCODINGS), default=None)
    q.add_argument("--qkv-bias", action=argparse.BooleanOptionalAction, default=None,
                   help="biases on q, k, v (default: as --no-bias says); --qkv-bias --no-bias is Qwen2")
    q.add_argument("--n-experts", type=int, default=None, help="Mixture-of-Experts: expert MLPs per block (0 = dense)")
    q.add_argument("--moe-top-k", type=int, default=None, help="experts each token runs")
    q.add_argument("--no-bias", action="store_true")
    q.add_argument("--untied", action="store_true", help="separate LM head instead of reusing wte")
    q.add_argument("--tied", action="store_true", help="LM head reuses wte")
    q.add_argument("--batch-size", type=int, default=d["batch_size"])
    q.add_argument("--seq-len", type=int, default=d["seq_len"], help="default: the block size")
    add_dtype(q, default=d["dtype"], help="fp16/bf16 = mixed precision with fp32 master weights")
    q.add_argument("--optimizer", choices=list(OPTIMIZERS), default=d["optimizer"], help="sgd = SGD with momentum")
    q.add_argument("--tokens", type=whole_number, default=d["tokens"], help="training tokens D (e.g. 1e12)")
    q.add_argument("--tflops", type=float, default=d["tflops"], help="GPU peak TFLOPS (A100: 312)")
    q.add_argument("--mfu", type=float, default=d["mfu"], help="utilisation, a fraction in (0, 1]")
    add_json(q)
    q.set_defaults(func=cmd_params)
