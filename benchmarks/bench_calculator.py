"""Parameters & compute tab: time per answer (the Calculate handler, everything it returns) for every preset, from
GPT-2 small to GPT-3 175B and Mixtral-8x7B, and for reading a pasted config.json into the form. The target is
< 100 ms per answer on the Space's CPU; nothing is allocated, so the size of the model should not matter.

    python benchmarks/bench_calculator.py [--repeats 20] [--http] [--json]

Prints the median and the worst of `repeats` calls per case (the first call, which warms caches, is left out).
--http also times the whole round trip through a launched app and gradio_client (queue, HTTP, Gradio's
pre/postprocessing of the table, plots and JSON), for GPT-3 175B and Mixtral-8x7B.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from functools import partial

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from machine import describe  # noqa: E402

from tabs import calculator  # noqa: E402
from tinygpt import PRESETS  # noqa: E402

LLAMA3_8B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 8192,
             "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256,
             "tie_word_embeddings": False, "rope_theta": 500000.0}


def timings(fn, repeats):
    fn()  # warm-up (lru caches, first pandas frame)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return {"median_ms": statistics.median(out), "max_ms": max(out)}


def answer(preset, dtype="bf16"):
    v = calculator.preset_values(preset)
    return lambda: calculator.on_params(*v[:9], dtype, "adamw", 1, v[9], 10 ** 12, 312, 0.4, *v[10:])


def http_timings(repeats):
    """Round trips through gradio_client to a launched tab (what a browser's answer costs, minus drawing)."""
    import socket

    import gradio as gr
    from gradio_client import Client

    with gr.Blocks() as demo:
        with gr.Tabs():
            calculator.build()
        box = gr.Textbox(visible=False)
        box.submit(lambda x: x, box, box, api_name="echo")  # baseline: Gradio's own round trip, no work
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        out = {"HTTP round trip: echo (baseline)": timings(lambda: client.predict("x", api_name="/echo"), repeats)}
        for name in ("gpt3", "mixtral-8x7b", "gpt2"):
            v = calculator.preset_values(name)
            args = [*v[:9], "bf16", "adamw", 1, v[9], 10 ** 12, 312, 0.4, *v[10:]]
            out[f"HTTP round trip: {name}"] = timings(partial(client.predict, *args, api_name="/params"), repeats)
        return out
    finally:
        demo.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--http", action="store_true", help="also time round trips through a launched app")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = {f"Calculate: {name}": timings(answer(name), a.repeats) for name in PRESETS}
    text = json.dumps(LLAMA3_8B)

    def from_config():
        form = calculator.on_config_json(text)[:-1]
        calculator.on_params(*form[:9], "bf16", "adamw", 1, 8192, 10 ** 12, 312, 0.4, *form[10:])
    rows["paste Llama-3-8B config.json + Calculate"] = timings(from_config, a.repeats)
    if a.http:
        rows.update(http_timings(a.repeats))
    if a.json:
        print(json.dumps({"machine": describe(), "repeats": a.repeats, "results": rows}))
        return
    print(describe())
    print(f"{'case':<48} {'median ms':>10} {'max ms':>8}")
    for name, r in rows.items():
        print(f"{name:<48} {r['median_ms']:>10.1f} {r['max_ms']:>8.1f}")
    worst = max(r["max_ms"] for name, r in rows.items() if not name.startswith("HTTP"))
    print(f"worst single answer (handler): {worst:.1f} ms ({'under' if worst < 100 else 'OVER'} the 100 ms target)")
    base = rows.get("HTTP round trip: echo (baseline)")
    if base:
        extra = max(r["median_ms"] for name, r in rows.items() if name.startswith("HTTP")) - base["median_ms"]
        print(f"HTTP: the calculator adds {extra:.1f} ms (median) to Gradio's own {base['median_ms']:.1f} ms")


if __name__ == "__main__":
    main()
