"""Fine-tune defaults on a CPU: wall time and held-out loss drop for a 10,000-character text.

(1) The tab's own handler (tabs.finetune.on_finetune) with its default settings, so what is measured is what a
student gets: base sample, fine-tuning, "after" sample, held-out evaluation, probability shifts. Models: a
GPT-2-124M-sized model with random weights (real GPT-2 cannot be downloaded here; same size, same cost) and
the embedded tiny-shakespeare model.
(2) `python -m tinygpt finetune --model tiny-shakespeare --text T --out DIR` with no other flags (the same
defaults), timed as a whole process, then scored on *more* text of the same kind (the next 10,000 characters,
never trained on) before and after.
The text: the first 10,000 characters of --text (default: the offline Python-docs corpus, English prose whose
style is far from Shakespeare's).

    python benchmarks/bench_finetune.py [--text FILE] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from machine import describe  # noqa: E402


def run(models, name, text):
    """The tab's handler with its defaults; losses are read back from the session's model (not the page)."""
    from tabs import finetune
    from tabs.finetune import DEFAULTS
    from tabs.kit.sessions import SessionStore
    from tinygpt.evaluate import evaluate
    from tinygpt.finetune import holdout_split

    sessions = SessionStore()
    t0 = time.perf_counter()
    out = None
    for out in finetune.on_finetune(models, sessions, name, None, text, False, True, "", DEFAULTS["seed"],
                                    DEFAULTS["trainable"], DEFAULTS["steps"], DEFAULTS["context"],
                                    DEFAULTS["batch_size"], DEFAULTS["lr"], DEFAULTS["max_new_tokens"],
                                    progress=lambda *a, **k: None):
        pass
    wall = time.perf_counter() - t0
    tuned, tok = sessions.get(None)["finetuned"]
    base, _ = models.get(name)
    _, val = holdout_split(torch.tensor(tok.encode(text)), DEFAULTS["context"])
    before, after = (evaluate(m, val, DEFAULTS["context"])["loss"] for m in (base, tuned))
    return {"model": name, "wall_s": wall, "heldout_loss_before": before, "heldout_loss_after": after,
            "drop": before - after, "compare": re.sub(r"<[^>]+>", " | ", out[2])[:600]}


def run_cli_defaults(text, more):
    """`python -m tinygpt finetune` with default flags on the embedded model, then loss on unseen text."""
    import subprocess

    from tinygpt import load_model
    from tinygpt.evaluate import evaluate

    d = tempfile.mkdtemp()
    with open(os.path.join(d, "essay.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "tinygpt", "finetune", "--model", "tiny-shakespeare", "--text",
                        os.path.join(d, "essay.txt"), "--out", os.path.join(d, "ft"), "--json"],
                       capture_output=True, text=True, cwd=root, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(r.stderr)
    base, tok = load_model("tiny-shakespeare")
    tuned, _ = load_model(os.path.join(d, "ft"))
    ids = torch.tensor(tok.encode(more))
    before, after = (evaluate(m, ids, 128)["loss"] for m in (base, tuned))
    return {"wall_s": wall, "result": r.stdout.strip(), "unseen_loss_before": before, "unseen_loss_after": after}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", default=None)
    ap.add_argument("--chars", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from transformers import GPT2Config, GPT2LMHeadModel

    from tinygpt import ModelCache
    from tinygpt.data import python_docs

    full = open(a.text, encoding="utf-8").read() if a.text else python_docs()
    text, more = full[:a.chars], full[a.chars:2 * a.chars]
    torch.manual_seed(0)
    d = tempfile.mkdtemp()
    GPT2LMHeadModel(GPT2Config()).save_pretrained(d)  # GPT-2-124M-sized, random weights
    models = ModelCache()
    from tabs.finetune import DEFAULTS

    print(describe())
    print(f"text: {len(text):,} characters; defaults: {DEFAULTS}; {a.threads} threads")
    c = run_cli_defaults(text, more)
    print(f"CLI `finetune --model tiny-shakespeare` with default flags: {c['wall_s']:.1f} s wall (whole process);"
          f" loss on {len(more):,} unseen characters of the same kind {c['unseen_loss_before']:.3f} ->"
          f" {c['unseen_loss_after']:.3f} (drop {c['unseen_loss_before'] - c['unseen_loss_after']:.3f}); {c['result']}")
    for name in (d, "tiny-shakespeare"):
        r = run(models, name, text)
        label = "GPT-2-124M-sized (random)" if name == d else name
        print(f"{label}: {r['wall_s']:.1f} s wall, held-out loss {r['heldout_loss_before']:.3f} -> "
              f"{r['heldout_loss_after']:.3f} (drop {r['drop']:.3f})")
        print("   ", r["compare"])


if __name__ == "__main__":
    main()
