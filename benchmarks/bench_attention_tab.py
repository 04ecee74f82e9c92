"""How long the Attention and Positions tabs take for a 256-token prompt on a GPT-2-124M-sized model (random weights:
the shapes, not the values, set the time). Target: under 3 s per handler on 2 cores.

A transformers GPT2LMHeadModel(GPT2Config()) is saved with save_pretrained to a temporary directory and loaded as the
app loads a checkpoint. Timed, each as the user waits for it (figures rendered to PNG as Gradio does):
  attention (first)   the main action on a new prompt: two forward passes (the weights; q and k), pattern scores,
                      the scale-removed softmax, the grid, the large heatmap, the table, the graph
  attention (cached)  the same prompt again (the analysis is cached per model and prompt)
  head/view change    another layer/head/query or view of the analysed prompt
  positions           the Positions tab's button with its defaults (the learned wpe is 1,024 x 768)
Each is run --repeats times; the median and worst wall time and the median CPU time of the process are printed,
with the CPU name and the load average (on a shared machine the wall time mostly measures the neighbours).

    python benchmarks/bench_attention_tab.py [--tokens 256] [--repeats 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from benchmarks.machine import describe


def render(out) -> None:
    """Render every matplotlib figure among a handler's outputs to PNG, as Gradio does before sending it."""
    from matplotlib.figure import Figure

    for o in out if isinstance(out, tuple) else (out,):
        if isinstance(o, Figure):
            o.savefig(io.BytesIO(), format="png")


def timed(fn, repeats: int) -> tuple[list[float], list[float]]:
    """(wall times, CPU times of this process) per run. On a busy machine the CPU time (all threads) is a better
    guide to a quiet machine's wall time than the wall time itself: between cpu / threads and cpu."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        render(fn())
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    load0 = f"{os.getloadavg()[0]:.1f}"
    from transformers import GPT2Config, GPT2LMHeadModel

    from tabs import attention as att
    from tabs import positions as pos
    from tinygpt import ModelCache, gpt2_tokenizer

    tok = gpt2_tokenizer()
    words = ("the lighthouse keeper wrote every evening about the weather the ships and the gulls some nights the fog"
             " was so thick that the lamp seemed to float in the air").split()
    text, n = "", 0
    while n < a.tokens:  # exactly --tokens tokens
        text += " " + words[n % len(words)]
        n = len(tok.encode(text))
    text = tok.decode(tok.encode(text)[:a.tokens])
    with tempfile.TemporaryDirectory() as d:
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config()).save_pretrained(d)
        models = ModelCache()
        model, _ = models.get(d)
        print(describe())
        print(f"model: GPT-2 124M shape, random weights ({model.num_params():,} parameters); prompt: "
              f"{len(tok.encode(text))} tokens")
        rows = []
        cache = att.AttentionCache()

        def first():
            cache._data.clear()
            return att.on_attention(cache, models, d, text, 5, 3, None, att.VIEWS[0])
        rows.append(("attention (first)", timed(first, a.repeats)))
        rows.append(("attention (cached)", timed(lambda: att.on_attention(cache, models, d, text, 5, 3, None,
                                                                          att.VIEWS[0]), a.repeats)))
        views = iter(att.VIEWS * a.repeats)
        rows.append(("head/view change", timed(lambda: att.on_head(cache, models, d, text, 7, 2, 100, next(views)),
                                               a.repeats)))
        rows.append(("positions", timed(lambda: pos.on_positions(models, d), a.repeats)))
        rows.append(("model change", timed(lambda: att.on_model(models, d), a.repeats)))
    print(f"load average before/after: {load0} / {os.getloadavg()[0]:.1f} (a shared machine makes wall times noisy)")
    print(f"{'handler':<20} {'median s':>9} {'worst s':>8} {'median CPU s':>13}  (target < 3 s wall)")
    for name, (t, c) in rows:
        print(f"{name:<20} {statistics.median(t):9.2f} {max(t):8.2f} {statistics.median(c):13.2f}")


if __name__ == "__main__":
    main()
