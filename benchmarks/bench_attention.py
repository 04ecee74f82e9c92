"""Attention time and measured peak memory: standard (T x T matrix) vs tiled FlashAttention-2 (pure PyTorch) vs SDPA.

Each (T, method) case runs in a fresh child process (tinygpt.efficiency.measure.measure_attention, which starts
`python -m tinygpt.efficiency.flash_child METHOD T`; the Efficiency tab calls the same function), so its peak
memory is its own: the child allocates q, k, v, warms the method up on 256 tokens, resets the kernel's peak-RSS
counter (writing 5 to /proc/self/clear_refs; if that is refused, it uses the VmHWM reached so far as the
baseline), then runs the full size 1 + --repeats times. Reported: the median time of the repeats (the first full
run is a warm-up) and the peak RSS increase over the baseline (VmHWM from /proc/self/status), next to the
prediction of tinygpt.efficiency.attention_memory_prediction. A case whose estimated memory exceeds 80 % of
MemAvailable is skipped, with the estimate and the limit. Causal self-attention, float32, one process at a time.
Children run with a fixed glibc mmap threshold so freed matrices leave RSS at once, and with 1 torch thread by
default (see --threads).

    python benchmarks/bench_attention.py [--lengths 1024,4096,8192,16384] [--head-dim 64] [--heads 1]
                                         [--batch 1] [--repeats 3] [--block-q 64] [--block-k 64] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from tinygpt.device import cpu_name
from tinygpt.efficiency.measure import (
    METHODS,
    MMAP_THRESHOLD,
    lengths_offered,
    measure_attention,
    mem_available_bytes,
    predicted_bytes,
)

MIB = 2 ** 20


def fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="1024,4096,8192,16384", help="comma-separated sequence lengths")
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--block-q", type=int, default=64)
    ap.add_argument("--block-k", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 by default: on a shared machine 2 threads make every small op of the "
                         "tiled loop wait at a thread-pool barrier (10-100x slower tiles)")
    ap.add_argument("--no-causal", dest="causal", action="store_false")
    a = ap.parse_args()
    lengths = [int(x) for x in a.lengths.split(",")]
    print(f"CPU: {cpu_name()} | torch {torch.__version__} | torch threads: {a.threads}")
    print(f"batch {a.batch}, heads {a.heads}, head_dim {a.head_dim}, float32, causal={a.causal}, tiled blocks "
          f"block_q={a.block_q} x block_k={a.block_k}, median of {a.repeats} repeats after 1 warm-up run")
    print("peak extra = child's peak RSS (VmHWM) minus its RSS after allocating q, k, v and a 256-token warm-up; "
          "predicted = tinygpt.efficiency.attention_memory_prediction (none for SDPA); children run with "
          f"MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD} so freed blocks leave RSS at once")
    print(f"MemAvailable at start: {mem_available_bytes() / MIB:.0f} MiB. "
          f"{lengths_offered(lengths, a.head_dim, a.heads, a.batch)[1]}\n")
    results = {}
    header = f"{'T':>6}  {'method':<9} {'ms':>10} {'peak extra MiB':>15} {'predicted MiB':>14}"
    print(header)
    print("-" * len(header))
    for T in lengths:
        for method in METHODS:
            try:
                r = measure_attention(method, T, a.head_dim, a.heads, a.batch, a.repeats, a.block_q, a.block_k,
                                      a.threads, a.causal)
            except ValueError as e:  # would not fit in memory: the sentence holds the estimate and the limit
                print(f"{T:>6}  {method:<9} skipped: {e}")
                continue
            results[T, method] = r
            pred = predicted_bytes(method, T, a.head_dim, a.heads, a.batch, a.block_q, a.block_k)
            print(f"{T:>6}  {method:<9} {r['ms']:>10.1f} {r['peak_extra_bytes'] / MIB:>15.1f} "
                  f"{fmt(None if pred is None else pred / MIB):>14}"
                  + ("" if r["baseline"] == "clear_refs" else "  (baseline: VmHWM, clear_refs refused)"), flush=True)
    print("\nratios (same run)")
    print(f"{'T':>6} {'tiled/std time':>15} {'tiled/std mem':>14} {'sdpa/std time':>14} {'sdpa/std mem':>13} "
          f"{'tiled/sdpa time':>16}")
    for T in lengths:
        std, tiled, sdpa = (results.get((T, m)) for m in METHODS)

        def ratio(x, y, key):
            return None if x is None or y is None or not y[key] else x[key] / y[key]
        print(f"{T:>6} {fmt(ratio(tiled, std, 'ms'), '.2f'):>15} "
              f"{fmt(ratio(tiled, std, 'peak_extra_bytes'), '.3f'):>14} "
              f"{fmt(ratio(sdpa, std, 'ms'), '.2f'):>14} {fmt(ratio(sdpa, std, 'peak_extra_bytes'), '.3f'):>13} "
              f"{fmt(ratio(tiled, sdpa, 'ms'), '.1f'):>16}")
    if (8192, "tiled") in results and (8192, "standard") in results and (a.heads, a.head_dim, a.batch) == (1, 64, 1):
        t, s = results[8192, "tiled"]["peak_extra_bytes"], results[8192, "standard"]["peak_extra_bytes"]
        print(f"\nT = 8,192, 1 head, head_dim 64: tiled peak extra memory {t / MIB:.1f} MiB = {100 * t / s:.1f} % "
              f"of standard's {s / MIB:.1f} MiB (target < 25 %: {'met' if t < 0.25 * s else 'NOT met'})")
    else:
        print("\nThe issue's 8,192-token case (1 head, head_dim 64, batch 1) was not part of this run.")


if __name__ == "__main__":
    main()
