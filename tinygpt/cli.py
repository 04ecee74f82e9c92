"""Command line: `python -m tinygpt sample|params|train|finetune|embed ...` (nanoGPT's habits).

Every failure is one line on stderr and a non-zero exit code, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class CliError(Exception):
    """A user mistake: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + error
        raise CliError(message)


def _torch_dtype(name: str):
    import torch
    return getattr(torch, DTYPES[name])


def parse_layers(text):
    """"0,2,4" -> [0, 2, 4]; None/"" -> None (all blocks)."""
    if text is None or not str(text).strip():
        return None
    try:
        return [int(t) for t in str(text).replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise ValueError(f"Layers must be whole numbers separated by commas, like 0,2,4 (got {text!r}).") from None


def read_start(start: str) -> str:
    if start.startswith("FILE:"):
        with open(start[5:], "r", encoding="utf-8") as f:
            return f.read()
    return start


# ---- sample -------------------------------------------------------------------------------------
def cmd_sample(a) -> int:
    import torch
    from .loading import load_model
    from .sampling import check_sampling_args, generate

    top_p = None if a.top_p == 1.0 else a.top_p
    check_sampling_args(a.temperature, a.top_k, a.top_p)
    if a.num_samples < 1 or a.max_new_tokens < 0:
        raise ValueError("--num-samples must be >= 1 and --max-new-tokens >= 0.")
    layers = parse_layers(a.layers)
    start = read_start(a.start)
    torch.manual_seed(a.seed)
    model, tok = load_model(a.model, dtype=_torch_dtype(a.dtype), hub_timeout=a.hub_timeout)
    model.check_layers(layers)
    ids = tok.encode(start)
    if not ids:
        ids = [tok.eot_token if tok.eot_token is not None else 0]
    x = torch.tensor([ids] * a.num_samples, dtype=torch.long)
    gen = torch.Generator().manual_seed(a.seed)
    out = generate(model, x, a.max_new_tokens, a.temperature, a.top_k, top_p, gen, layers=layers)
    samples = [tok.decode(row.tolist()) for row in out]
    if model.info.fallback:
        print(model.info.notice, file=sys.stderr)
    if a.json:
        print(json.dumps({"samples": samples, "model": model.info.name, "fallback": model.info.fallback,
                          "layers": layers}))
    else:
        for s in samples:
            print(s)
            print("---------------")
    return 0


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
    """The preset's GPTConfig with the command-line overrides applied (validated)."""
    from .config import GPTConfig

    cfg = GPTConfig.from_preset(a.preset)
    names = ("n_layer", "n_embd", "n_head", "n_kv_head", "block_size", "vocab_size")
    changes = {k: getattr(a, k) for k in names if getattr(a, k) is not None}
    if a.no_bias:
        changes["bias"] = False
    if a.untied:
        changes["tie_weights"] = False
    if a.ffn_mult is not None:
        changes["n_inner"] = round(a.ffn_mult * changes.get("n_embd", cfg.n_embd))
    return cfg.replace(**changes)  # replace() re-runs validate(): bad shapes raise a plain ValueError


def cmd_params(a) -> int:
    from .compute import estimate

    cfg = params_config(a)
    report = estimate(cfg, batch_size=a.batch_size, seq_len=a.seq_len, dtype=a.dtype, optimizer=a.optimizer,
                      tokens=a.tokens, tflops=a.tflops, mfu=a.mfu)
    if a.json:
        print(json.dumps(report))
        return 0
    for k, v in report["params"].items():
        print(f"{k:>14}: {v:,}")
    i = report["inputs"]
    print(f"memory ({i['dtype']}, {i['optimizer']}, batch {i['batch_size']}, seq {i['seq_len']}):")
    for k, v in report["memory_bytes"].items():
        print(f"{k:>18}: {v:,} B ({v / 2 ** 30:.2f} GiB)")
    f = report["flops"]
    print(f"FLOPs per token: train {f['per_token_train']:,}, inference {f['per_token_inference']:,}")
    print(f"training FLOPs for {i['tokens']:,} tokens: {f['train_total']:.3e}")
    print(f"GPU-hours at {i['tflops']:g} TFLOPS x {i['mfu']:.0%} utilisation: {report['gpu_hours']:,.0f}")
    return 0


# ---- train / finetune -----------------------------------------------------------------------------
def _progress(ev):
    if ev["val_loss"] is None:
        return
    print(f"step {ev['step']}/{ev['steps_total']}: train {ev['train_loss']:.4f} val {ev['val_loss']:.4f} "
          f"acc {ev['val_accuracy']:.3f} {ev['tokens_per_s']:.0f} tok/s {ev['elapsed']:.0f}s", file=sys.stderr,
          flush=True)


def _finish(a, model, tok, result) -> int:
    from .checkpoint import save_checkpoint

    save_checkpoint(model, tok, a.out, dtype=_torch_dtype(a.save_dtype))
    keys = ("steps", "train_loss", "val_loss", "val_accuracy", "tokens_per_s", "seconds")
    summary = {k: result[k] for k in keys}
    if a.json:
        print(json.dumps(summary))
    else:
        print(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()))
        print(f"saved to {a.out}")
    return 0


