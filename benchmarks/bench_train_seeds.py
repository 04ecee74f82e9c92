"""Seed-to-seed spread of the Train tab's runs: how much does the final validation loss move when only the seed
changes? The Train tab's Explain compares two runs' losses; a difference smaller than this spread is noise.

Each run is the tab's run (tinygpt.defaults.TRAIN_TAB: 4 layers x 4 heads x 128, context 64, batch 12, 500 steps,
lr 2e-3, warm-up and evaluations scaled with the steps) on the offline Python-docs corpus, with one architecture
switch per variant. Prints one JSON line per run and a summary per variant (mean, standard deviation, range).

    python benchmarks/bench_train_seeds.py [--variants full,no-scale] [--seeds 1337,1,2] [--steps 500]
                                           [--threads 1] [--corpus python-docs]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import tinygpt  # noqa: E402
from tinygpt.data import load_corpus, make_tokenizer, split_tokens  # noqa: E402
from tinygpt.defaults import TRAIN_TAB as D  # noqa: E402

VARIANTS = {"full": {}, "no-scale": {"attn_scale": False}, "no-layernorm": {"layernorm": False},
            "no-mask": {"causal": False}, "dropout": {"embd_pdrop": 0.1, "attn_pdrop": 0.2, "resid_pdrop": 0.1}}


def run(variant: str, seed: int, steps: int, data) -> dict:
    tok, train_data, val_data = data
    torch.manual_seed(seed)
    cfg = tinygpt.GPTConfig(vocab_size=tok.vocab_size, block_size=D["block_size"], n_layer=D["n_layer"],
                            n_head=D["n_head"], n_embd=D["n_embd"], **VARIANTS[variant])
    model = tinygpt.GPT(cfg)
    tcfg = tinygpt.TrainConfig(steps=steps, batch_size=D["batch_size"], context=D["block_size"], lr=D["lr"],
                               warmup=min(100, max(1, steps // 10)), eval_interval=max(1, steps // 20),
                               eval_batches=D["eval_batches"], seed=seed, eval_train=True)
    t0 = time.perf_counter()
    r = tinygpt.train(model, train_data, val_data, tcfg)
    return {"variant": variant, "seed": seed, "steps": r["steps"], "val_loss": r["val_loss"],
            "train_eval_loss": r["train_eval_loss"], "val_accuracy": r["val_accuracy"],
            "seconds": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="full,no-scale")
    p.add_argument("--seeds", default="1337,1,2")
    p.add_argument("--steps", type=int, default=D["steps"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--corpus", default="python-docs")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    text = load_corpus(a.corpus)
    tok = make_tokenizer("char", text)
    train_data, val_data = split_tokens(torch.tensor(tok.encode(text)), 0.1)
    out: dict = {}
    for v in a.variants.split(","):
        for s in map(int, a.seeds.split(",")):
            r = run(v, s, a.steps, (tok, train_data, val_data))
            out.setdefault(v, []).append(r["val_loss"])
            print(json.dumps(r), flush=True)
    for v, losses in out.items():
        sd = statistics.stdev(losses) if len(losses) > 1 else 0.0
        print(json.dumps({"variant": v, "mean": statistics.mean(losses), "sd": sd,
                          "range": max(losses) - min(losses), "n": len(losses)}), flush=True)


if __name__ == "__main__":
    main()
