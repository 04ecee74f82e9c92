"""Attention time and measured peak memory: standard (T x T matrix) vs tiled FlashAttention-2 (pure PyTorch) vs SDPA.

Each (T, method) case runs in a fresh child process (`--child METHOD T`) so its peak memory is its own: the child
allocates q, k, v, warms the method up on 256 tokens, resets the kernel's peak-RSS counter (writing 5 to
/proc/self/clear_refs; if that is refused, it uses the VmHWM reached so far as the baseline), then runs the full
size 1 + --repeats times. Reported: the median time of the repeats (the first full run is a warm-up) and the peak
RSS increase over the baseline (VmHWM from /proc/self/status), next to the prediction of
tinygpt.efficiency.attention_memory_prediction. A standard case whose predicted memory exceeds MemAvailable is
skipped. Causal self-attention, float32, one process at a time. Children run with a fixed glibc mmap threshold so
freed matrices leave RSS at once, and with 1 torch thread by default (see --threads).

    python benchmarks/bench_attention.py [--lengths 1024,4096,8192,16384] [--head-dim 64] [--heads 1]
                                         [--batch 1] [--repeats 3] [--block-q 64] [--block-k 64] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
import torch.nn.functional as F

from tinygpt.efficiency import attention_memory_prediction, flash_attention, standard_attention

METHODS = ("standard", "tiled", "sdpa")
MIB = 2 ** 20
MMAP_THRESHOLD = 65536


def proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def mem_available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("MemAvailable not in /proc/meminfo")


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def reset_peak_rss() -> bool:
    """Set VmHWM back to the current RSS (Linux >= 4.0). False if the kernel or sandbox refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def attention_fn(method, a):
    if method == "standard":
        return lambda q, k, v: standard_attention(q, k, v, causal=a.causal)
    if method == "tiled":
        return lambda q, k, v: flash_attention(q, k, v, causal=a.causal, block_q=a.block_q, block_k=a.block_k)
    return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=a.causal)


def child(a):
    """One case in this (fresh) process; prints one JSON line."""
    method, T = a.child[0], int(a.child[1])
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(a.batch, a.heads, T, a.head_dim, generator=g) for _ in range(3))
    fn = attention_fn(method, a)
    with torch.no_grad():
        n = min(T, 256)  # load kernels, start the thread pool: not part of the attention's memory
        fn(q[:, :, :n].contiguous(), k[:, :, :n].contiguous(), v[:, :, :n].contiguous())
        reset = reset_peak_rss()
        base_kib = proc_status_kib("VmRSS") if reset else proc_status_kib("VmHWM")
        times = []
        for _ in range(1 + a.repeats):
            t = time.perf_counter()
            out = fn(q, k, v)
            times.append(time.perf_counter() - t)
            del out
    peak_extra = (proc_status_kib("VmHWM") - base_kib) * 1024
    print(json.dumps({"ms": 1000 * statistics.median(times[1:]), "peak_extra_bytes": max(0, peak_extra),
                      "baseline": "clear_refs" if reset else "VmHWM"}))


def run_child(a, method, T):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", method, str(T), "--head-dim", str(a.head_dim),
           "--heads", str(a.heads), "--batch", str(a.batch), "--repeats", str(a.repeats), "--block-q",
           str(a.block_q), "--block-k", str(a.block_k), "--threads", str(a.threads)]
    cmd += [] if a.causal else ["--no-causal"]
    # glibc: with a fixed mmap threshold every allocation >= 64 KiB gets its own mapping, returned to the kernel on
    # free. The default threshold grows with freed blocks, and freed heap memory can stay in RSS and inflate the
    # next run's peak (e.g. the causal mask's 2 x 16 MiB at T = 4,096).
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD))
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"child {method} T={T} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


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
    ap.add_argument("--child", nargs=2, metavar=("METHOD", "T"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a)
    lengths = [int(x) for x in a.lengths.split(",")]
    print(f"CPU: {cpu_model()} | torch {torch.__version__} | torch threads: {a.threads}")
    print(f"batch {a.batch}, heads {a.heads}, head_dim {a.head_dim}, float32, causal={a.causal}, tiled blocks "
          f"block_q={a.block_q} x block_k={a.block_k}, median of {a.repeats} repeats after 1 warm-up run")
    print("peak extra = child's peak RSS (VmHWM) minus its RSS after allocating q, k, v and a 256-token warm-up; "
          "predicted = tinygpt.efficiency.attention_memory_prediction (none for SDPA); children run with "
          f"MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD} so freed blocks leave RSS at once")
    print(f"MemAvailable at start: {mem_available_bytes() / MIB:.0f} MiB\n")
    results = {}
    header = f"{'T':>6}  {'method':<9} {'ms':>10} {'peak extra MiB':>15} {'predicted MiB':>14}"
    print(header)
    print("-" * len(header))
    for T in lengths:
        pred = attention_memory_prediction(T, a.head_dim, a.batch, a.heads, 4, a.block_q, a.block_k)
        predicted = {"standard": pred["standard_total_bytes"], "tiled": pred["tiled_total_bytes"], "sdpa": None}
        for method in METHODS:
            if method == "standard" and predicted[method] > mem_available_bytes():
                print(f"{T:>6}  {method:<9} skipped: predicted {predicted[method] / MIB:.0f} MiB > MemAvailable "
                      f"{mem_available_bytes() / MIB:.0f} MiB")
                continue
            r = run_child(a, method, T)
            results[T, method] = r
            print(f"{T:>6}  {method:<9} {r['ms']:>10.1f} {r['peak_extra_bytes'] / MIB:>15.1f} "
                  f"{fmt(None if predicted[method] is None else predicted[method] / MIB):>14}"
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
