"""Fine-tune tab defaults on a CPU: wall time and held-out loss drop for a 10,000-character text.

Runs the tab's own handler (tabs.finetune.on_finetune) with its default settings, so what is measured is what a
student gets: base sample, fine-tuning, "after" sample, held-out evaluation, probability shifts. Models: a
GPT-2-124M-sized model with random weights (real GPT-2 cannot be downloaded here; same size, same cost) and
the embedded tiny-shakespeare model. The text: the first 10,000 characters of --text (default: the offline
Python-docs corpus, whose style is far from Shakespeare's).

    python benchmarks/bench_finetune.py [--text FILE] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402


def run(models, name, text):
    from tabs import finetune
    from tabs.finetune import DEFAULTS
    from tabs.sessions import SessionStore

    t0 = time.perf_counter()
    out = None
    for out in finetune.on_finetune(models, SessionStore(), name, None, text, False, True, "", DEFAULTS["seed"],
                                    DEFAULTS["trainable"], DEFAULTS["steps"], DEFAULTS["context"],
                                    DEFAULTS["batch_size"], DEFAULTS["lr"], DEFAULTS["max_new_tokens"],
                                    progress=lambda *a, **k: None):
        pass
    wall = time.perf_counter() - t0
    metrics = out[3]
    before, after = [float(x) for x in re.search(r"held-out loss[^|]*\| ([\d.]+) \| ([\d.]+)", metrics).groups()]
    return {"model": name, "wall_s": wall, "heldout_loss_before": before, "heldout_loss_after": after,
            "drop": before - after, "compare": re.sub(r"<[^>]+>", " | ", out[2])[:600]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", default=None)
    ap.add_argument("--chars", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from transformers import GPT2Config, GPT2LMHeadModel

    from tinygpt import ModelCache
    from tinygpt.corpora import python_docs

    text = open(a.text, encoding="utf-8").read() if a.text else python_docs()
    text = text[:a.chars]
    torch.manual_seed(0)
    d = tempfile.mkdtemp()
    GPT2LMHeadModel(GPT2Config()).save_pretrained(d)  # GPT-2-124M-sized, random weights
    models = ModelCache()
    from tabs.finetune import DEFAULTS

    print(f"text: {len(text):,} characters; defaults: {DEFAULTS}; {a.threads} threads")
    for name in (d, "tiny-shakespeare"):
        r = run(models, name, text)
        label = "GPT-2-124M-sized (random)" if name == d else name
        print(f"{label}: {r['wall_s']:.1f} s wall, held-out loss {r['heldout_loss_before']:.3f} -> "
              f"{r['heldout_loss_after']:.3f} (drop {r['drop']:.3f})")
        print("   ", r["compare"])


if __name__ == "__main__":
    main()
