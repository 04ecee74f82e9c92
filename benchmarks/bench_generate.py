"""Generation throughput: tinygpt.generate vs transformers' generate vs a no-cache loop (nanoGPT sample.py style).

Same weights (a GPT-2-124M-sized random model written with save_pretrained and loaded by both), same prompt,
3 samples x 100 new tokens, top-k 50. Everything is measured side by side in one run and printed as ratios.

    python benchmarks/bench_generate.py [--samples 3] [--new 100] [--repeats 2] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402


def timed(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--new", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-len", type=int, default=0,
                    help="use a seeded random prompt of this many tokens instead of the nanoGPT exercise prompt")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from transformers import GPT2Config, GPT2LMHeadModel

    import tinygpt

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config()).eval()  # 124M, random weights
    d = tempfile.mkdtemp()
    hf.save_pretrained(d)
    ours, tok = tinygpt.load_model(d)
    ours_bf16, _ = tinygpt.load_model(d, dtype=torch.bfloat16)
    ids = tok.encode("one ring to rule them all,")
    if a.prompt_len:
        ids = torch.randint(0, 50257, (a.prompt_len,), generator=torch.Generator().manual_seed(0)).tolist()
    x = torch.tensor([ids] * a.samples)

    def run_hf():
        with torch.inference_mode():
            hf.generate(x, attention_mask=torch.ones_like(x), do_sample=True, top_k=50, max_new_tokens=a.new,
                        min_new_tokens=a.new, pad_token_id=50256)

    def run_ours(model=ours, use_cache=True):
        return lambda: tinygpt.generate(model, x, a.new, temperature=1.0, top_k=50,
                                        generator=torch.Generator().manual_seed(1), use_cache=use_cache)

    # warm-up (first calls allocate and pick kernels)
    for fn in (run_hf, run_ours(), run_ours(ours_bf16)):
        fn()
    t_hf = timed(run_hf, a.repeats)
    t_ours = timed(run_ours(), a.repeats)
    t_bf16 = timed(run_ours(ours_bf16), a.repeats)
    t_nocache = timed(run_ours(use_cache=False), 1)
    res = {
        "setup": f"GPT-2-124M-sized random model, prompt {len(ids)} tokens, {a.samples} samples x {a.new} tokens, "
                 "top-k 50, "
                 f"{a.threads} threads, best of {a.repeats}",
        "seconds": {"transformers_fp32": t_hf, "tinygpt_fp32": t_ours, "tinygpt_bf16": t_bf16,
                    "nocache_fp32": t_nocache},
        "ratios": {"tinygpt_fp32 / transformers_fp32 (target <= 1.0)": t_ours / t_hf,
                   "nocache / tinygpt_fp32 (target >= 8)": t_nocache / t_ours,
                   "tinygpt_bf16 / transformers_fp32 (target <= 0.6)": t_bf16 / t_hf},
    }
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        print(res["setup"])
        for k, v in res["seconds"].items():
            print(f"  {k:>20}: {v:7.2f} s")
        for k, v in res["ratios"].items():
            print(f"  {k}: {v:.2f}")


if __name__ == "__main__":
    main()
