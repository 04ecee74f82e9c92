"""Measure a run's real peak memory in a fresh process, to check tinygpt.budget.estimates against.

`measure_peak(kind, settings)` starts `python -m tinygpt.budget.child KIND JSON` and returns what the
child prints:
{baseline_bytes (VmRSS just before the run), peak_bytes (VmHWM after it), peak_extra_bytes (their
difference: what the estimate predicts), file_growth_bytes (how much of RSS's growth is file-backed pages, e.g.
library code first run during the run; normally 0), seconds}. A fresh process per run, because a peak counter
never comes down: measured in one process, a run would report the largest peak seen so far.

Before its baseline the child imports torch and tinygpt, runs one tiny training step and a tiny generation (so
kernels, thread pools and the allocator's first arenas are in the baseline, as in a running app that has served
one request) and builds what the app shares: a base model to fine-tune, its text. Kinds:

  train     {configs: [GPTConfig fields, ...], steps, batch_size, context, eval_interval, eval_batches,
             corpus_tokens, sample_len}: the Train tab's runs, side by side in threads, then a sample from each.
  finetune  {config, trainable, steps, batch_size, context, text_tokens, max_new_tokens, keep_best}: the
             Fine-tune tab's flow on random token ids (sample, held-out loss, trainable copy, train, again).
  dpo       {config, trainable, steps, batch_size, n_pairs, runs}: tinygpt.beyond.dpo.train_dpo on the synthetic
             pairs (GPT-2 BPE), `runs` policies side by side.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path


def _status_bytes(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _side_by_side(jobs):
    """Run the callables at once in threads (as tabs.sessions.run_jobs); re-raise the first error."""
    errors = []

    def wrap(fn):
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(fn,)) for fn in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _warm_up():
    import torch

    from ..config import GPTConfig
    from ..model import GPT
    from ..sampling import generate
    from ..train import TrainConfig, train

    m = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=1, n_embd=16))
    d = torch.randint(0, 64, (400,), generator=torch.Generator().manual_seed(0))
    train(m, d[:300], d[300:], TrainConfig(steps=2, batch_size=2, context=16, eval_interval=1, eval_batches=1))
    generate(m, d[None, :4], 4, 0.8, None, None, torch.Generator().manual_seed(0))


def _train(s: dict):
    import torch

    from ..config import GPTConfig
    from ..data import split_tokens
    from ..model import GPT
    from ..sampling import generate
    from ..train import TrainConfig, train

    cfgs = [GPTConfig(**c) for c in s["configs"]]
    steps = s["steps"]
    interval = s.get("eval_interval") or max(1, steps // 20)  # the Train tab's schedule
    tcfg = TrainConfig(steps=steps, batch_size=s["batch_size"], context=s["context"],
                       warmup=min(100, max(1, steps // 10)), eval_interval=interval,
                       eval_batches=s.get("eval_batches", 4))

    def run():
        g = torch.Generator().manual_seed(0)  # the corpus's token ids: the Train tab encodes them for each run
        data = torch.randint(0, cfgs[0].vocab_size, (s["corpus_tokens"],), generator=g)
        train_data, val_data = split_tokens(data, 0.1)
        models = []
        for c in cfgs:
            torch.manual_seed(0)
            models.append(GPT(c))
        _side_by_side([lambda m=m: train(m, train_data, val_data, tcfg) for m in models])
        for m in models:
            generate(m, val_data[None, :8], s.get("sample_len", 0), 0.8, None, None, torch.Generator().manual_seed(0))
    return run


def _finetune(s: dict):
    import torch

    from ..config import GPTConfig
    from ..evaluate import evaluate, token_logprobs
    from ..finetune import finetune_config, holdout_split, trainable_copy
    from ..model import GPT
    from ..sampling import generate
    from ..train import train

    torch.manual_seed(0)
    base = GPT(GPTConfig(**s["config"])).eval()
    for p in base.parameters():
        p.requires_grad_(False)  # the shared model, as the app loads it
    ids = torch.randint(0, base.config.vocab_size, (s["text_tokens"],), generator=torch.Generator().manual_seed(0))
    context = s["context"]
    train_ids, val_ids = holdout_split(ids, context)
    new = s.get("max_new_tokens", 60)

    def run():
        generate(base, ids[None, :8], new, 0.8, 50, None, torch.Generator().manual_seed(0))
        evaluate(base, val_ids, context)
        tuned = trainable_copy(base, s["trainable"])
        cfg = finetune_config(s["steps"], context, s["batch_size"], 1e-3, 1337, s["trainable"],
                              keep_best=s.get("keep_best", True))
        train(tuned, train_ids, val_ids, cfg)
        generate(tuned, ids[None, :8], new, 0.8, 50, None, torch.Generator().manual_seed(0))
        evaluate(tuned, val_ids, context)
        token_logprobs(base, ids, context)
        token_logprobs(tuned, ids, context)
    return run


def _dpo(s: dict):
    import torch

    from ..beyond.dpo import DPOConfig, synthetic_pairs, train_dpo
    from ..config import GPTConfig
    from ..model import GPT
    from ..tokenizer import gpt2_tokenizer

    torch.manual_seed(0)
    base = GPT(GPTConfig(**s["config"])).eval()
    for p in base.parameters():
        p.requires_grad_(False)
    tok = gpt2_tokenizer()
    pairs = synthetic_pairs(s.get("n_pairs", 200), 1337)
    steps = s["steps"]
    cfgs = [DPOConfig(steps=steps, batch_size=s["batch_size"], beta=0.1 * (i + 1), trainable=s["trainable"],
                      eval_interval=max(1, steps // 10)) for i in range(s.get("runs", 2))]

    def run():
        _side_by_side([lambda c=c: train_dpo(base, tok, pairs, c) for c in cfgs])
    return run


KINDS = {"train": _train, "finetune": _finetune, "dpo": _dpo}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    kind, settings = argv[0], json.loads(argv[1])
    import torch

    if settings.get("threads"):
        torch.set_num_threads(int(settings["threads"]))
    _warm_up()
    run = KINDS[kind](settings)  # builds what the app would already hold (data, the shared base model)
    baseline, file0 = _status_bytes("VmRSS"), _status_bytes("RssFile")
    t0 = time.perf_counter()
    run()
    seconds = time.perf_counter() - t0
    # VmHWM, this address space's own high-water mark: ru_maxrss would also count the parent's resident size at
    # the fork that started us (Linux carries the pre-exec peak over), so a big test process inflated it
    peak = _status_bytes("VmHWM")
    print(json.dumps({"baseline_bytes": baseline, "peak_bytes": peak, "peak_extra_bytes": peak - baseline,
                      "file_growth_bytes": _status_bytes("RssFile") - file0, "seconds": seconds,
                      "threads": torch.get_num_threads()}))


def measure_peak(kind: str, settings: dict, timeout: float = 900) -> dict:
    """Run one `kind` of run with `settings` in a fresh child process and return its measurement (see above)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)} (got {kind!r}).")
    root = str(Path(__file__).resolve().parents[2])  # the directory holding the tinygpt package
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "tinygpt.budget.child", kind, json.dumps(settings)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise RuntimeError(f"The {kind} measurement failed: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
