"""Training speed, every ratio measured side by side in this one run:

(1) throughput: our loop vs a plain transformers GPT2LMHeadModel loop, identical data, batch shapes and AdamW
    settings (tokens/s);
(2) time to character-level validation loss 1.88 on Tiny Shakespeare: our from-scratch recipe (tinygpt.train,
    --steps/--lr) vs nanoGPT's shakespeare_char CPU recipe (4 layers, 4 heads, d=128, context 64, batch 12,
    2,000 iterations, lr 1e-3 with 100 warm-up steps and cosine decay to 1e-4, AdamW betas (0.9, 0.99), weight
    decay 0.1, clipping 1.0) run through a plain PyTorch loop on transformers' GPT-2 implementation. Both are
    evaluated on the same validation windows at the same interval; wall time includes the evaluations.

    python benchmarks/bench_train.py --text ../shared/data/tinyshakespeare.txt [--steps 1500 --lr 2e-3]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from machine import describe  # noqa: E402

import tinygpt  # noqa: E402
from tinygpt.data import get_batch, make_tokenizer, read_text, split_tokens  # noqa: E402
from tinygpt.evaluate import evaluate  # noqa: E402
from tinygpt.train import lr_at  # noqa: E402

SHAPE = dict(n_layer=4, n_head=4, n_embd=128)
CONTEXT, BATCH = 64, 12
NANOGPT = dict(steps=2000, lr=1e-3, warmup=100, min_lr_ratio=0.1)  # train_shakespeare_char.py, CPU overrides


class HFAdapter(torch.nn.Module):
    """transformers' GPT2LMHeadModel behind tinygpt's forward contract, so one evaluate() scores both."""

    def __init__(self, hf):
        super().__init__()
        self.hf = hf
        self.config = tinygpt.GPTConfig(vocab_size=hf.config.vocab_size, block_size=hf.config.n_positions,
                                        n_layer=hf.config.n_layer, n_head=hf.config.n_head, n_embd=hf.config.n_embd)

    def forward(self, idx, targets=None, layers=None):
        return self.hf(input_ids=idx).logits, None


def hf_model(vocab):
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=CONTEXT, resid_pdrop=0.0, embd_pdrop=0.0,
                                      attn_pdrop=0.0, **SHAPE)).train()


def plain_loop(model, train_data, val_data, cfg, target=None, eval_windows=None):
    """A nanoGPT-style loop on any model: AdamW, warm-up + cosine, clipping; evaluates every cfg.eval_interval.
    Returns (seconds to reach target or None, step, val loss then, wall seconds)."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        for g in opt.param_groups:
            g["lr"] = lr_at(step - 1, cfg)
        x, y = get_batch(train_data, cfg.batch_size, cfg.context, gen)
        logits = model(x)[0]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if step % cfg.eval_interval == 0 or step == cfg.steps:
            val = evaluate(model, val_data, cfg.context, max_windows=eval_windows)["loss"]
            model.train()
            if target is not None and val <= target:
                return time.perf_counter() - t0, step, val, time.perf_counter() - t0
    return None, cfg.steps, val, time.perf_counter() - t0


def throughput(train_data, vocab, steps):
    """Same shapes, same data order, same AdamW settings: our train() vs a plain transformers loop."""
    cfg = tinygpt.TrainConfig(steps=steps, batch_size=BATCH, context=CONTEXT, lr=1e-3, warmup=10,
                              eval_interval=10**9, grad_clip=1.0)
    torch.manual_seed(0)
    ours = tinygpt.GPT(tinygpt.GPTConfig(vocab_size=vocab, block_size=CONTEXT, **SHAPE))
    t = time.perf_counter()
    tinygpt.train(ours, train_data, train_data[-5000:], cfg)
    t_ours = time.perf_counter() - t
    torch.manual_seed(0)
    t = time.perf_counter()
    plain_loop(HFAdapter(hf_model(vocab)), train_data, train_data[-5000:], cfg)
    t_hf = time.perf_counter() - t
    tokens = steps * BATCH * CONTEXT
    return {"tokens_per_s_tinygpt": tokens / t_ours, "tokens_per_s_transformers": tokens / t_hf,
            "ratio_tinygpt_over_transformers": t_hf / t_ours, "steps": steps}


def time_to_target(train_data, val_data, vocab, a):
    """Our recipe (tinygpt.train) vs nanoGPT's recipe (plain loop on transformers' GPT-2), same validation windows."""
    windows = 240  # 240 windows x 64 = 15k validation tokens per evaluation, for both
    torch.manual_seed(1337)
    model = tinygpt.GPT(tinygpt.GPTConfig(vocab_size=vocab, block_size=CONTEXT, **SHAPE))
    cfg = tinygpt.TrainConfig(steps=a.steps, batch_size=BATCH, context=CONTEXT, lr=a.lr, warmup=a.warmup,
                              eval_interval=a.eval_every, eval_batches=windows // 8, min_lr_ratio=0.1)
    reached = {}

    def cb(ev):
        if ev["val_loss"] is not None and ev["val_loss"] <= a.target and not reached:
            reached.update(step=ev["step"], seconds=ev["elapsed"], val_loss=ev["val_loss"])

    t = time.perf_counter()
    res = tinygpt.train(model, train_data, val_data, cfg, callback=cb, should_stop=lambda: bool(reached))
    ours = {"reached": bool(reached), "seconds_to_target": reached.get("seconds"),
            "step": reached.get("step", res["steps"]), "val_loss": reached.get("val_loss", res["val_loss"]),
            "wall_seconds": time.perf_counter() - t, "val_loss_full_split": evaluate(model, val_data, CONTEXT)["loss"],
            "recipe": f"{a.steps} steps, lr {a.lr:g}, warm-up {a.warmup}"}
    print(json.dumps({"ours": ours}), flush=True)

    torch.manual_seed(1337)
    ref_model = HFAdapter(hf_model(vocab))
    ref_cfg = tinygpt.TrainConfig(batch_size=BATCH, context=CONTEXT, eval_interval=a.eval_every, **NANOGPT)
    secs, step, val, wall = plain_loop(ref_model, train_data, val_data, ref_cfg, a.target, windows)
    ref = {"reached": secs is not None, "seconds_to_target": secs, "step": step, "val_loss": val,
           "wall_seconds": wall, "recipe": "nanoGPT shakespeare_char CPU: 2000 iters, lr 1e-3, warm-up 100"}
    ratio = ours["seconds_to_target"] / secs if ours["reached"] and secs else math.nan
    return {"target": a.target, "ours": ours, "nanogpt_recipe": ref, "ratio_ours_over_nanogpt_recipe": ratio}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                    "tinyshakespeare.txt"))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--target", type=float, default=1.88)
    ap.add_argument("--throughput-steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-throughput", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(describe(), flush=True)
    text = read_text(a.text)
    tok = make_tokenizer("char", text)
    train_data, val_data = split_tokens(torch.tensor(tok.encode(text)), 0.1)
    if not a.skip_throughput:
        print(json.dumps({"throughput": throughput(train_data, tok.vocab_size, a.throughput_steps)}), flush=True)
    print(json.dumps({"time_to_target": time_to_target(train_data, val_data, tok.vocab_size, a)}), flush=True)


if __name__ == "__main__":
    main()
