"""The course map's training rows, each run as its tab runs it by default (the same library calls, not the UI):
wall seconds, process CPU seconds, and the effect the row's question is about, with a pass/fail against a stated
threshold (issue 21, item 3: every row's default live run should fit a lecture, <= 60 s alone on 2 cores).

    python benchmarks/bench_rows.py [--rows causal,dpo] [--settings current|previous] [--seeds 1337,1,2]
                                    [--text ../shared/data/tinyshakespeare.txt] [--set train.steps=300 ...]
                                    [--jsonl out.jsonl]

--settings current: what the app starts from today (read from tinygpt.defaults and the tabs' form values, which
this script mirrors, with the course-map rows' own settings); previous: the longer defaults before issue 21.3
(PREVIOUS below), to compare the effects with. --set overrides one setting of one row group (train, moe, dpo, rlhf,
scaling, gqa, finetune) for a search.

Timing. Wall seconds are inflated whenever the machine is shared (the load average at the start is printed):
CPU seconds of this process (every thread) ÷ 2 is the idle-2-core proxy reported next to them, and what the
<= 60 s target is checked with (<= 45 s leaves a margin). The tabs' page updates (curves redrawn at most 4 times a
second) cost the server some more CPU that is not counted here.

Corpus: the Train and Scaling tabs' first choice is Tiny Shakespeare, which cannot be downloaded here; like the
tests and the Space offline they then use the built-in Python-docs corpus, and so does this script unless --text
names a file (Tiny Shakespeare: --text ../shared/data/tinyshakespeare.txt). GQA uptraining uses the corpus the tab
picks for the embedded Shakespeare model: Tiny Shakespeare when --text is given (as online), else Python docs.
"""
from __future__ import annotations

import argparse
import math
import json
import os
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# OpenMP threads that wait by spinning burn CPU while the machine is busy (measured here: 2 threads under load
# used 4-10x the CPU seconds of 1 thread for the same work); sleeping waits keep CPU seconds ≈ the work done.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from machine import cpu_name  # noqa: E402

import tinygpt  # noqa: E402
from tinygpt import defaults as DF  # noqa: E402
from tinygpt.data import make_tokenizer, python_docs, read_text, split_tokens  # noqa: E402
from tinygpt.sampling import encode_prompt, generate  # noqa: E402

# ---- the rows -------------------------------------------------------------------------------------------------
# The course map's Train rows (tabs/coursemap.py ENTRIES), as run switches on top of the Train tab's form.
TRAIN_ROWS = {
    "train": dict(n_layer=2, b_causal=True),  # "Train a small GPT from scratch ... loss curve and accuracy"
    "causal": dict(a_causal=True, b_causal=False),
    "layernorm": dict(b_causal=True, b_layernorm=False),
    "attn_scale": dict(b_causal=True, b_attn_scale=False),
    "dropout": dict(b_causal=True, embd_pdrop=0.1, attn_pdrop=0.2, resid_pdrop=0.1),
    "rope": dict(b_causal=True, b_pos_encoding="rope"),
    "moe": dict(b_causal=True, b_experts=4, b_top_k=1, b_aux=0.05, match_active=True),  # (previous: b_aux 0.01)
}
# ... and the rows' own settings of the form (tabs/coursemap.py ENTRIES; not with --settings previous)
ROW_SETTINGS = {"train": dict(steps=500, lr=2e-3), "attn_scale": dict(n_head=2)}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAKESPEARE = [os.path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt"),
               os.path.join(ROOT, "..", "..", "shared", "data", "tinyshakespeare.txt")]
OTHER_ROWS = ["dpo", "rlhf", "rlhf_kl0", "scaling", "gqa", "finetune"]
ALL_ROWS = list(TRAIN_ROWS) + OTHER_ROWS
GROUP = {**{r: "train" for r in TRAIN_ROWS}, "moe": "moe", "dpo": "dpo", "rlhf": "rlhf", "rlhf_kl0": "rlhf",
         "scaling": "scaling", "gqa": "gqa", "finetune": "finetune"}


