"""One attention case in this (fresh) process, printing one JSON line: `python -m tinygpt.efficiency.flash_child
METHOD T [--head-dim 64 --heads 1 --batch 1 --repeats 3 --block-q 64 --block-k 64 --threads 1 --no-causal]`.

Started by tinygpt.efficiency.measure.measure_attention (never imported by the package). The peak memory is the
growth of the process's peak resident set size (VmHWM in /proc/self/status) over its size just before the case:
the counter is reset by writing 5 to /proc/self/clear_refs (Linux >= 4.0); where that is refused, the peak reached
so far is the baseline (said in the output). On a GPU (--device cuda) the tensors live on the GPU, every timing
waits for its kernels (synchronize), and the peak is the CUDA allocator's (torch.cuda.max_memory_allocated over
its value before the case): the RSS of the process says nothing about GPU memory. SDPA then runs PyTorch's
flash-attention kernel where the GPU has one.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from ..device import peak_memory, pick_device, reset_peak_memory, synchronize
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
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    dev = pick_device(a.device)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(a.batch, a.heads, a.T, a.head_dim, generator=g).to(dev) for _ in range(3))
    fn = attention_fn(a.method, a.causal, a.block_q, a.block_k)
    gpu = dev.type == "cuda"
    with torch.no_grad():
        n = min(a.T, 256)  # load kernels, start the thread pool: not part of the attention's memory
        fn(q[:, :, :n].contiguous(), k[:, :, :n].contiguous(), v[:, :, :n].contiguous())
        if gpu:
            reset_peak_memory(dev)
            base, reset = torch.cuda.memory_allocated(dev), True
        else:
            reset = reset_peak_rss()
            base = (proc_status_kib("VmRSS") if reset else proc_status_kib("VmHWM")) * 1024
        times = []
        for _ in range(1 + a.repeats):
            synchronize(dev)
            t = time.perf_counter()
            out = fn(q, k, v)
            synchronize(dev)  # a GPU returns before its kernels finish
            times.append(time.perf_counter() - t)
            del out
    peak = peak_memory(dev) if gpu else proc_status_kib("VmHWM") * 1024
    print(json.dumps({"ms": 1000 * statistics.median(times[1:]), "peak_extra_bytes": max(0, peak - base),
                      "baseline": "cuda_allocator" if gpu else "clear_refs" if reset else "VmHWM",
                      "threads": a.threads, "device": str(dev)}))


if __name__ == "__main__":
    main()