def _train_config(a, context):
    from .train import TrainConfig
    return TrainConfig(steps=a.steps, batch_size=a.batch_size, context=context, lr=a.lr, warmup=a.warmup,
                       eval_interval=a.eval_interval, seed=a.seed, weight_decay=a.weight_decay,
                       trainable=getattr(a, "trainable", "all"), keep_best=a.keep_best)


def cmd_train(a) -> int:
    import torch
    from .config import GPTConfig
    from .data import encode_text, make_tokenizer, read_text
    from .model import GPT
    from .train import split_tokens, train

    text = read_text(a.text)
    tok = make_tokenizer(a.tokenizer, text)
    data = encode_text(tok, text)
    train_data, val_data = split_tokens(data, a.val_fraction)
    d = a.dropout
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=a.block_size, n_layer=a.n_layer, n_head=a.n_head,
                    n_embd=a.n_embd, embd_pdrop=d if a.embd_pdrop is None else a.embd_pdrop,
                    attn_pdrop=d if a.attn_pdrop is None else a.attn_pdrop,
                    resid_pdrop=d if a.resid_pdrop is None else a.resid_pdrop, bias=not a.no_bias,
                    causal=not a.no_causal_mask, layernorm=not a.no_layernorm, attn_scale=not a.no_attn_scale)
    torch.manual_seed(a.seed)
    model = GPT(cfg)
    print(f"{model.num_params():,} parameters; {len(train_data):,} train / {len(val_data):,} val tokens",
          file=sys.stderr)
    result = train(model, train_data, val_data, _train_config(a, a.block_size), callback=_progress)
    return _finish(a, model, tok, result)


def cmd_finetune(a) -> int:
    from .data import encode_text, read_text
    from .loading import load_model
    from .train import split_tokens, train

    model, tok = load_model(a.model, hub_timeout=a.hub_timeout)
    if model.info.fallback:
        print(model.info.notice, file=sys.stderr)
    data = encode_text(tok, read_text(a.text))
    train_data, val_data = split_tokens(data, a.val_fraction)
    context = min(a.block_size, model.config.block_size)
    result = train(model, train_data, val_data, _train_config(a, context), callback=_progress)
    return _finish(a, model, tok, result)


# ---- embed ------------------------------------------------------------------------------------------
def cmd_embed(a) -> int:
    import torch
    from .embeddings import cosine_matrix, word_vectors
    from .loading import load_model

    words = [w.strip() for w in str(a.words).split(",") if w.strip()]
    if not words:
        raise ValueError("--words needs at least one word, e.g. --words dog,city,xqzt")
    model, tok = load_model(a.model, hub_timeout=a.hub_timeout)
    if model.info.fallback:
        print(model.info.notice, file=sys.stderr)
    rows = word_vectors(model, tok, words, pool=a.pool, space=a.space)
    cos = cosine_matrix(torch.stack([r["vector"] for r in rows]))  # (N, N)
    report = {"model": model.info.name, "fallback": model.info.fallback, "pool": a.pool, "space": a.space,
              "words": [{k: r[k] for k in ("word", "ids", "pieces", "norm")} for r in rows],
              "cosine": [[round(v, 6) for v in row] for row in cos.tolist()]}
    if a.json:
        print(json.dumps(report))
    else:
        width = max(len(w) for w in words)
        for r in rows:
            print(f"{r['word']:>{width}}  norm {r['norm']:.4f}  ids {r['ids']}  pieces {r['pieces']}")
        print(f"cosine ({a.pool} of each word's tokens):")
        for w, row in zip(words, cos.tolist()):
            print(f"{w:>{width}}  " + " ".join(f"{v:+.3f}" for v in row))
    return 0