def current_settings() -> dict:
    """What the tabs open with today (tinygpt.defaults; the tabs' own form values where they have no table)."""
    t = DF.TRAIN_TAB
    train = dict(n_layer=t["n_layer"], n_head=t["n_head"], n_embd=t["n_embd"], context=t["block_size"],
                 steps=t["steps"], batch_size=t["batch_size"], lr=t["lr"], sample_len=t["sample_len"],
                 eval_div=20, eval_batches=t["eval_batches"])
    from tinygpt.beyond.rlhf import RLHFConfig

    rl = RLHFConfig()
    sc = DF.SCALING_LECTURE  # the course-map row's re-run (the tab's shipped sweep: --settings previous)
    return {
        "train": train,
        "moe": dict(train),  # the MoE row is a Train row with the same form
        "dpo": dict(n_synthetic=DF.DPO_TAB["synthetic"], beta_a=DF.DPO_TAB["beta"], beta_b=DF.DPO_TAB["beta_b"],
                    steps=DF.DPO_TAB["steps"], batch=DF.DPO_TAB["batch_size"], lr=DF.DPO_TAB["lr"],
                    trainable=DF.DPO_TAB["trainable"], eval_div=10, sample_len=DF.DPO_TAB["sample_len"],
                    prompt=DF.DPO_TAB["prompt"], model=DF.DPO_TAB["model"]),
        "rlhf": {k: getattr(rl, k) for k in ("n_layer", "n_head", "n_embd", "block_size", "sft_sentences",
                                             "sft_steps", "sft_batch", "sft_lr", "rm_pairs", "rm_steps", "rm_batch",
                                             "rm_lr", "ppo_steps", "prompts_per_step", "samples_per_prompt",
                                             "ppo_epochs", "ppo_lr", "kl_coef", "max_new_tokens", "eval_samples")},
        "scaling": dict(shapes=sc["shapes"], steps=sc["steps"], budgets=sc["budgets"], context=sc["context"],
                        batch_size=sc["batch_size"], lr=sc["lr"], min_steps=sc["min_steps"],
                        max_steps=sc["max_steps"], eval_windows=sc["eval_windows"]),
        "gqa": dict(steps=DF.GQA["uptrain_steps"], lr=DF.GQA["uptrain_lr"], batch=8, context=128, groups=None,
                    eval_div=5, eval_batches=2),
        "finetune": dict(steps=DF.FINETUNE["steps"], context=DF.FINETUNE["context"],
                         batch_size=DF.FINETUNE["batch_size"], lr=DF.FINETUNE["lr"],
                         trainable=DF.FINETUNE["trainable"], max_new_tokens=DF.FINETUNE_TAB["max_new_tokens"]),
    }


# The defaults before the lecture-sized ones (issue 21.3, tinygpt/defaults.py until 2026-12-06): the long runs whose
# effects the current defaults are compared with (--settings previous)
PREVIOUS = {
    "train": dict(steps=500, lr=2e-3, sample_len=500),
    "moe": dict(steps=500, lr=2e-3, sample_len=500),
    "dpo": dict(steps=40, lr=1e-4),
    "rlhf": dict(n_layer=4, n_embd=144, sft_lr=3e-3, rm_steps=100, ppo_steps=60, ppo_lr=1e-4),
    "scaling": {k: DF.SCALING[k] for k in ("shapes", "steps", "budgets")},  # the shipped sweep's
}


def previous_settings() -> dict:
    cur = current_settings()
    return {g: {**cur[g], **PREVIOUS.get(g, {})} for g in cur}


# ---- helpers -------------------------------------------------------------------------------------------------
def seeded_sample(model, tok, prompt, seed, n_tokens, temperature, top_k):
    """tabs.kit.common.seeded_sample (the same code, without importing the UI)."""
    ids = encode_prompt(tok, prompt, model.config.block_size)
    out = generate(model, torch.tensor([ids], dtype=torch.long), n_tokens, temperature, top_k, None,
                   torch.Generator().manual_seed(int(seed)))
    return tok.decode(out[0, len(ids):].tolist())


