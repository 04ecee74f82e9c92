"""One attention case in this (fresh) process, printing one JSON line: `python -m tinygpt.efficiency.flash_child
METHOD T [--head-dim 64 --heads 1 --batch 1 --repeats 3 --block-q 64 --block-k 64 --threads 1 --no-causal]`.

Started by tinygpt.efficiency.measure.measure_attention (never imported by the package). The peak memory is the
growth of the process's peak resident set size (VmHWM in /proc/self/status) over its size just before the case:
the counter is reset by writing 5 to /proc/self/clear_refs (Linux >= 4.0); where that is refused, the peak reached
so far is the baseline (said in the output).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from .flash import flash_attention, standard_attention


def proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> bool:
    """Set VmHWM back to the current RSS. False if the kernel or sandbox refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def attention_fn(method: str, causal: bool, block_q: int, block_k: int):
    if method == "standard":
        return lambda q, k, v: standard_attention(q, k, v, causal=causal)
    if method == "tiled":
        return lambda q, k, v: flash_attention(q, k, v, causal=causal, block_q=block_q, block_k=block_k)
    if method == "sdpa":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    raise SystemExit(f"unknown method {method!r}")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("method")
    ap.add_argument("T", type=int)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--block-q", type=int, default=64)
    ap.add_argument("--block-k", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-causal", dest="causal", action="store_false")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(a.batch, a.heads, a.T, a.head_dim, generator=g) for _ in range(3))
    fn = attention_fn(a.method, a.causal, a.block_q, a.block_k)
    with torch.no_grad():
        n = min(a.T, 256)  # load kernels, start the thread pool: not part of the attention's memory
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
                      "baseline": "clear_refs" if reset else "VmHWM", "threads": a.threads}))


if __name__ == "__main__":
    main()
