"""One estimate per action: a run's peak memory above the process's baseline and its seconds, before it starts.

Each function mirrors what its tab (or command) runs, with its settings after the tab's own checks, and adds up
the terms of tinygpt.budget.terms: the calculator's formulas plus the measured buffers they leave out (that
module's docstring lists them, with why), and the run's work at this machine's measured speed
(tinygpt.budget.machine_speed, or the `speed` given). The result is a tinygpt.budget.Estimate for
tinygpt.budget.check and LEDGER.reserve. Terms that belong to an action rather than to a pass:

* Data: the corpus as int64 token ids (8 bytes a token), held while the run goes.
* Two runs side by side (Train's A and B, DPO's two betas) may peak at the same moment: their peaks add up. Their
  threads allocate from separate malloc arenas, which do not reuse each other's freed blocks; that is not modelled
  and shows as run-to-run variance on small runs (the Train tab's defaults: 120 MB estimated, 131 to 257 MB
  measured; the largest pair that fits, 1.9 GB: within 2 %).
* A child process (the FlashAttention benchmark, the Scaling tab's sweep): its Python + torch before its work
  (measure.CHILD_OVERHEAD).
* A KV cache is allocated for the whole context, but memory pages count (RSS) only once written: the cache holds
  the positions filled (measured: 6 rows x 76 positions of GPT-2 took 50 MB, not the 453 MB allocated).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence

import torch

from . import Estimate, Speed, machine_speed
from .terms import (
    ALLOCATOR_SHARE,
    E,
    EVAL_ROWS,
    Work,
    eval_pass_bytes,
    evaluations,
    forward_flops,
    heap_share,
    trained_part,
    training_run,
    windows,
)
from ..compute import forward_activation_bytes, kv_cache_bytes
from ..config import GPTConfig
from ..params import count_parameters

SHAKESPEARE_CHARS = 1_115_394  # Tiny Shakespeare: characters = token ids at the character level
SHAKESPEARE_GPT2_TOKENS = 338_025  # ... and GPT-2 BPE tokens
SYNTHETIC_PAIR_TOKENS = 18  # the longest synthetic DPO pair (prompt + response), GPT-2 BPE
RLHF_VOCAB = 25  # the characters of the toy RLHF grammar
CHILD_START_S = 3.0  # starting a child Python and importing torch on a busy 2-core machine (measured 1.5-3 s)
TILE_S = 60e-6  # Python overhead per tile of the tiled FlashAttention loop (bench_attention: 2.2 s, 32,896 tiles)


def _add(total: dict, parts: dict) -> dict:
    for k, v in parts.items():
        total[k] = total.get(k, 0) + int(v)
    return total


def _estimate(action: str, parts: dict, work: Work, speed: Optional[Speed], advice: str,
              seconds: Optional[float] = None) -> Estimate:
    parts = {k: int(v) for k, v in parts.items() if v}
    seconds = work.seconds(speed) if seconds is None else seconds
    return Estimate(action, sum(parts.values()), float(seconds), parts, float(work.flops), advice)


# ---- the actions ------------------------------------------------------------------------------------------
def estimate_train(configs, steps: int, batch_size: int, context: int, eval_interval: Optional[int] = None,
                   eval_batches: int = 4, sample_len: int = 500, corpus_tokens: int = SHAKESPEARE_CHARS,
                   prompt_tokens: int = 8, speed: Optional[Speed] = None) -> Estimate:
    """Train from scratch: one GPTConfig, or a list of them trained side by side (the Train tab's runs A and B,
    each peaking at the same time), each followed by a sample of `sample_len` tokens. eval_interval: default the
    tab's max(1, steps // 20); eval_batches x 8 validation windows per evaluation."""
    configs = [configs] if isinstance(configs, GPTConfig) else list(configs)
    interval = eval_interval or max(1, steps // 20)
    n_windows = windows(corpus_tokens - int(0.9 * corpus_tokens), context, eval_batches * 8)  # the last 10 %
    parts: dict = {"data": 8 * corpus_tokens}
    work = Work()
    for c in configs:
        _add(parts, training_run(c, batch_size, context, eval_rows=min(EVAL_ROWS, n_windows)))
        evals = evaluations(steps, interval)
        work.train(c, batch_size, context, n=steps).forward(c, n_windows, context, n=evals)
        work.generate(c, 1, prompt_tokens, sample_len)
        if c.n_experts:  # the expert load: 8 windows per evaluation, 64 at the end
            work.forward(c, 8, context, n=evals).forward(c, 64, context)
    return _estimate("train", parts, work, speed,
                     "use fewer steps, a smaller batch, context or vocabulary (characters instead of GPT-2 BPE), "
                     "or a smaller model")


def estimate_finetune(config: GPTConfig, trainable: str = "top:2", steps: int = 40, batch_size: int = 4,
                      context: int = 128, max_new_tokens: int = 60, text_tokens: int = 3000, keep_best: bool = True,
                      prompt_tokens: int = 8, speed: Optional[Speed] = None) -> Estimate:
    """Fine-tune a trainable copy of a shared base (tinygpt.finetune.trainable_copy: clones of what trains, or a
    full copy for "all"), with the Fine-tune tab's before/after samples and held-out losses, then the probability
    shifts: every token of the text scored by both models (16 windows per pass, the base's scores kept)."""
    c = config
    copies = "all" if trainable == "all" else "trained"
    val = max(int(text_tokens * 0.1), context + 2)  # tinygpt.finetune.holdout_split
    n_windows = windows(val, context, 32)  # ten evaluations of 4 x 8 windows at most
    run = training_run(c, batch_size, context, trainable, copies, eval_rows=min(EVAL_ROWS, n_windows),
                       keep_best=keep_best)
    rows = min(EVAL_ROWS, windows(text_tokens, context))
    after = {"weights": run["weights"], "evaluation": eval_pass_bytes(c, rows, context),
             "token scores": 2 * 21 * text_tokens}  # log-prob, hit, target, position per token; per window + joined
    after["allocator"] = ALLOCATOR_SHARE * heap_share(4 * rows * context * c.vocab_size, after["evaluation"])
    parts = {"data": 8 * text_tokens, **max((run, after), key=lambda ph: sum(ph.values()))}
    work = Work().train(c, batch_size, context, trained_part(c, trainable), n=steps)
    work.forward(c, n_windows, context, n=evaluations(steps, max(1, steps // 10)))
    work.forward(c, windows(val, context), context, n=2)  # held-out loss before and after
    work.forward(c, windows(text_tokens, context), context, n=2)  # every token under both models
    work.generate(c, 1, prompt_tokens, max_new_tokens, n=2)
    return _estimate("finetune", parts, work, speed,
                     "use fewer steps, a smaller batch or context, or train only the top blocks")


def estimate_dpo(config: GPTConfig, trainable: str = "all", steps: int = 40, batch_size: int = 8,
                 seq_len: int = SYNTHETIC_PAIR_TOKENS, n_pairs: int = 200, runs: int = 2,
                 eval_interval: Optional[int] = None, speed: Optional[Speed] = None) -> Estimate:
    """DPO (tinygpt.beyond.dpo.train_dpo): `runs` policies (one per beta, side by side) against the shared, frozen
    base as reference. seq_len: the longest pair, prompt + response, in tokens (every batch is padded to it)."""
    c = config
    T = max(1, min(seq_len, c.block_size) - 1)  # the model reads ids[:, :-1]
    held = int(n_pairs * 0.1)
    eval_pairs = held if held >= 2 else n_pairs
    eval_rows = 2 * min(32, eval_pairs)  # evaluate_pairs: 32 pairs, chosen and rejected, per pass
    run = training_run(c, 2 * batch_size, T, trainable, "all" if trainable == "all" else "trained",
                       eval_rows=eval_rows, loss_tensors=3, logits_kept=False)
    parts: dict = {}
    work = Work()
    for _ in range(runs):
        _add(parts, run)
        work.forward(c, 2 * n_pairs, T)  # the reference's log-probs of every pair
        work.train(c, 2 * batch_size, T, trained_part(c, trainable), n=steps)
        work.forward(c, 2 * eval_pairs, T, n=evaluations(steps, eval_interval or max(1, steps // 10)) + 1)  # + step 0
    return _estimate("dpo", parts, work, speed,
                     "use fewer steps or pairs per step, one beta, the top 2 blocks, or a smaller model")


def _rlhf(cfg, vocab_size: int, stages: Sequence[str]) -> tuple[dict, Work]:
    """(parts at the peak, work) of the toy RLHF pipeline's `stages` (sft, reward_model, ppo)."""
    from ..beyond.rlhf import SUBJECTS

    c = cfg.model_config(vocab_size)
    T = c.block_size  # SFT trains on windows of the whole context
    T_rm = 1 + max(map(len, SUBJECTS)) + 26  # BOS + subject + the longest grammatical response (26 characters)
    T_ppo = min(T, 1 + max(map(len, SUBJECTS)) + cfg.max_new_tokens)  # ... or the longest sampled one
    w = E * count_parameters(c)["total"]
    rows = cfg.prompts_per_step * cfg.samples_per_prompt
    peaks, work = [], Work()
    if "sft" in stages:
        peaks.append(training_run(c, cfg.sft_batch, T, eval_rows=EVAL_ROWS))
        work.train(c, cfg.sft_batch, T, n=cfg.sft_steps).forward(c, 32, T, n=evaluations(cfg.sft_steps,
                                                                                    max(1, cfg.sft_steps // 10)))
    if "reward_model" in stages:  # a copy of the SFT model with a scalar head: no logits, no loss buffers
        peaks.append({**training_run(c, 2 * cfg.rm_batch, T_rm, loss_tensors=0, logits_kept=False),
                      "frozen models": w})
        work.train(c, 2 * cfg.rm_batch, T_rm, n=cfg.rm_steps)
        work.forward(c, 2 * (cfg.rm_pairs // 6), T_rm, n=cfg.rm_steps // max(1, cfg.rm_steps // 6) + 3)
    if "ppo" in stages:  # the policy (a copy with a value head) trains next to the frozen SFT and reward models
        peaks.append({**training_run(c, rows, T_ppo, loss_tensors=2, eval_rows=rows),
                      "frozen models": 2 * w, "KV cache": kv_cache_bytes(c, cfg.samples_per_prompt, T, "fp32")})
        work.generate(c, cfg.samples_per_prompt, 4, cfg.max_new_tokens, n=cfg.ppo_steps * cfg.prompts_per_step)
        work.forward(c, rows, T_ppo, n=3 * cfg.ppo_steps)  # policy, reference and reward model score the rollout
        work.train(c, rows, T_ppo, n=cfg.ppo_epochs * cfg.ppo_steps)
        n_eval = cfg.eval_samples // 8  # evaluate_policy before and after: 8 samples of each prompt
        work.generate(c, 8, 4, cfg.max_new_tokens, n=2 * n_eval).forward(c, 8 * n_eval, T_ppo, n=6)
    return max(peaks, key=lambda ph: sum(ph.values())), work


def estimate_rlhf(cfg=None, vocab_size: int = RLHF_VOCAB, speed: Optional[Speed] = None) -> Estimate:
    """The whole toy RLHF pipeline (tinygpt.beyond.rlhf.run_rlhf): SFT, reward model, PPO, one after another."""
    from ..beyond.rlhf import RLHFConfig

    parts, work = _rlhf(cfg or RLHFConfig(), vocab_size, ("sft", "reward_model", "ppo"))
    return _estimate("rlhf", parts, work, speed, "use fewer SFT, reward-model or PPO steps")


def estimate_rlhf_ppo(cfg=None, vocab_size: int = RLHF_VOCAB, speed: Optional[Speed] = None) -> Estimate:
    """PPO only, from the session's SFT and reward models (the tab's "Re-run PPO only")."""
    from ..beyond.rlhf import RLHFConfig

    parts, work = _rlhf(cfg or RLHFConfig(), vocab_size, ("ppo",))
    return _estimate("rlhf_ppo", parts, work, speed, "use fewer PPO steps")


def estimate_scaling(cfg=None, vocab_size: int = 65, corpus_tokens: int = SHAKESPEARE_CHARS,
                     speed: Optional[Speed] = None, workers: int = 0) -> Estimate:
    """A scaling sweep (tinygpt.beyond.scaling.plan_sweep's runs): the memory of its largest run, the time of all of
    them (each evaluated at its first and last step on eval_windows windows).

    workers: 0 trains the runs one after another in this process (the command line); N >= 1 in N child processes
    (tinygpt.beyond.sweep_process, what the tab runs), child w taking runs w, w + N, ...: each child holds Python +
    torch and its own copy of the corpus, N runs may peak at once, and the time is a child's start plus its slowest
    share at its share of the threads (a step's fixed cost does not shrink with fewer threads; its FLOPs do)."""
    from ..beyond.scaling import SweepConfig, model_config, plan_sweep
    from ..efficiency.measure import CHILD_OVERHEAD

    cfg = cfg or SweepConfig()
    plan = plan_sweep(cfg, vocab_size)
    n_windows = windows(corpus_tokens - int(0.9 * corpus_tokens), cfg.context, max(1, cfg.eval_windows // 8) * 8)
    peaks = []
    for shape in {r["shape"] for r in plan}:
        c = model_config(shape, vocab_size, cfg.context)
        peaks.append(training_run(c, cfg.batch_size, cfg.context, eval_rows=min(EVAL_ROWS, n_windows)))
    shares = max(1, workers)
    works = [Work() for _ in range(shares)]
    for i, r in enumerate(plan):
        c = model_config(r["shape"], vocab_size, cfg.context)
        works[i % shares].train(c, cfg.batch_size, cfg.context, n=r["steps"]).forward(c, n_windows, cfg.context, n=2)
    work = Work()
    for w in works:
        work.add(w)
    at_once = min(shares, len(plan))  # runs that may peak together: one per child
    peak = {k: at_once * v for k, v in max(peaks, key=lambda ph: sum(ph.values())).items()}
    parts = {"data": 8 * corpus_tokens * shares, **peak}
    seconds = None
    if workers:
        s = speed if speed is not None else machine_speed()
        threads = max(1, torch.get_num_threads())
        share = replace(s, flops_per_s=s.flops_per_s * max(1, threads // workers) / threads)
        parts["child processes"] = workers * CHILD_OVERHEAD
        seconds = CHILD_START_S + max(w.seconds(share) for w in works)
    return _estimate("scaling", parts, work, speed, "use fewer or smaller sizes, fewer steps or smaller budgets",
                     seconds)


def estimate_gqa_uptrain(config: GPTConfig, n_kv_head: int, steps: int = 30, batch_size: int = 8,
                         context: int = 128, corpus_tokens: int = 87_410, reference_tokens: int = 200,
                         speed: Optional[Speed] = None) -> Estimate:
    """Convert to n_kv_head K/V heads (a full copy, tinygpt.efficiency.gqa.convert_kv_heads) and uptrain all its
    weights (tinygpt.efficiency.gqa.uptrain: batch 8, two evaluation batches), with the losses before and after.
    corpus_tokens: default the Python docs in GPT-2 BPE (the Shakespeare corpus for the embedded model: 338,025)."""
    c = config.replace(n_kv_head=n_kv_head)
    context = min(context, c.block_size)
    n_windows = windows(corpus_tokens - int(0.9 * corpus_tokens), context, 16)  # two evaluation batches
    parts = _add({"data": 8 * corpus_tokens},
                 training_run(c, batch_size, context, eval_rows=min(EVAL_ROWS, n_windows)))
    work = Work().train(c, batch_size, context, n=steps)
    work.forward(c, n_windows, context, n=evaluations(steps, max(1, steps // 5)) + 2)  # + MHA and converted, before
    work.forward(c, 1, min(reference_tokens, context), n=3 * -(-reference_tokens // context))  # 3 perplexities
    return _estimate("gqa_uptrain", parts, work, speed, "use fewer steps, or the embedded model")


def estimate_flash_benchmark(lengths: Sequence[int], methods: Sequence[str] = ("standard", "tiled", "sdpa"),
                             head_dim: int = 64, repeats: int = 1, speed: Optional[Speed] = None) -> Estimate:
    """The FlashAttention benchmark: one child process per (length, method), one at a time (the peak is the
    largest case: Python + torch, q, k, v and the method's own memory, as tinygpt.efficiency.measure predicts).
    Time: each child's start, then 1 + repeats passes on one thread (standard and tiled compute the full and the
    causal half of the 4·T²·d FLOPs; the tiled loop also pays TILE_S per tile)."""
    from ..efficiency.measure import CHILD_OVERHEAD, case_need_bytes

    s = speed if speed is not None else machine_speed()
    one_thread = s.flops_per_s / max(1, torch.get_num_threads())
    parts, work, seconds = {}, Work(), 0.0
    for T in lengths:
        for m in methods:
            need = case_need_bytes(m, T, head_dim)
            qkv = 3 * T * head_dim * 4
            if need > sum(parts.values()):
                parts = {"child process": CHILD_OVERHEAD, "q, k, v": qkv, "attention": need - CHILD_OVERHEAD - qkv}
            f = 4 * T * T * head_dim * (1 if m == "standard" else 0.5)
            tiles = (-(-T // 64)) ** 2 / 2 if m == "tiled" else 0
            work.flops += (1 + repeats) * f
            seconds += CHILD_START_S + (1 + repeats) * (f / one_thread + tiles * TILE_S)
    return _estimate("flash_benchmark", parts, work, s, "choose shorter sequence lengths", seconds)


def estimate_profile(config: GPTConfig, batch: int, seq_lens: Sequence[int], repeats: int = 5,
                     dtype: str = "fp32", speed: Optional[Speed] = None) -> Estimate:
    """The forward-pass profile (tinygpt.efficiency.profile.profile_forward): 2 warm-up runs and `repeats` timed
    ones per length; the peak is the longest length's forward pass (the calculator's forward_activation_bytes)."""
    parts = {"forward pass": forward_activation_bytes(config, batch, max(seq_lens), dtype)}
    work = Work()
    for T in seq_lens:
        work.flops += (2 + repeats) * batch * forward_flops(config, T)
        work.calls += 2 + repeats
    return _estimate("profile", parts, work, speed, "use a smaller batch or shorter sequence lengths")


def _last_logits_forward(c: GPTConfig, rows: int, seq: int, dtype: str) -> int:
    """A no-grad forward whose LM head runs on the last position only (generation, last_only=True)."""
    e = {"fp32": 4, "fp16": 2, "bf16": 2}[dtype]
    return forward_activation_bytes(c, rows, seq, dtype) - e * rows * (seq - 1) * c.vocab_size


def estimate_kv_cache(config: GPTConfig, prompt_tokens: int, n_new: int, dtype: str = "fp32",
                      speed: Optional[Speed] = None) -> Estimate:
    """The KV-cache timing (tinygpt.efficiency.kvcache.kv_cache_latency): n_new greedy tokens with the cache and
    without it (every step reruns the whole sequence). A cache is allocated for the whole context, but its memory
    pages count (RSS) only once written: the positions filled, prompt + n_new (measured)."""
    c = config
    n = min(prompt_tokens + n_new, c.block_size)
    parts = {"KV cache": kv_cache_bytes(c, 1, n, dtype), "forward pass": _last_logits_forward(c, 1, n, dtype)}
    p = min(prompt_tokens, c.block_size)
    work = Work().generate(c, 1, p, n_new)
    work.flops += sum(forward_flops(c, min(t, c.block_size), 1) for t in range(p, p + n_new))  # no cache
    work.calls += n_new
    return _estimate("kv_cache", parts, work, speed, "time fewer tokens")


def estimate_sampling(config: GPTConfig, num_samples: int = 3, max_new_tokens: int = 100, prompt_tokens: int = 16,
                      dtype: str = "fp32", speed: Optional[Speed] = None) -> Estimate:
    """Sampling (tinygpt.generate): num_samples rows share a KV cache (the calculator's kv_cache_bytes) after a
    prefill of the prompt. The cache is allocated for the whole context; its pages count once written, so it
    holds prompt + new positions (the whole context once the text outgrows it and the cache is rebuilt)."""
    c = config
    p = min(prompt_tokens, c.block_size)
    parts = {"KV cache": kv_cache_bytes(c, num_samples, min(p + max_new_tokens, c.block_size), dtype),
             "forward pass": _last_logits_forward(c, num_samples, p, dtype)}
    return _estimate("sample", parts, Work().generate(c, num_samples, p, max_new_tokens), speed,
                     "ask for fewer samples or fewer new tokens")


def estimate_attention(config: GPTConfig, tokens: int, speed: Optional[Speed] = None) -> Estimate:
    """The Attention tab's analysis of a prompt (tinygpt.interpret.attention.attention_with_qk and scale_removed):
    the float32 weights of every layer and head, L x H x T² (kept), q and k of every layer, and while one layer's
    scale is removed about five more T x T matrices per head (scores, scaled, masked, softmax, entropy terms)."""
    c = config
    T = min(tokens, c.block_size)
    maps = 4 * c.n_layer * c.n_head * T * T
    parts = {"attention maps": maps, "q and k": 2 * 4 * c.n_layer * c.n_head * T * c.head_dim,
             "one layer's work": 5 * 4 * c.n_head * T * T,
             "hidden states": 4 * (c.n_layer + 1) * T * c.n_embd}
    work = Work()
    work.flops = forward_flops(c, T) + 2 * c.n_layer * 2 * T * T * c.attn_dim + 20 * maps / 4
    work.calls = 3
    return _estimate("attention", parts, work, speed, "use a shorter prompt")


__all__ = ["estimate_train", "estimate_finetune", "estimate_dpo", "estimate_rlhf", "estimate_rlhf_ppo",
           "estimate_scaling", "estimate_gqa_uptrain", "estimate_flash_benchmark", "estimate_profile",
           "estimate_kv_cache", "estimate_sampling", "estimate_attention"]
