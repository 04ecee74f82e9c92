"""Where a forward pass spends its time: measured time per component next to the FLOPs the calculator predicts.

`profile_forward(model, batch, seq_len)` times one forward pass with forward hooks on the modules themselves:
a pre-hook notes the clock when a module starts and a hook adds the elapsed time when it ends. Components:

    embedding     wte ... drop   (token lookup, position rows added, dropout)
    attention     every block's attn (q/k/v projection, attention, output projection)
    feed_forward  every block's mlp (or MoE layer)
    layer_norm    every ln_1, ln_2 and the final ln_f
    lm_head       the output projection to the vocabulary
    other         the rest of the forward pass: residual additions, RoPE tables, Python between modules

Warm-up runs are excluded; every timed component and the total are medians over the repeats, and "other" is the
median total minus the timed components (never below 0). So the parts add up to the total unless run-to-run noise
makes the components' medians add up to more than the median total (a test checks within 15 %; spans that were
timed twice would break it).
FLOPs per component come from tinygpt.compute.forward_flops. On a CPU, attention's share grows with T (its score
term is 2·n_layer·T·d per token) and LayerNorm takes more time than its FLOPs suggest: it does ~4 FLOPs per
element it reads and writes, so it waits on memory, while a matmul reuses each number it loads many times.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Optional

import torch

from ..compute import FORWARD_COMPONENTS, forward_activation_bytes, forward_flops
from ..defaults import PROFILE
from ..device import model_device, synchronize
from ..dtypes import dtype_name
from .measure import check_memory

WARMUP = 2


def _timed_spans(model) -> list[tuple[str, torch.nn.Module, torch.nn.Module]]:
    """(component, first module, last module) for every timed span, in execution order."""
    t = model.transformer
    spans = [("embedding", t.wte, t.drop)]
    for block in t.h:
        spans += [("layer_norm", block.ln_1, block.ln_1), ("attention", block.attn, block.attn),
                  ("layer_norm", block.ln_2, block.ln_2), ("feed_forward", block.mlp, block.mlp)]
    return spans + [("layer_norm", t.ln_f, t.ln_f), ("lm_head", model.lm_head, model.lm_head)]


def check_profile_size(model, batch: int, seq_len: int) -> None:
    """ValueError for a batch or length that is not a positive whole number, longer than the context, or whose
    forward pass would not fit in memory (the sentence gives the estimate and the limit)."""
    for value, name in ((batch, "The batch size"), (seq_len, "The sequence length")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive whole number (got {value!r}).")
    if seq_len > model.config.block_size:
        raise ValueError(f"The sequence length {seq_len:,} is longer than the model's context of "
                         f"{model.config.block_size:,} tokens.")
    dtype = dtype_name(model.transformer.wte.weight.dtype, "fp32")
    check_memory(forward_activation_bytes(model.config, batch, seq_len, dtype),
                 f"A forward pass of batch {batch} x {seq_len:,} tokens")


@torch.inference_mode()
def profile_forward(model, batch: int, seq_len: int, repeats: int = PROFILE["repeats"], seed: int = 0,
                    should_stop: Optional[Callable[[], bool]] = None) -> dict:
    """Measured seconds per component of one forward pass over (batch, seq_len) random tokens.

    -> {"seconds": {embedding, attention, feed_forward, layer_norm, lm_head, other}, "total_seconds",
        "flops": {same keys}, "batch", "seq_len", "repeats", "threads", "runs": per-repeat totals}.
    Medians over `repeats` runs after WARMUP runs. should_stop() is checked between runs (raises InterruptedError).
    """
    check_profile_size(model, batch, seq_len)
    if not isinstance(repeats, int) or isinstance(repeats, bool) or not 1 <= repeats <= 100:
        raise ValueError(f"repeats must be a whole number from 1 to 100 (got {repeats!r}).")
    idx = torch.randint(0, model.config.vocab_size, (batch, seq_len),
                        generator=torch.Generator().manual_seed(seed))  # (B, T)
    parts = {k: 0.0 for k in FORWARD_COMPONENTS if k != "other"}
    started: dict = {}
    handles = []

    dev = model_device(model)

    # a GPU queues kernels and returns at once: each timestamp first waits for the work before it (no-op on a CPU)
    def opener(key):
        def hook(module, args):
            synchronize(dev)
            started[key] = time.perf_counter()
        return hook

    def closer(key, comp):
        def hook(module, args, output):
            synchronize(dev)
            parts[comp] += time.perf_counter() - started.pop(key)
        return hook

    for i, (comp, first, last) in enumerate(_timed_spans(model)):
        handles.append(first.register_forward_pre_hook(opener(i)))
        handles.append(last.register_forward_hook(closer(i, comp)))
    was_training = model.training
    model.eval()
    runs = []
    try:
        for r in range(WARMUP + repeats):
            if should_stop is not None and should_stop():
                raise InterruptedError("The profile was stopped.")
            for k in parts:
                parts[k] = 0.0
            synchronize(dev)
            t0 = time.perf_counter()
            model(idx)
            synchronize(dev)
            total = time.perf_counter() - t0
            if r >= WARMUP:
                runs.append({**parts, "total": total})
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    seconds = {k: statistics.median(run[k] for run in runs) for k in FORWARD_COMPONENTS if k != "other"}
    total = statistics.median(run["total"] for run in runs)
    seconds["other"] = max(0.0, total - sum(seconds.values()))  # residual adds, RoPE tables, Python glue
    return {"seconds": seconds, "total_seconds": total,
            "flops": forward_flops(model.config, batch, seq_len), "batch": batch, "seq_len": seq_len,
            "repeats": repeats, "threads": torch.get_num_threads(), "runs": [run["total"] for run in runs]}


def shares(d: dict) -> dict:
    """{component: fraction of the sum}."""
    total = sum(d[k] for k in FORWARD_COMPONENTS) or 1.0
    return {k: d[k] / total for k in FORWARD_COMPONENTS}
