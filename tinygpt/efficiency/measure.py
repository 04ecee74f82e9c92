"""Measuring on this machine: available memory, the CPU's name, and attention's time and MEASURED peak memory.

`measure_attention(method, T, ...)` runs one case (standard / tiled / sdpa at T tokens) in a fresh child process,
`python -m tinygpt.efficiency.flash_child`, so the peak memory it reports is that case's own: the child's peak
resident set size (VmHWM) minus its size just before the case ran. A process never gives memory back to a peak
counter, so measuring several cases in one process would report the largest one each time. The benchmark script
(benchmarks/bench_attention.py) and the Efficiency tab both call this one function.

`check_memory(need, what)` refuses work whose estimated memory exceeds what the machine has free, in one sentence
holding the estimate and the limit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from ..defaults import FLASH
from .flash import attention_memory_prediction

METHODS = ("standard", "tiled", "sdpa")
MMAP_THRESHOLD = 65536
MEMORY_FRACTION = 0.8  # never plan to use more than 80 % of the memory available now: the OS and others need some
CHILD_OVERHEAD = 400 * 2 ** 20  # a child's Python + torch before the case (measured: ~300 MiB RSS)
BENCH_LENGTHS = FLASH["bench_lengths"]  # the exercise's sequence lengths


def mem_available_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux): what can be allocated without swapping."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # elsewhere: physical pages currently free
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2 ** 30  # unknown: assume a small laptop's worth


def memory_limit_bytes() -> int:
    return int(MEMORY_FRACTION * mem_available_bytes())


def human_bytes(n: float) -> str:
    for p, suf in ((3, "GiB"), (2, "MiB"), (1, "KiB")):
        if abs(n) >= 1024 ** p:
            return f"{n / 1024 ** p:.2f} {suf}"
    return f"{n:.0f} B"


def check_memory(need: int, what: str) -> None:
    """ValueError (one sentence: the estimate and the limit) when `need` bytes exceed the memory limit."""
    limit = memory_limit_bytes()
    if need > limit:
        raise ValueError(f"{what} needs about {human_bytes(need)} (estimate), more than the {human_bytes(limit)} "
                         f"this machine can spare now ({MEMORY_FRACTION:.0%} of its available memory): choose a "
                         f"smaller size.")


def predicted_bytes(method: str, T: int, head_dim: int = 64, heads: int = 1, batch: int = 1,
                    block_q: int = 64, block_k: int = 64):
    """The prediction shown next to the measurement (None for SDPA: its kernel's buffers are not modelled)."""
    p = attention_memory_prediction(T, head_dim, batch, heads, 4, block_q, block_k)
    return {"standard": p["standard_total_bytes"], "tiled": p["tiled_total_bytes"], "sdpa": None}[method]


def case_need_bytes(method: str, T: int, head_dim: int = 64, heads: int = 1, batch: int = 1) -> int:
    """Memory a child needs for one case: q, k, v, the method's own (SDPA taken as tiled), and the interpreter."""
    qkv = 3 * batch * heads * T * head_dim * 4
    own = predicted_bytes("tiled" if method == "sdpa" else method, T, head_dim, heads, batch)
    return qkv + own + CHILD_OVERHEAD


def lengths_offered(lengths=BENCH_LENGTHS, head_dim: int = 64, heads: int = 1, batch: int = 1):
    """(lengths whose standard case fits in memory now, one sentence saying which fit and why)."""
    limit = memory_limit_bytes()
    ok = [T for T in lengths if case_need_bytes("standard", T, head_dim, heads, batch) <= limit]
    top = max(lengths)
    need = case_need_bytes("standard", top, head_dim, heads, batch)
    verdict = "offered" if top in ok else "not offered"
    note = (f"{top:,} tokens {verdict}: standard attention there needs about {human_bytes(need)} (its two T x T "
            f"float32 matrices plus q, k, v and the interpreter), and this machine can spare "
            f"{human_bytes(limit)} now ({MEMORY_FRACTION:.0%} of its available memory).")
    return ok, note


def _child_env() -> dict:
    root = str(Path(__file__).resolve().parents[2])  # the directory holding the tinygpt package
    path = os.environ.get("PYTHONPATH", "")
    # glibc: with a fixed mmap threshold every allocation >= 64 KiB gets its own mapping, returned to the kernel on
    # free. The default threshold grows with freed blocks, and freed heap memory can stay in RSS and inflate a
    # later peak (e.g. the causal mask's 2 x 16 MiB at T = 4,096).
    return dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD),
                PYTHONPATH=root + (os.pathsep + path if path else ""))


def measure_attention(method: str, T: int, head_dim: int = 64, heads: int = 1, batch: int = 1, repeats: int = 3,
                      block_q: int = 64, block_k: int = 64, threads: int = 1, causal: bool = True,
                      should_stop: Optional[Callable[[], bool]] = None, poll_s: float = 0.1,
                      device=None) -> Optional[dict]:
    """Time and peak memory of one attention case, float32, measured in a fresh child process.

    The child allocates q, k, v (B, H, T, head_dim), warms the method up on 256 tokens, resets its peak-RSS counter,
    then runs the full size 1 + repeats times (the first is a warm-up). Returns {method, T, ms (median of the
    repeats), peak_extra_bytes (measured), predicted_bytes, baseline ("clear_refs", or "VmHWM" where the kernel
    refused the reset)}, or None if should_stop() became true (the child is killed). ValueError when the case
    would not fit in memory."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)} (got {method!r}).")
    for value, name in ((T, "T"), (head_dim, "head_dim"), (heads, "heads"), (batch, "batch"), (repeats, "repeats"),
                        (block_q, "block_q"), (block_k, "block_k"), (threads, "threads")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive whole number (got {value!r}).")
    from ..device import pick_device

    dev = pick_device(device)  # on a GPU the case runs there and its peak is the CUDA allocator's
    if dev.type == "cpu":
        check_memory(case_need_bytes(method, T, head_dim, heads, batch), f"{method} attention at {T:,} tokens")
    cmd = [sys.executable, "-m", "tinygpt.efficiency.flash_child", method, str(T), "--head-dim", str(head_dim),
           "--heads", str(heads), "--batch", str(batch), "--repeats", str(repeats), "--block-q", str(block_q),
           "--block-k", str(block_k), "--threads", str(threads), "--device", str(dev)] + \
        ([] if causal else ["--no-causal"])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env())
    try:
        while proc.poll() is None:
            if should_stop is not None and should_stop():
                proc.kill()
                proc.wait()
                return None
            time.sleep(poll_s)
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:  # an exception (or a closed generator) while waiting: never leave a child behind
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        last = (err.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise RuntimeError(f"The {method} attention case at {T:,} tokens failed: {last}")
    r = json.loads(out.strip().splitlines()[-1])
    return {"method": method, "T": T, **r,
            "predicted_bytes": predicted_bytes(method, T, head_dim, heads, batch, block_q, block_k)}
