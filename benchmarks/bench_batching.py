"""Continuous batching, measured: does batching change any text, and what does a shared step cost?

1. Identity. R requests (different prompts, seeds and knobs; greedy and sampled) are decoded together in one
   Batcher and compared with (a) each request alone in the batcher, (b) the unbatched `tinygpt.generate`,
   which multiplies 1-row matrices (another matmul kernel: its last bits differ, so a near-tie can flip),
   (c) the batcher without its padding rows (exact=False) against generate. Counts requests whose text
   differs and the tokens from the first difference on.
2. Cost. Time of one decoding step with B rows (each row its own prompt and cache) relative to one row.

    python benchmarks/bench_batching.py [--model tiny-shakespeare|DIR|gpt2-size] [--requests 200] [--tokens 60]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from machine import describe, gpt2_sized_dir  # noqa: E402

from tinygpt import generate, load_model  # noqa: E402
from tinygpt.batching import Batcher, padding_rule  # noqa: E402
from tinygpt.interpret.pruning import AUSTEN, SHAKESPEARE  # noqa: E402

KNOBS = [(0.0, None, None), (0.8, 200, None), (1.0, None, None), (1.0, None, 0.9), (0.7, 40, 0.95)]


def requests(tok, n: int) -> list:
    words = (SHAKESPEARE + " " + AUSTEN).split()
    out = []
    for i in range(n):
        start, length = (i * 37) % (len(words) - 30), 1 + (i * 7) % 25  # 1..25 words: mixed prompt lengths
        out.append((tok.encode(" ".join(words[start:start + length])), KNOBS[i % len(KNOBS)], i))
    return out


def run_batched(model, reqs, tokens, exact=True, alone=False):
    """Texts of every request, decoded together (or each alone) in a batcher."""
    outs = []
    b = Batcher(model, start=False, exact=exact)
    groups = [[r] for r in reqs] if alone else [reqs]
    for group in groups:
        streams = [b.submit(ids, tokens, t, k, p, torch.Generator().manual_seed(seed))
                   for ids, (t, k, p), seed in group]
        while b.step():
            pass
        outs += [torch.cat(list(s), 1)[0].tolist() for s in streams]
    return outs, (max(b.batch_sizes) if b.batch_sizes else 0)


def compare(a, b, reqs) -> tuple[int, int, int, dict]:
    """(requests that differ, tokens after the first difference, all tokens, {knobs: (differ, requests)})."""
    differ = tail = total = 0
    per_knobs: dict = {}
    for x, y, (_, knobs, _) in zip(a, b, reqs):
        total += len(x)
        first = next((i for i, (u, v) in enumerate(zip(x, y)) if u != v), None)
        d, n = per_knobs.get(knobs, (0, 0))
        per_knobs[knobs] = (d + (first is not None), n + 1)
        if first is not None:
            differ += 1
            tail += len(x) - first
    return differ, tail, total, per_knobs


def step_cost(model, rows_list, prompt_len=8, reps=5, exact=True):
    """Median seconds of one decode step with B rows (each row its own cache at its own position)."""
    out = {}
    g = torch.Generator().manual_seed(0)
    for B in rows_list:
        b = Batcher(model, start=False, max_rows=B, exact=exact)
        streams = [b.submit(torch.randint(0, model.config.vocab_size, (1, prompt_len + i % 5), generator=g), reps + 1,
                            1.0, None, None, torch.Generator().manual_seed(i)) for i in range(B)]
        b.step()  # the prefill
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            b.step()
            times.append(time.perf_counter() - t)
        for s in streams:
            s.cancel()
        out[B] = statistics.median(times)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny-shakespeare", help="a model name, a checkpoint dir, or gpt2-size")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--tokens", type=int, default=60)
    ap.add_argument("--rows", default="1,4,10,40,100")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--no-cost", action="store_true", help="skip the step-cost table")
    ap.add_argument("--skip-alone", action="store_true", help="skip running every request alone in the batcher")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    name = gpt2_sized_dir() if a.model == "gpt2-size" else a.model
    model, tok = load_model(name)
    print(describe())
    c = model.config
    print(f"model {a.model}: {model.num_params() / 1e6:.1f} M parameters, {c.n_layer} layers, d {c.n_embd}; "
          f"{a.requests} requests x {a.tokens} tokens, knobs cycling through {KNOBS}")
    reqs = requests(tok, a.requests)
    t = time.perf_counter()
    together, widest = run_batched(model, reqs, a.tokens)
    t_batched = time.perf_counter() - t
    t = time.perf_counter()
    ref = [generate(model, torch.tensor([ids]), a.tokens, tt, k, p, torch.Generator().manual_seed(seed))[0, len(ids):]
           .tolist() for ids, (tt, k, p), seed in reqs]
    t_generate = time.perf_counter() - t
    print(f"decoded together ({widest} rows at once) in {t_batched:.1f} s; one after another with generate"
          f" {t_generate:.1f} s", flush=True)
    runs = [("batched (padded) vs tinygpt.generate (1-row matmuls)", lambda: together, ref),
            ("batched without padding (exact=False) vs tinygpt.generate",
             lambda: run_batched(model, reqs, a.tokens, exact=False)[0], ref)]
    if not a.skip_alone:
        runs.insert(0, ("batched vs alone in the batcher (padded, exact)",
                        lambda: run_batched(model, reqs, a.tokens, alone=True)[0], together))
    for label, make, y in runs:
        d, tail, total, per_knobs = compare(make(), y, reqs)
        print(f"  {label}: {d} of {len(reqs)} requests differ; {tail} of {total} tokens from the first difference on")
        if d:
            print("    by (temperature, top-k, top-p): " + ", ".join(
                f"{k}: {dk} of {n}" for k, (dk, n) in per_knobs.items() if dk))
        sys.stdout.flush()
    if a.no_cost:
        return
    rows = [int(r) for r in a.rows.split(",")]
    one = step_cost(model, [1], exact=False)[1]
    cost = step_cost(model, rows)
    min_rows, mult = padding_rule(model)
    rule = f"padded to at least {min_rows} rows" + (f", a multiple of {mult}" if mult > 1 else "")
    print(f"one decoding step with B rows (median); 1 row unpadded (the 1-row kernel, as generate):"
          f" {1000 * one:.1f} ms; the measured padding rule: {rule}")
    for B, s in cost.items():
        print(f"  B={B:>4}: {1000 * s:7.1f} ms = {s / one:5.2f}x the unpadded row, {1000 * s / B:6.2f} ms per row")
    print("Timings on a shared machine are noisy; the identity counts are exact.")


if __name__ == "__main__":
    main()
