"""The run budget's estimates against real runs: peak memory (RSS of a fresh process,
tinygpt.budget.child) and seconds, for the shapes a visitor actually starts.

Cases:
  train default   the Train tab's defaults: two runs side by side (causal mask on / off), characters, 4 layers,
                  4 heads, d=128, context 64, batch 12, 500 steps, 500-token samples, Tiny Shakespeare's size
  train max fit   the Train tab's slider maxima (8 layers, 8 heads, d=256, context 256, 8 experts top-4 on both
                  runs) with the largest batch whose estimate fits the default 2 GB, in GPT-2 BPE if any batch
                  fits (none does: the evaluation's logits alone take 1.6 GB a run), else in characters; the peak
                  is reached in the first steps, so it runs --max-steps steps (the estimate is for those too)
  finetune gpt2   the Fine-tune tab's defaults (top 2 blocks, 40 steps of 4 x 128, best weights kept) on a
                  GPT-2-124M-sized model with random weights, a 10,000-character text (~2,500 tokens)
  dpo embedded    the DPO tab's defaults (all weights, two betas side by side, 40 steps of 8 pairs, 200 synthetic
                  pairs) on the embedded model's shape (8 layers, d=96, GPT-2 BPE)

Prints the CPU, this machine's calibrated speed, and per case: estimated vs measured peak (ratio) and estimated vs
measured seconds (ratio). Ratios compare within one run: the machine may be shared.

    python benchmarks/bench_budget.py [--quick] [--cases train-default,finetune-gpt2] [--max-steps 4]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from machine import describe  # noqa: E402


def train_cases(max_steps: int, quick: bool):
    from tinygpt.budget import Limits, check
    from tinygpt.budget.estimates import SHAKESPEARE_CHARS, SHAKESPEARE_GPT2_TOKENS, estimate_train
    from tinygpt.config import GPTConfig

    steps = 50 if quick else 500
    base = dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
    default = dict(configs=[base, dict(base, causal=False)], steps=steps, batch_size=12, context=64,
                   corpus_tokens=SHAKESPEARE_CHARS, sample_len=500)
    fit = None
    for vocab, corpus in ((50257, SHAKESPEARE_GPT2_TOKENS), (65, SHAKESPEARE_CHARS)):  # GPT-2 BPE, else characters
        big = dict(vocab_size=vocab, block_size=256, n_layer=8, n_head=8, n_embd=256, n_experts=8, moe_top_k=4)
        for batch in range(64, 0, -1):  # the largest batch whose estimate fits one run's 2 GB
            est = estimate_train([GPTConfig(**big)] * 2, max_steps, batch, 256, sample_len=0, corpus_tokens=corpus)
            try:
                check(est, Limits(run_seconds=float("inf")))
            except ValueError:
                continue
            fit = dict(configs=[big, big], steps=max_steps, batch_size=batch, context=256, corpus_tokens=corpus,
                       sample_len=0)
            break
        if fit:
            break
    return {"train-default": default, "train-max-fit": fit}


def estimate(kind: str, s: dict):
    from tinygpt.budget.estimates import estimate_dpo, estimate_finetune, estimate_train
    from tinygpt.config import GPTConfig

    if kind == "train":
        return estimate_train([GPTConfig(**c) for c in s["configs"]], s["steps"], s["batch_size"], s["context"],
                              sample_len=s["sample_len"], corpus_tokens=s["corpus_tokens"])
    if kind == "finetune":
        return estimate_finetune(GPTConfig(**s["config"]), s["trainable"], s["steps"], s["batch_size"],
                                 s["context"], s["max_new_tokens"], s["text_tokens"], s["keep_best"])
    return estimate_dpo(GPTConfig(**s["config"]), s["trainable"], s["steps"], s["batch_size"],
                        n_pairs=s["n_pairs"], runs=s["runs"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="50 steps for the Train default, 10 for the others")
    ap.add_argument("--max-steps", type=int, default=4, help="steps of the 'train max fit' case")
    ap.add_argument("--cases", default="train-default,train-max-fit,finetune-gpt2,dpo-embedded")
    a = ap.parse_args()

    from tinygpt.budget import machine_speed
    from tinygpt.budget.child import measure_peak

    print(describe())
    t = time.perf_counter()
    sp = machine_speed()
    print(f"calibration ({time.perf_counter() - t:.2f} s): {sp.flops_per_s / 1e9:.1f} GFLOP/s, "
          f"{sp.step_overhead_s * 1e3:.2f} ms per step, loss {sp.loss_s_per_logit * 1e9:.2f} ns and scoring "
          f"{sp.score_s_per_logit * 1e9:.2f} ns per logit")
    few = 10 if a.quick else 40
    gpt2 = dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    embedded = dict(vocab_size=50257, block_size=256, n_layer=8, n_head=4, n_embd=96)
    cases = {**{k: ("train", v) for k, v in train_cases(a.max_steps, a.quick).items()},
             "finetune-gpt2": ("finetune", dict(config=gpt2, trainable="top:2", steps=few, batch_size=4, context=128,
                                                max_new_tokens=60, text_tokens=2500, keep_best=True)),
             "dpo-embedded": ("dpo", dict(config=embedded, trainable="all", steps=few, batch_size=8, n_pairs=200,
                                          runs=2))}
    print(f"{'case':<15} {'estimate':>10} {'measured':>10} {'ratio':>6}   {'est. s':>8} {'meas. s':>8} {'ratio':>6}"
          "   largest parts")
    for name in a.cases.split(","):
        kind, s = cases[name]
        if s is None:
            print(f"{name:<15} nothing fits")
            continue
        est = estimate(kind, s)
        m = measure_peak(kind, s)
        top = ", ".join(f"{k} {v / 1e6:,.0f} MB" for k, v in sorted(est.parts.items(), key=lambda kv: -kv[1])[:3])
        print(f"{name:<15} {est.memory_bytes / 1e6:>7,.0f} MB {m['peak_extra_bytes'] / 1e6:>7,.0f} MB "
              f"{est.memory_bytes / m['peak_extra_bytes']:>6.2f}   {est.seconds:>8.1f} {m['seconds']:>8.1f} "
              f"{est.seconds / m['seconds']:>6.2f}   {top}"
              + (f" (vocabulary {s['configs'][0]['vocab_size']:,}, batch {s['batch_size']}, {s['steps']} steps)"
                 if name == "train-max-fit" else ""), flush=True)


if __name__ == "__main__":
    main()