# ---- eval ---------------------------------------------------------------------------------------------
def cmd_eval(a) -> int:
    import torch
    from .data import encode_text, read_text
    from .loading import load_model
    from .train import evaluate, split_tokens

    model, tok = load_model(a.model, hub_timeout=a.hub_timeout)
    _, held_out = split_tokens(encode_text(tok, read_text(a.text)), a.val_fraction)
    torch.set_grad_enabled(False)
    res = evaluate(model, held_out, min(a.context, model.config.block_size))
    res.update(model=model.info.name, fallback=model.info.fallback, context=min(a.context, model.config.block_size))
    if a.json:
        print(json.dumps(res))
    else:
        print(f"held-out loss {res['loss']:.4f} nats/token, perplexity {res['perplexity']:.1f}, "
              f"accuracy {res['accuracy']:.3f} on {res['tokens']:,} tokens (windows of {res['context']})")
    return 0


# ---- parser -----------------------------------------------------------------------------------------
def build_parser() -> Parser:
    p = Parser(prog="python -m tinygpt", description="TinyGPT Lab command line")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)

    s = sub.add_parser("sample", help="generate text (like nanoGPT's sample.py)")
    s.add_argument("--start", default="\n", help='prompt, or FILE:path to read it from a file')
    s.add_argument("--num-samples", type=int, default=10)
    s.add_argument("--max-new-tokens", type=int, default=500)
    s.add_argument("--temperature", type=float, default=0.8)
    s.add_argument("--top-k", type=int, default=200)
    s.add_argument("--top-p", type=float, default=1.0)
    s.add_argument("--seed", type=int, default=1337)
    s.add_argument("--model", default="gpt2")
    s.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    s.add_argument("--layers", default=None, help="blocks to run, e.g. 0,2,4 (pruning)")
    s.add_argument("--hub-timeout", type=float, default=5.0)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_sample)

    q = sub.add_parser("params", help="parameters, memory, FLOPs and KV cache of a configuration")
    q.add_argument("--preset", default="gpt2", help="starting shape; the flags below override its fields")
    for flag in ("--n-layer", "--n-embd", "--n-head", "--n-kv-head", "--block-size", "--vocab-size"):
        q.add_argument(flag, type=int, default=None)
    q.add_argument("--ffn-mult", type=float, default=None, help="feed-forward width = round(mult * n_embd)")
    q.add_argument("--no-bias", action="store_true")
    q.add_argument("--untied", action="store_true", help="separate LM head instead of reusing wte")
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

    def common_train(t):
        t.add_argument("--text", required=True, help="UTF-8 text file to train on")
        t.add_argument("--block-size", type=int, default=128, help="context length")
        t.add_argument("--batch-size", type=int, default=16)
        t.add_argument("--steps", type=int, default=1000)
        t.add_argument("--lr", type=float, default=1e-3)
        t.add_argument("--warmup", type=int, default=50)
        t.add_argument("--weight-decay", type=float, default=0.1)
        t.add_argument("--eval-interval", type=int, default=100)
        t.add_argument("--val-fraction", type=float, default=0.1)
        t.add_argument("--seed", type=int, default=1337)
        t.add_argument("--save-dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
        t.add_argument("--keep-best", action="store_true", help="end with the best-validation weights")
        t.add_argument("--out", required=True, help="checkpoint directory to write")
        t.add_argument("--json", action="store_true")

    t = sub.add_parser("train", help="train a GPT from scratch")
    common_train(t)
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
    t.set_defaults(func=cmd_train)

    v = sub.add_parser("eval", help="held-out loss of a model on the last part of a text (windows of --context)")
    v.add_argument("--model", default="gpt2")
    v.add_argument("--text", required=True)
    v.add_argument("--context", type=int, default=128)
    v.add_argument("--val-fraction", type=float, default=0.1)
    v.add_argument("--hub-timeout", type=float, default=5.0)
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_eval)

    f = sub.add_parser("finetune", help="fine-tune a model on a text file")
    common_train(f)
    f.add_argument("--model", default="gpt2")
    f.add_argument("--trainable", default="all", help='"all" or "top:N" (last N blocks)')
    f.add_argument("--hub-timeout", type=float, default=5.0)
    f.set_defaults(func=cmd_finetune, lr=1e-4)

    e = sub.add_parser("embed", help="token ids, embedding norms and cosine similarities of words")
    e.add_argument("--model", default="gpt2")
    e.add_argument("--words", required=True, help="comma-separated, e.g. dog,city,xqzt")
    e.add_argument("--pool", choices=["first", "mean"], default="mean",
                   help="a multi-token word is its first token's embedding or the mean of its tokens'")
    e.add_argument("--space", action="store_true", help="encode ' word' (as mid-sentence) instead of 'word'")
    e.add_argument("--hub-timeout", type=float, default=5.0)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_embed)
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
