"""Training speed: (1) our loop vs a plain transformers GPT2LMHeadModel loop on identical data and batch shapes
(tokens/s, as a ratio from one run); (2) wall time for our from-scratch run to reach character-level
validation loss 1.88 on Tiny Shakespeare.

Anchor for (2): nanoGPT's CPU recipe (4 layers, 4 heads, d=128, context 64, batch 12, 2,000 iterations) run
with nanoGPT's own train.py on this machine's 2 cores reached val 1.886 in 160 s wall, evaluations included.

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

import tinygpt  # noqa: E402
from tinygpt.data import make_tokenizer, read_text  # noqa: E402
from tinygpt.train import evaluate, get_batch, lr_at, split_tokens  # noqa: E402

SHAPE = dict(n_layer=4, n_head=4, n_embd=128)
CONTEXT, BATCH = 64, 12


def throughput(train_data, vocab, steps):
    """Same shapes, same data order, same AdamW settings: our train() vs a transformers loop."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = tinygpt.TrainConfig(steps=steps, batch_size=BATCH, context=CONTEXT, lr=1e-3, warmup=10,
                              eval_interval=10**9, grad_clip=1.0)
    torch.manual_seed(0)
    ours = tinygpt.GPT(tinygpt.GPTConfig(vocab_size=vocab, block_size=CONTEXT, **SHAPE))
    t = time.perf_counter()
    tinygpt.train(ours, train_data, train_data[-5000:], cfg)
    t_ours = time.perf_counter() - t

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=CONTEXT, n_layer=SHAPE["n_layer"],
                                    n_head=SHAPE["n_head"], n_embd=SHAPE["n_embd"], resid_pdrop=0.0,
                                    embd_pdrop=0.0, attn_pdrop=0.0)).train()
    opt = torch.optim.AdamW(hf.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    gen = torch.Generator().manual_seed(cfg.seed)
    t = time.perf_counter()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        x, y = get_batch(train_data, BATCH, CONTEXT, gen)
        loss = hf(input_ids=x, labels=None).logits
        loss = torch.nn.functional.cross_entropy(loss.reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        opt.step()
    t_hf = time.perf_counter() - t
    tokens = steps * BATCH * CONTEXT
    return {"tokens_per_s_tinygpt": tokens / t_ours, "tokens_per_s_transformers": tokens / t_hf,
            "ratio_tinygpt_over_transformers": (tokens / t_ours) / (tokens / t_hf), "steps": steps}


def time_to_target(train_data, val_data, vocab, steps, lr, target, eval_every, warmup):
    """Train the nanoGPT CPU shape with our loop; stop as soon as validation loss <= target."""
    torch.manual_seed(1337)
    model = tinygpt.GPT(tinygpt.GPTConfig(vocab_size=vocab, block_size=CONTEXT, **SHAPE))
    cfg = tinygpt.TrainConfig(steps=steps, batch_size=BATCH, context=CONTEXT, lr=lr, warmup=warmup,
                              eval_interval=eval_every, eval_batches=30, min_lr_ratio=0.1)  # 240 windows = 15k tokens
    reached = {}

    def cb(ev):
        if ev["val_loss"] is not None and ev["val_loss"] <= target and not reached:
            reached.update(step=ev["step"], seconds=ev["elapsed"], val_loss=ev["val_loss"])

    t = time.perf_counter()
    res = tinygpt.train(model, train_data, val_data, cfg, callback=cb, should_stop=lambda: bool(reached))
    wall = time.perf_counter() - t
    full = evaluate(model, val_data, CONTEXT)  # the whole validation split, every window
    return {"target": target, "reached": bool(reached), "step": reached.get("step", res["steps"]),
            "seconds_to_target": reached.get("seconds"), "wall_seconds": wall,
            "val_loss_at_stop_subset": reached.get("val_loss", res["val_loss"]), "val_loss_full_split": full["loss"],
            "nanogpt_anchor_seconds": 160.0, "nanogpt_anchor_val": 1.886,
            "ratio_vs_nanogpt_anchor": (reached["seconds"] / 160.0) if reached else math.nan, "lr": lr,
            "schedule_steps": steps}


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
    text = read_text(a.text)
    tok = make_tokenizer("char", text)
    data = torch.tensor(tok.encode(text))
    train_data, val_data = split_tokens(data, 0.1)
    out = {}
    if not a.skip_throughput:
        out["throughput"] = throughput(train_data, tok.vocab_size, a.throughput_steps)
        print(json.dumps(out["throughput"]), flush=True)
    out["time_to_target"] = time_to_target(train_data, val_data, tok.vocab_size, a.steps, a.lr, a.target,
                                           a.eval_every, a.warmup)
    print(json.dumps(out["time_to_target"]), flush=True)


if __name__ == "__main__":
    main()