def run_threads(jobs: dict) -> dict:
    """{name: fn()} in worker threads, as the tabs' stream runs them (side by side); -> {name: result}."""
    results, errors = {}, {}

    def work(name, fn):
        try:
            results[name] = fn()
        except BaseException as e:  # noqa: BLE001
            errors[name] = e

    threads = [threading.Thread(target=work, args=(n, f)) for n, f in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise next(iter(errors.values()))
    return results


WORD = re.compile(r"[A-Za-z]{3,}")


def word_share(sample: str, vocab: set) -> float:
    """Words of 3+ letters that occur in the training text, per 100 characters of the sample: text that reads
    like the corpus has several; a broken run's "d dd ddd" or a row of quotes has none."""
    return 100 * sum(w.lower() in vocab for w in WORD.findall(sample)) / max(1, len(sample))


def char_entropy(sample: str) -> float:
    """Bits per character of the sample's own character frequencies: text ~4, a broken run's "d dd ddd" ~1."""
    n = max(1, len(sample))
    return -sum(c / n * math.log2(c / n) for c in Counter(sample).values())


def check(name, value, ok, rule) -> dict:
    return {"name": name, "value": value, "pass": bool(ok), "rule": rule}


def fmt(v) -> str:
    return f"{v:+.3f}" if isinstance(v, float) else str(v)


# ---- Train tab rows ------------------------------------------------------------------------------------------
def corpus(args) -> tuple[str, str]:
    if args.text:
        return read_text(args.text), os.path.basename(args.text)
    return python_docs(), "python-docs"


_DATA: dict = {}
_RUNS: dict = {}  # --reuse-runs: (run config, schedule, seed, corpus) -> (result, CPU seconds)


def corpus_data(text: str):
    """(tokenizer, train ids, held-out ids) of a corpus, as on_train builds them (cached per corpus)."""
    key = hash(text)
    if key not in _DATA:
        tok = make_tokenizer("char", text)
        train_data, val_data = split_tokens(torch.tensor(tok.encode(text), dtype=torch.long), 0.1)
        _DATA[key] = (tok, train_data, val_data)
    return _DATA[key]


def row_configs(row: str, s: dict, vocab: int) -> dict:
    """Runs A and B of a Train row: tabs/train/run.py run_config with the row's switches on the tab's form."""
    from tinygpt.moe import match_active_params

    sw = {"a_causal": True, "b_causal": False, "a_layernorm": True, "b_layernorm": True, "a_attn_scale": True,
          "b_attn_scale": True, "a_pos_encoding": "learned", "b_pos_encoding": "learned", "embd_pdrop": 0.0,
          "attn_pdrop": 0.0, "resid_pdrop": 0.0, "b_experts": 0, "b_top_k": 1, "b_aux": 0.01,
          "match_active": False, "n_layer": s["n_layer"], **TRAIN_ROWS[row],
          **{k: v for k, v in s.items() if k.startswith(("a_", "b_"))}}  # --set moe.b_aux=0.05: a switch

    def cfg(run):
        experts = sw["b_experts"] if run == "b" else 0
        return tinygpt.GPTConfig(vocab_size=vocab, block_size=s["context"], n_layer=sw["n_layer"], n_head=s["n_head"],
                                 n_embd=s["n_embd"], embd_pdrop=sw["embd_pdrop"], attn_pdrop=sw["attn_pdrop"],
                                 resid_pdrop=sw["resid_pdrop"], causal=bool(sw[f"{run}_causal"]),
                                 layernorm=bool(sw[f"{run}_layernorm"]), attn_scale=bool(sw[f"{run}_attn_scale"]),
                                 n_experts=experts, moe_top_k=sw["b_top_k"] if experts else 1,
                                 moe_aux_weight=sw["b_aux"] if experts else 0.01,
                                 pos_encoding=sw[f"{run}_pos_encoding"])

    cfgs = {"A": cfg("a"), "B": cfg("b")}
    if sw["match_active"]:
        match_active_params(cfgs)
    return cfgs


def train_row(row: str, s: dict, seed: int, text: str, vocab_words: set, reuse: bool = False) -> dict:
    """tabs/train/run.py on_train: two runs from the same initial weights, side by side, then sampled.

    reuse: train the runs one after the other and keep each (config, schedule, seed, corpus) once, so rows that
    share a run (run A of most rows) train it once; the row's CPU seconds are then the sum of its runs' own
    (measured when first trained) and its sampling, returned as "cpu_s"."""
    from tinygpt.moe import expert_load, with_expert_load

    tok, train_data, val_data = corpus_data(text)
    T, S = s["context"], s["steps"]
    cfgs = row_configs(row, s, tok.vocab_size)
    tcfg = tinygpt.TrainConfig(steps=S, batch_size=s["batch_size"], context=T, lr=s["lr"],
                               warmup=min(100, max(1, S // 10)), eval_interval=max(1, S // s.get("eval_div", 20)),
                               eval_batches=s.get("eval_batches", 4), seed=seed)

    def model(c):
        torch.manual_seed(seed)  # same initial weights for both runs: only the switch differs
        return tinygpt.GPT(c)

    def job(m):
        hist: list = []
        return m, tinygpt.train(m, train_data, val_data, tcfg, with_expert_load(hist.append, m, val_data, T))

    cpu = 0.0
    if reuse:
        out = {}
        for k, c in cfgs.items():
            key = (repr(c), repr(tcfg), seed, hash(text))
            if key not in _RUNS:
                c0 = time.process_time()
                _RUNS[key] = (job(model(c)), time.process_time() - c0)
            out[k], spent = _RUNS[key]
            cpu += spent
        c0 = time.process_time()
    else:  # as the tab: both models built first (one after the other), then trained side by side
        models = {k: model(c) for k, c in cfgs.items()}
        out = run_threads({k: (lambda m=m: job(m)) for k, m in models.items()})
    models = {k: v[0] for k, v in out.items()}
    results = {k: v[1] for k, v in out.items()}
    prompt = tok.decode(val_data[:8].tolist())
    samples = {k: seeded_sample(m, tok, prompt, seed, s["sample_len"], 0.8, None) for k, m in models.items()}
    loads = {k: expert_load(m, val_data, T, max_windows=64)["per_layer"] for k, m in models.items()
             if cfgs[k].n_experts}
    if reuse:
        cpu += time.process_time() - c0
    tail = max(1, S // 10)
    runs = {k: {"val_loss": r["val_loss"], "val_accuracy": r["val_accuracy"], "train_loss": r["train_loss"],
                "first_val": r["history"][0]["val_loss"],
                "tail_train": sum(e["train_loss"] for e in r["history"][-tail:]) / tail,
                "words": word_share(samples[k], vocab_words), "entropy": char_entropy(samples[k]),
                "params_total": tinygpt.count_parameters(cfgs[k])["total"],
                "params_active": tinygpt.count_parameters(cfgs[k])["active"], "tokens_per_s": r["tokens_per_s"],
                "curve": [(e["step"], round(e["val_loss"], 3)) for e in r["history"] if e["val_loss"] is not None]}
            for k, r in results.items()}
    return {"runs": runs, "samples": samples, "loads": loads,
            **({"cpu_s": cpu} if reuse else {})}


def train_effects(row: str, r: dict) -> list:
    """The effect each Train row's question is about, read from runs A and B (thresholds: what the current
    defaults show on the Python-docs corpus, with room for seed noise)."""
    A, B = r["runs"]["A"], r["runs"]["B"]
    if row == "train":
        drop = A["first_val"] - A["val_loss"]
        return [check("val loss drop from step 1 (nats)", drop, drop >= 1.5, ">= 1.5"),
                check("val accuracy", A["val_accuracy"], A["val_accuracy"] >= 0.30,
                      ">= 0.30 (the commonest character, a space, is ~0.15)")]
    if row == "causal":
        gap = A["val_loss"] - B["val_loss"]
        hgap = A.get("entropy", 0.0) - B.get("entropy", 0.0)
        return [check("val loss A - B (nats)", gap, gap >= 1.0, ">= 1.0 (B sees the answer)"),
                check("B's val loss (nats)", B["val_loss"], B["val_loss"] <= 0.5, "<= 0.5 (collapses towards 0)"),
                check("character entropy of the sample, A - B (bits)", hgap, hgap >= 1.0,
                      ">= 1 (B's text broken: a few characters repeated)")]
    if row in ("layernorm", "attn_scale"):
        gap = B["val_loss"] - A["val_loss"]
        return [check("val loss B - A (nats)", gap, gap >= 0.05, ">= 0.05 (B worse without it)")]
    if row == "dropout":
        gap = A["tail_train"] - A["val_loss"]
        return [check("train loss (dropout on, last 10% of steps) - val loss", gap, gap >= 0.05,
                      ">= 0.05 (dropout holds the training loss above the held-out one)")]
    if row == "rope":
        gap = A["val_loss"] - B["val_loss"]
        return [check("val loss learned - RoPE (nats)", gap, gap >= 0.05, ">= 0.05 (RoPE learns faster)")]
    if row == "moe":
        load = r["loads"]["B"]
        busy, idle = max(max(x) for x in load), min(min(x) for x in load)
        eq = abs(A["params_total"] - B["params_active"]) / B["params_active"]
        diff = A["val_loss"] - B["val_loss"]
        verdict = "collapsed" if busy >= 0.9 else "unbalanced" if busy >= 0.5 or idle < 0.1 else "balanced"
        return [check("busiest expert's share (any layer)", busy, busy < 0.5, "< 2/E = 0.50"),
                check("idlest expert's share (any layer)", idle, idle >= 0.05, ">= 0.05 (every expert used)"),
                check("the tab's Explain reads", verdict, verdict != "collapsed", "not 'collapsed'"),
                check("dense params / MoE active params - 1", eq, eq < 0.01, "< 1%"),
                check("val loss dense - MoE (nats)", diff, diff > -0.05, "> -0.05 (MoE no worse at equal active)")]
    raise KeyError(row)


# ---- DPO ------------------------------------------------------------------------------------------------------
def dpo_row(s: dict, seed: int) -> dict:
    """tabs/alignment/dpo.py on_dpo: pairs, the 'before' sample, two betas side by side, 'after' samples, leaning."""
    from tinygpt.beyond import dpo as D

    base, tok = tinygpt.load_model(s["model"])
    pairs = D.synthetic_pairs(s["n_synthetic"], seed)
    prompt = s["prompt"]
    betas = {"A": s["beta_a"]}
    if s["beta_b"]:
        betas["B"] = s["beta_b"]
    cfgs = {k: D.DPOConfig(steps=s["steps"], batch_size=s["batch"], lr=s["lr"], beta=b, seed=seed,
                           trainable=s["trainable"], eval_interval=max(1, s["steps"] // s.get("eval_div", 10)))
            for k, b in betas.items()}
    seeded_sample(base, tok, prompt, seed, s["sample_len"], 0.8, 50)
    results = run_threads({k: (lambda c=c: D.train_dpo(base, tok, pairs, c)) for k, c in cfgs.items()})
    for k in betas:
        seeded_sample(results[k]["policy"], tok, prompt, seed, s["sample_len"], 0.8, 50)
    lean = {"before": D.next_word_probability(base, tok, prompt, D.KIND) /
            max(1e-9, D.next_word_probability(base, tok, prompt, D.UNKIND))}
    for k in betas:
        m = results[k]["policy"]
        lean[k] = D.next_word_probability(m, tok, prompt, D.KIND) / max(1e-9, D.next_word_probability(m, tok, prompt,
                                                                                                      D.UNKIND))
    return {"runs": {k: {"margin": r["end"]["reward_margin"], "accuracy": r["end"]["reward_accuracy"],
                         "loss": r["end"]["loss"], "held_out": r["held_out"], "gap_nats": r["end"]["reward_margin"] /
                         betas[k]} for k, r in results.items()}, "kind_over_unkind": lean}


def dpo_effects(r: dict) -> list:
    out = []
    for k, v in r["runs"].items():
        out.append(check(f"{k}: held-out margin (chosen - rejected reward)", v["margin"], v["margin"] >= 0.5,
                         ">= 0.5"))
        out.append(check(f"{k}: held-out accuracy", v["accuracy"], v["accuracy"] >= 0.8, ">= 0.8"))
    lean = r["kind_over_unkind"]
    rise = lean["A"] / lean["before"]
    out.append(check("kind/unkind next-word odds after A / before", rise, rise >= 2.0, ">= 2x"))
    return out


# ---- RLHF -----------------------------------------------------------------------------------------------------
def rlhf_cfg(s: dict, seed: int):
    from tinygpt.beyond.rlhf import RLHFConfig

    return replace(RLHFConfig(), seed=seed, **s)


_RLHF_STATE: dict = {}


def rlhf_row(s: dict, seed: int) -> dict:
    """tabs/alignment/rlhf.py on_rlhf: SFT -> reward model -> PPO with the KL penalty."""
    from tinygpt.beyond import rlhf as R

    cfg = rlhf_cfg(s, seed)
    res = R.run_rlhf(cfg)
    _RLHF_STATE[(seed, json.dumps(s, sort_keys=True, default=str))] = res
    p = res["ppo"]
    return {"stage_wall_s": {k: round(res[k]["seconds"], 1) for k in ("sft", "reward_model", "ppo")},
            "sft_val_loss": res["sft"]["val_loss"], "rm_val_accuracy": res["reward_model"]["val_accuracy"],
            "start": p["start"], "end": p["end"], "params": res["params"],
            "sample": p["samples"]["ppo"][0][1].strip()}


def rlhf_kl0_run(s: dict, seed: int) -> dict:
    """tabs/alignment/rlhf.py on_rlhf_ppo: PPO again from the session's SFT and reward models with KL coefficient 0
    (the pipeline it reuses is trained first by run_row, outside the timing)."""
    from tinygpt.beyond import rlhf as R

    key = (seed, json.dumps(s, sort_keys=True, default=str))
    res = _RLHF_STATE[key]
    cfg = replace(rlhf_cfg(s, seed), kl_coef=0.0)
    m = res["models"]
    _, p = R.run_ppo(m["sft"], m["reward_model"], res["tokenizer"], cfg)
    return {"start": p["start"], "end": p["end"], "sample": p["samples"]["ppo"][0][1].strip()}


def rlhf_effects(r: dict) -> list:
    s, e = r["start"], r["end"]
    up = e["reward"] - s["reward"]
    return [check("SFT grammatical share", s["grammatical"], s["grammatical"] >= 0.6, ">= 0.6"),
            check("reward model held-out accuracy", r["rm_val_accuracy"], r["rm_val_accuracy"] >= 0.8, ">= 0.8"),
            check("PPO reward end - start", up, up > 0.3, "> 0.3 (reward-model units)"),
            check("PPO KL to SFT (nats)", e["kl"], e["kl"] > 0.05, "> 0.05"),
            check("labeller score end - start", e["gold"] - s["gold"], e["gold"] - s["gold"] > 0.2,
                  "> 0.2 (the tab's 'PPO worked')"),
            check("grammatical share after PPO", e["grammatical"], e["grammatical"] >= 0.6, ">= 0.6")]


def rlhf_kl0_effects(r: dict) -> list:
    s, e = r["start"], r["end"]
    up = e["reward"] - s["reward"]
    hack = (e["gold"] <= s["gold"] + 0.2) or (e["grammatical"] < s["grammatical"] - 0.3)
    return [check("reward end - start (KL 0)", up, up > 0.2, "> 0.2"),
            check("grammatical share start -> end drop", s["grammatical"] - e["grammatical"],
                  s["grammatical"] - e["grammatical"] > 0.3, "> 0.3"),
            check("the tab reads 'Reward hacking'", hack, up > 0.2 and hack,
                  "reward up and (labeller score flat or grammar down 0.3)")]


# ---- Scaling --------------------------------------------------------------------------------------------------
def scaling_row(s: dict, seed: int, text: str) -> dict:
    """tabs/scaling on_rerun: plan, estimate (3 timed steps per shape), then the sweep."""
    from tinygpt.beyond.scaling import SweepConfig, estimate_seconds, plan_sweep, scaling_sweep

    cfg = SweepConfig(shapes=tuple(tuple(x) for x in s["shapes"]), steps=s["steps"], budgets=tuple(s["budgets"]),
                      context=s["context"], batch_size=s["batch_size"], lr=s["lr"], min_steps=s["min_steps"],
                      max_steps=s["max_steps"], eval_windows=s["eval_windows"], seed=seed)
    vocab = make_tokenizer("char", text).vocab_size
    plan = plan_sweep(cfg, vocab)
    est = estimate_seconds(cfg, vocab, plan)["seconds"]
    res = scaling_sweep(cfg, text, corpus_name="bench")
    fit = res["fit"] or {}
    return {"runs": len(res["runs"]), "steps_total": sum(r["steps"] for r in plan), "estimate_s": est,
            "alpha": fit.get("alpha"), "r2": fit.get("r2"),
            "budgets": [{"flops": b["flops"], "edge": b["edge"], "method": b["method"], "n_opt": b["n_opt"],
                         "losses": [round(x["val_loss"], 3) for x in b["runs"]]} for b in res["budgets"]],
            "n_opt_exponent": (res["optimum"] or {}).get("exponent"),
            "size_losses": [round(x["val_loss"], 3) for x in sorted((x for x in res["runs"] if x["group"] == "size"),
                                                                     key=lambda x: x["params"])]}


def scaling_effects(r: dict) -> list:
    interior = sum(1 for b in r["budgets"] if not b["edge"] and b["method"] == "parabola")
    a = r["alpha"] if r["alpha"] is not None else float("nan")
    return [check("L(N) fit alpha", a, a > 0, "> 0"),
            check("L(N) fit r2", r["r2"] or 0.0, (r["r2"] or 0) >= 0.9, ">= 0.9"),
            check("budgets with an interior (parabola) optimum", interior, interior >= 2 and
                  interior == len(r["budgets"]), "all budgets, and >= 2 (N_opt ∝ C^a needs 2)"),
            check("N_opt exponent a", r["n_opt_exponent"] if r["n_opt_exponent"] is not None else float("nan"),
                  (r["n_opt_exponent"] or 0) > 0, "> 0 (bigger budget, bigger best model)")]


# ---- GQA uptraining ------------------------------------------------------------------------------------------
def gqa_row(s: dict, seed: int, args) -> dict:
    """tabs/efficiency/gqa.py on_uptrain on the embedded model: convert, evaluate, uptrain, evaluate."""
    from tinygpt.efficiency import convert_kv_heads, uptrain
    from tinygpt.evaluate import evaluate, perplexity
    from tinygpt.interpret.pruning import default_reference

    base, tok = tinygpt.load_model("tiny-shakespeare")
    n_head = base.config.n_head
    divisors = [k for k in range(2, n_head) if n_head % k == 0] or [1]  # tabs/efficiency/gqa.py default_groups
    g = s["groups"] or min(divisors, key=lambda k: (abs(k - n_head / 4), k))
    text = read_text(args.gqa_text) if args.gqa_text else python_docs()
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    context = min(s["context"], base.config.block_size)
    _, val_ids = split_tokens(ids, 0.1)
    windows = dict(max_windows=16)
    mha = evaluate(base, val_ids, context, **windows)["loss"]
    model = convert_kv_heads(base, g)
    start = evaluate(model, val_ids, context, **windows)["loss"]
    ref = default_reference(base.info.name)
    perplexity(base, tok, ref)
    perplexity(model, tok, ref)
    res = uptrain(model, ids, s["steps"], s["batch"], context, s["lr"], seed=seed)
    perplexity(model, tok, ref)
    return {"groups": g, "mha": mha, "start": start, "end": res["val_loss"],
            "closed": (start - res["val_loss"]) / max(1e-9, start - mha)}


def gqa_effects(r: dict) -> list:
    return [check("share of the MHA gap closed on held-out text", r["closed"], r["closed"] >= 0.5, ">= 0.5"),
            check("held-out loss start - end (nats)", r["start"] - r["end"], r["start"] - r["end"] > 0.05, "> 0.05")]


# ---- Fine-tune -----------------------------------------------------------------------------------------------
def finetune_row(s: dict, seed: int, args) -> dict:
    """tabs/finetune.py on_finetune with the embedded model on 10,000 characters of Python docs."""
    from tinygpt.evaluate import evaluate
    from tinygpt.finetune import finetune_config, holdout_split, probability_shifts, trainable_copy

    base, tok = tinygpt.load_model("tiny-shakespeare")
    text = python_docs()[:10_000]
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    ctx = min(s["context"], base.config.block_size)
    train_ids, val_ids = holdout_split(ids, ctx)
    prompt = " ".join(text.split()[:8])
    seeded_sample(base, tok, prompt, seed, s["max_new_tokens"], 0.8, 50)
    before = evaluate(base, val_ids, ctx)["loss"]
    tuned = trainable_copy(base, s["trainable"])
    cfg = finetune_config(s["steps"], ctx, s["batch_size"], s["lr"], seed, s["trainable"])
    tinygpt.train(tuned, train_ids, val_ids, cfg)
    seeded_sample(tuned, tok, prompt, seed, s["max_new_tokens"], 0.8, 50)
    after = evaluate(tuned, val_ids, ctx)["loss"]
    probability_shifts(base, tuned, tok, val_ids, ctx)
    return {"before": before, "after": after}


def finetune_effects(r: dict) -> list:
    d = r["before"] - r["after"]
    return [check("held-out loss drop (nats)", d, d >= 0.3, ">= 0.3")]


# ---- driver --------------------------------------------------------------------------------------------------
def apply_overrides(settings: dict, items: list) -> None:
    """GROUP.KEY=JSON items; train.KEY also sets moe.KEY (one form) unless moe.KEY is given too."""
    own = {item.partition("=")[0] for item in items or []}
    for item in items or []:
        key, _, value = item.partition("=")
        group, _, name = key.partition(".")
        try:
            v = json.loads(value)
        except json.JSONDecodeError:
            v = value
        settings[group][name] = v
        if group == "train" and f"moe.{name}" not in own:
            settings["moe"][name] = v


def run_row(row, settings, seed, args, text, vocab_words):
    g = GROUP[row]
    s = {**settings[g], **(ROW_SETTINGS.get(row, {}) if args.settings == "current" else {}),
         **settings.get("rows", {}).get(row, {})}
    if row == "rlhf_kl0":
        key = (seed, json.dumps(s, sort_keys=True, default=str))
        if key not in _RLHF_STATE:
            rlhf_row(s, seed)  # the pipeline the re-run reuses (its own row times it)
    t0, c0 = time.perf_counter(), time.process_time()
    if row in TRAIN_ROWS:
        r = train_row(row, s, seed, text, vocab_words, args.reuse_runs)
    elif row == "dpo":
        r = dpo_row(s, seed)
    elif row == "rlhf":
        r = rlhf_row(s, seed)
    elif row == "rlhf_kl0":
        r = rlhf_kl0_run(s, seed)
    elif row == "scaling":
        r = scaling_row(s, seed, text)
    elif row == "gqa":
        r = gqa_row(s, seed, args)
    elif row == "finetune":
        r = finetune_row(s, seed, args)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if "cpu_s" in r:  # --reuse-runs: the row's own runs, each measured once (wall is not the row's)
        cpu, wall = r.pop("cpu_s"), float("nan")
    effects = (train_effects(row, r) if row in TRAIN_ROWS else
               {"dpo": dpo_effects, "rlhf": rlhf_effects, "rlhf_kl0": rlhf_kl0_effects, "scaling": scaling_effects,
                "gqa": gqa_effects, "finetune": finetune_effects}[row](r))
    return {"row": row, "seed": seed, "wall_s": wall, "cpu_s": cpu, "idle2_s": cpu / 2,
            "fits": cpu / 2 <= 45, "pass": all(e["pass"] for e in effects), "effects": effects, "detail": r,
            "settings": s}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=",".join(ALL_ROWS), help=f"comma-separated, from {','.join(ALL_ROWS)}")
    ap.add_argument("--settings", choices=("current", "previous"), default="current")
    ap.add_argument("--seeds", default=str(DF.SEED), help="comma-separated seeds (the tabs' default: 1337)")
    ap.add_argument("--text", default=None, help="corpus file for the Train/Scaling rows (default: Python docs)")
    ap.add_argument("--set", action="append", default=[], metavar="GROUP.KEY=JSON",
                    help="override a setting, e.g. train.steps=300 or scaling.shapes=[[1,1,8],[1,2,16]]")
    ap.add_argument("--gqa-text", default=next((p for p in SHAKESPEARE if os.path.exists(p)), None),
                    help="GQA uptraining corpus: Tiny Shakespeare, as the tab uses for the embedded model online "
                         "(default: found at ../shared/data/tinyshakespeare.txt, else the Python docs as offline)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--reuse-runs", action="store_true",
                    help="Train rows: train each distinct run once (rows share run A) and one after the other; "
                         "a row's CPU seconds are its own runs' (best with --threads 1); no wall time")
    ap.add_argument("--jsonl", default=None, help="append every result as one JSON line to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    bad = [r for r in rows if r not in ALL_ROWS]
    if bad:
        ap.error(f"unknown rows {bad}; choose from {ALL_ROWS}")
    settings = current_settings() if args.settings == "current" else previous_settings()
    apply_overrides(settings, args.set)
    text, cname = corpus(args)
    vocab_words = {w.lower() for w in WORD.findall(text)}
    load = os.getloadavg()
    print(f"CPU: {cpu_name()} · {os.cpu_count()} logical cores · torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads · load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"settings: {args.settings}{' + ' + ' '.join(args.set) if args.set else ''} · corpus: {cname} "
          f"(GQA: {os.path.basename(args.gqa_text) if args.gqa_text else 'python-docs'}) · "
          "time: wall s (inflated on a shared machine) and CPU s / 2 = the idle-2-core proxy (target <= 45, "
          "limit 60)", flush=True)
    for seed in [int(x) for x in args.seeds.split(",")]:
        for row in rows:
            res = run_row(row, settings, seed, args, text, vocab_words)
            res.update(settings_name=args.settings, overrides=args.set, corpus=cname, load_start=load[0],
                       load_end=os.getloadavg()[0])
            verdict = "PASS" if res["pass"] else "FAIL"
            fit = "fits" if res["fits"] else "TOO SLOW"
            print(f"\n[{row} seed {seed}] wall {res['wall_s']:.1f} s · CPU {res['cpu_s']:.1f} s · CPU/2 "
                  f"{res['idle2_s']:.1f} s ({fit}) · effect {verdict}")
            for e in res["effects"]:
                print(f"    {'ok ' if e['pass'] else 'NO '} {e['name']}: {fmt(e['value'])}  (want {e['rule']})")
            if row in TRAIN_ROWS:
                for k, v in res["detail"]["runs"].items():
                    print(f"    run {k}: val {v['val_loss']:.3f} acc {v['val_accuracy']:.3f} train(last10%) "
                          f"{v['tail_train']:.3f} words/100 chars {v['words']:.1f} entropy {v['entropy']:.2f} "
                          f"params {v['params_total']:,}")
                for k, v in res["detail"]["samples"].items():
                    print(f"    sample {k}: {v[:100]!r}")
            else:
                print("    " + json.dumps({k: v for k, v in res["detail"].items() if k != "budgets"},
                                          default=lambda o: round(o, 3) if isinstance(o, float) else str(o))[:600])
                if row == "scaling":
                    for b in res["detail"]["budgets"]:
                        print(f"    budget {b['flops']:.2g}: losses {b['losses']} edge={b['edge']} {b['method']}")
            sys.stdout.flush()
            if args.jsonl:
                with open(args.jsonl, "a", encoding="utf-8") as f:
                    f.write(json.dumps(res, default=str) + "\n")


if __name__ == "__main__":
    main()
