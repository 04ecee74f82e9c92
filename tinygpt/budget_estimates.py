"""One estimate per action: the peak memory above the process's baseline and the seconds of a run, before it starts.

Memory is the calculator's own formulas (tinygpt.compute: bytes per parameter, Korthikanti's activations, the KV
cache, a forward pass's tensors) plus what they leave out, each term found by measuring real runs (peak RSS of a
fresh process, tinygpt.budget_child; tests/test_budget.py and benchmarks/bench_budget.py compare again):

* Attention. The calculator counts standard attention (two T x T matrices and a 1-byte dropout mask). Without
  attention dropout, PyTorch's fused SDPA kernel trains instead: it keeps no T x T matrix, only its output and
  the log-sum-exp of each row. With attention dropout the plain path runs, and a CPU dropout keeps its mask as a
  float32 tensor (input * noise), 4 bytes per element, not 1; so do the residual dropouts (none when p = 0).
* The loss. The formula counts the fp32 logits (B, T, V). Cross-entropy adds its log-softmax, and the backward
  pass the gradient of that and of the logits: 4 such tensors at the peak. (The training loop also holds the
  previous step's logits while the next forward runs; with the gradients of the weights that is the same peak.)
* Mixture-of-Experts: each expert's gathered input rows and its gated output (2k·d per token), not in the formula.
* The evaluation pass: a no-grad forward of 16 windows (tinygpt.compute.forward_activation_bytes) and the
  log-softmax's copy of its logits, next to the weights, their gradients, the optimizer and the last logits.
* Keeping the best weights (fine-tuning): a clone of the whole state dict (the tied matrix twice, once per key),
  and for a moment two of them (the new one is built before the old one is dropped).
* Data: the corpus as int64 token ids. A child process: Python + torch before its work (CHILD_OVERHEAD).
* The allocator: glibc's malloc gives a freed block over its mmap threshold (at most 32 MiB) back to the kernel,
  but keeps smaller ones in its heaps, where the next step's tensors fit them only in part. So RSS grows past the
  live tensors after the first step, by ALLOCATOR_SHARE (measured) of what every step allocates anew in blocks
  under 32 MiB (activations, gradients, logits of a small vocabulary): +35 % to +70 % of those in the runs measured.

Time: the FLOPs of every forward and backward pass (tinygpt.compute.flops_per_token; backward = 2 x forward for
what trains) at this machine's measured speed (tinygpt.budget.machine_speed), plus a fixed cost per step.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .budget import Estimate, Speed, machine_speed
from .compute import flops_per_token, forward_activation_bytes, kv_cache_bytes, parameter_tensors
from .config import GPTConfig
from .params import count_parameters

E = 4  # every run trains in float32
ALLOCATOR_SHARE = 0.45  # RSS above the live tensors reallocated every step in heap-sized blocks (measured)
MMAP_MAX = 32 * 2 ** 20  # glibc's largest mmap threshold: bigger blocks go back to the kernel when freed
SHAKESPEARE_CHARS = 1_115_394  # Tiny Shakespeare: characters = token ids at the character level
SHAKESPEARE_GPT2_TOKENS = 338_025  # ... and GPT-2 BPE tokens
SYNTHETIC_PAIR_TOKENS = 18  # the longest synthetic DPO pair (prompt + response), GPT-2 BPE
RLHF_VOCAB = 25  # the characters of the toy RLHF grammar
CHILD_START_S = 3.0  # starting a child Python and importing torch on a busy 2-core machine (measured 1.5-3 s)
TILE_S = 60e-6  # Python overhead per tile of the tiled FlashAttention loop (bench_attention: 2.2 s, 32,896 tiles)
EVAL_ROWS = 16  # tinygpt.evaluate.token_logprobs scores 16 windows per forward pass


# ---- what one pass keeps -------------------------------------------------------------------------------
def block_activation_bytes(c: GPTConfig, batch: int, seq: int) -> int:
    """Bytes one trained block keeps for the backward pass, in fp32: the calculator's per-layer formula, with
    attention and dropout as PyTorch keeps them on a CPU (see the module docstring)."""
    from .compute import activation_bytes

    s, b, h, a, A = seq, batch, c.n_embd, c.n_head, c.attn_dim
    per = activation_bytes(c, b, s, "fp32")["per_layer"] - (2 * s * b * h + a * s * s * b)  # 1-byte masks out
    if c.attn_pdrop == 0:  # fused SDPA: its output and one log-sum-exp per row instead of the T x T matrices
        per += -2 * E * a * s * s * b + E * s * b * A + 4 * b * a * s
    else:  # plain attention: a float32 dropout mask, and q and k scaled into new tensors
        per += 4 * a * s * s * b + E * s * b * (A + c.kv_heads * c.head_dim)
    if c.resid_pdrop > 0:
        per += 4 * 2 * s * b * h  # the masks of the two residual dropouts
    if c.n_experts:
        per += E * s * b * h * 2 * c.moe_top_k + 16 * s * b * c.moe_top_k  # gathered rows, gated outputs, indices
    return per


def loss_bytes(c: GPTConfig, rows: int, seq: int, tensors: int = 4) -> int:
    """`tensors` fp32 (rows, seq, vocab) tensors: logits, log-softmax and the two gradients at the peak."""
    return tensors * 4 * rows * seq * c.vocab_size


def eval_pass_bytes(c: GPTConfig, rows: int, seq: int) -> int:
    """A no-grad forward over `rows` windows (the calculator's forward_activation_bytes) and the log-softmax's copy
    of its logits (tinygpt.evaluate.target_logprobs)."""
    return forward_activation_bytes(c, rows, seq, "fp32") + 4 * rows * seq * c.vocab_size


def state_bytes(c: GPTConfig) -> int:
    """A clone of the state dict (keep_best): every tensor once per key, so a tied matrix twice."""
    return E * (count_parameters(c)["total"] + (c.vocab_size * c.n_embd if c.tie_weights else 0))


def trained_part(c: GPTConfig, trainable: str = "all") -> dict:
    """What `trainable` ("all" or "top:N") trains: {params, layers, head (does the LM head's weight train)}."""
    p = count_parameters(c)
    if trainable == "all":
        return {"params": p["total"], "layers": c.n_layer, "head": True}
    if not str(trainable).startswith("top:"):
        raise ValueError(f"Unknown trainable spec {trainable!r} (use 'all' or 'top:N').")
    n = int(str(trainable).split(":", 1)[1])
    if not 1 <= n <= c.n_layer:
        raise ValueError(f"top:N needs 1 <= N <= {c.n_layer}.")
    ln_f = p["layer_norm"] - c.n_layer * (p["per_block"] - (p["attention"] + p["feed_forward"]) // c.n_layer)
    return {"params": n * p["per_block"] + ln_f, "layers": n, "head": False}  # the top N blocks and ln_f


# ---- FLOPs ------------------------------------------------------------------------------------------------
def forward_flops(c: GPTConfig, seq: int, logits_rows: Optional[int] = None) -> float:
    """FLOPs of one forward pass over `seq` tokens (Kaplan: 2N + 2·n_layer·n_ctx·A per token); the LM head runs
    on `logits_rows` positions (default all)."""
    f = flops_per_token(c, seq)
    head = 2 * c.vocab_size * c.n_embd
    rows = seq if logits_rows is None else logits_rows
    return seq * (f["per_token_inference"] - head) + rows * head


def train_flops(c: GPTConfig, seq: int, trained: dict) -> float:
    """FLOPs of one training pass over `seq` tokens: the forward, and a backward (2x the forward) through the
    trained top blocks and the LM head (its input gradient always; its weight gradient when it trains)."""
    fwd = forward_flops(c, seq)
    head = 2 * c.vocab_size * c.n_embd * seq
    blocks = (fwd - head) * trained["layers"] / c.n_layer
    return fwd + 2 * blocks + head * (2 if trained["head"] else 1)


def generate_flops(c: GPTConfig, rows: int, prompt: int, new: int) -> float:
    """FLOPs of tinygpt.generate with the KV cache: a prefill of the prompt, then one token per step attending to
    all before it; past the context every step reruns the last block_size tokens (the cache is rebuilt)."""
    block = c.block_size
    f = flops_per_token(c, 1)
    per_token = f["per_token_inference"] - f["attention_forward"]  # without the attention term (added per length)
    att = f["attention_forward"]  # 2·n_layer·A per position attended to
    p = min(prompt, block)
    total = forward_flops(c, p, 1)
    inside = max(0, min(new, block - p))  # steps whose sequence still fits the context
    total += inside * per_token + att * (inside * p + inside * (inside + 1) / 2)
    total += (new - inside) * forward_flops(c, block, 1)
    return rows * total


def _windows(n_tokens: int, context: int, max_windows: Optional[int] = None) -> int:
    """How many windows tinygpt.evaluate scores in n_tokens held-out tokens (at most max_windows full ones)."""
    from .evaluate import window_starts

    return len(window_starts(max(n_tokens, 2), context, max_windows))


def _evals(steps: int, interval: int) -> int:
    """Evaluation steps of tinygpt.train: the first, every `interval`-th, and the last."""
    return steps // interval + (interval > 1) + (steps % interval != 0)


# ---- a training run ---------------------------------------------------------------------------------------
def _heap_share(tensor_bytes: float, total: float) -> float:
    """`total` if its tensors (each about `tensor_bytes`) are small enough to live in malloc's heap, else 0."""
    return total if tensor_bytes < MMAP_MAX else 0


def _training_run(c: GPTConfig, batch: int, seq: int, trainable: str = "all", copies: str = "all",
                  eval_rows: int = EVAL_ROWS, keep_best: bool = False, loss_tensors: int = 4,
                  logits_kept: bool = True) -> dict:
    """Parts of one training run at its peak: weights (`copies`: "all" = the whole model, "trained" = clones of
    the trained tensors only), gradients, optimizer, the largest of its phases (a step: activations and loss
    buffers; an evaluation: the last logits and the evaluation pass; with keep_best, the clone of the best weights,
    two at once), and the allocator's share of what is allocated anew every step in heap-sized blocks."""
    t = trained_part(c, trainable)
    p_total = count_parameters(c)["total"]
    fixed = {"weights": E * (t["params"] if copies == "trained" else p_total),
             "gradients": E * t["params"],
             "optimizer": 8 * t["params"] + 4 * parameter_tensors(c)}  # AdamW's m, v and step counters
    embedded = 2 * E * seq * batch * c.n_embd if trainable == "all" else E * seq * batch * c.n_embd
    if trainable == "all" and c.embd_pdrop > 0:
        embedded += 4 * seq * batch * c.n_embd  # the embedding dropout's float32 mask
    logits = 4 * batch * seq * c.vocab_size  # one (B, T, V) float32 tensor
    acts = t["layers"] * block_activation_bytes(c, batch, seq) + embedded
    widest = E * seq * batch * max(c.ffn_dim * (c.moe_top_k if c.n_experts else 1), c.attn_dim + 2 * c.kv_heads
                                   * c.head_dim, c.n_head * seq if c.attn_pdrop else 0)  # a block's largest tensor
    last = logits if logits_kept else 0
    ev_logits = 4 * eval_rows * seq * c.vocab_size
    ev = eval_pass_bytes(c, eval_rows, seq)
    phases = [({"activations": acts, "loss buffers": loss_tensors * logits},
               _heap_share(widest, acts) + _heap_share(logits, loss_tensors * logits)),
              ({"last logits": last, "evaluation": ev},
               _heap_share(logits, last) + ev - 2 * ev_logits + _heap_share(ev_logits, 2 * ev_logits))]
    if keep_best:
        phases.append(({"last logits": last, "best weights": 2 * state_bytes(c)}, _heap_share(logits, last)))
    peak, heap = max(phases, key=lambda ph: sum(ph[0].values()) + ALLOCATOR_SHARE * ph[1])
    heap += _heap_share(E * c.vocab_size * c.n_embd, fixed["gradients"])  # gradients: allocated every step
    return {**fixed, **peak, "allocator": ALLOCATOR_SHARE * heap}


def _add(total: dict, parts: dict) -> dict:
    for k, v in parts.items():
        total[k] = total.get(k, 0) + int(v)
    return total


class _Work:
    """A run's work, counted as the time model (tinygpt.budget.Speed) reads it."""

    def __init__(self):
        self.flops = self.steps = self.calls = self.loss_logits = self.scored_logits = 0.0

    def train(self, c: GPTConfig, rows: int, seq: int, trained: Optional[dict] = None, n: float = 1) -> "_Work":
        """n training steps over rows x seq tokens (the loss over every position's logits)."""
        self.flops += n * rows * train_flops(c, seq, trained or trained_part(c))
        self.steps += n
        self.loss_logits += n * rows * seq * c.vocab_size
        return self

    def forward(self, c: GPTConfig, rows: int, seq: int, n: float = 1) -> "_Work":
        """n no-grad passes over rows windows of seq tokens, scored (log-softmax and argmax of every logit),
        EVAL_ROWS windows per call."""
        self.flops += n * rows * forward_flops(c, seq)
        self.calls += n * -(-rows // EVAL_ROWS)
        self.scored_logits += n * rows * seq * c.vocab_size
        return self

    def generate(self, c: GPTConfig, rows: int, prompt: int, new: int, n: float = 1) -> "_Work":
        """n calls of tinygpt.generate: one forward call and one draw over the vocabulary per new token."""
        self.flops += n * generate_flops(c, rows, prompt, new)
        self.calls += n * new
        self.scored_logits += n * rows * new * c.vocab_size
        return self

    def seconds(self, speed: Optional[Speed]) -> float:
        s = speed if speed is not None else machine_speed()
        return s.seconds(self.flops, self.steps, self.calls, self.loss_logits, self.scored_logits)


def _estimate(action: str, parts: dict, work: _Work, speed: Optional[Speed], advice: str,
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
    windows = _windows(corpus_tokens - int(0.9 * corpus_tokens), context, eval_batches * 8)  # the last 10 %
    parts: dict = {"data": 8 * corpus_tokens}
    work = _Work()
    for c in configs:
        _add(parts, _training_run(c, batch_size, context, eval_rows=min(EVAL_ROWS, windows)))
        evals = _evals(steps, interval)
        work.train(c, batch_size, context, n=steps).forward(c, windows, context, n=evals)
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
    windows = _windows(val, context, 32)  # ten evaluations of 4 x 8 windows at most
    run = _training_run(c, batch_size, context, trainable, copies, eval_rows=min(EVAL_ROWS, windows),
                        keep_best=keep_best)
    rows = min(EVAL_ROWS, _windows(text_tokens, context))
    after = {"weights": run["weights"], "evaluation": eval_pass_bytes(c, rows, context),
             "token scores": 2 * 21 * text_tokens}  # log-prob, hit, target, position per token; per window + joined
    after["allocator"] = ALLOCATOR_SHARE * _heap_share(4 * rows * context * c.vocab_size, after["evaluation"])
    parts = {"data": 8 * text_tokens, **max((run, after), key=lambda ph: sum(ph.values()))}
    work = _Work().train(c, batch_size, context, trained_part(c, trainable), n=steps)
    work.forward(c, windows, context, n=_evals(steps, max(1, steps // 10)))
    work.forward(c, _windows(val, context), context, n=2)  # held-out loss before and after
    work.forward(c, _windows(text_tokens, context), context, n=2)  # every token under both models
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
    run = _training_run(c, 2 * batch_size, T, trainable, "all" if trainable == "all" else "trained",
                        eval_rows=eval_rows, loss_tensors=3, logits_kept=False)
    parts: dict = {}
    work = _Work()
    for _ in range(runs):
        _add(parts, run)
        work.forward(c, 2 * n_pairs, T)  # the reference's log-probs of every pair
        work.train(c, 2 * batch_size, T, trained_part(c, trainable), n=steps)
        work.forward(c, 2 * eval_pairs, T, n=_evals(steps, eval_interval or max(1, steps // 10)) + 1)  # + step 0
    return _estimate("dpo", parts, work, speed,
                     "use fewer steps or pairs per step, one beta, the top 2 blocks, or a smaller model")


def _rlhf(cfg, vocab_size: int, stages: Sequence[str]) -> tuple[dict, _Work]:
    """(parts at the peak, work) of the toy RLHF pipeline's `stages` (sft, reward_model, ppo)."""
    from .beyond.rlhf import SUBJECTS

    c = cfg.model_config(vocab_size)
    T = c.block_size  # SFT trains on windows of the whole context
    T_rm = 1 + max(map(len, SUBJECTS)) + 26  # BOS + subject + the longest grammatical response (26 characters)
    T_ppo = min(T, 1 + max(map(len, SUBJECTS)) + cfg.max_new_tokens)  # ... or the longest sampled one
    w = E * count_parameters(c)["total"]
    rows = cfg.prompts_per_step * cfg.samples_per_prompt
    peaks, work = [], _Work()
    if "sft" in stages:
        peaks.append(_training_run(c, cfg.sft_batch, T, eval_rows=EVAL_ROWS))
        work.train(c, cfg.sft_batch, T, n=cfg.sft_steps).forward(c, 32, T, n=_evals(cfg.sft_steps,
                                                                                    max(1, cfg.sft_steps // 10)))
    if "reward_model" in stages:  # a copy of the SFT model with a scalar head: no logits, no loss buffers
        peaks.append({**_training_run(c, 2 * cfg.rm_batch, T_rm, loss_tensors=0, logits_kept=False),
                      "frozen models": w})
        work.train(c, 2 * cfg.rm_batch, T_rm, n=cfg.rm_steps)
        work.forward(c, 2 * (cfg.rm_pairs // 6), T_rm, n=cfg.rm_steps // max(1, cfg.rm_steps // 6) + 3)
    if "ppo" in stages:  # the policy (a copy with a value head) trains next to the frozen SFT and reward models
        peaks.append({**_training_run(c, rows, T_ppo, loss_tensors=2, eval_rows=rows),
                      "frozen models": 2 * w, "KV cache": kv_cache_bytes(c, cfg.samples_per_prompt, T, "fp32")})
        work.generate(c, cfg.samples_per_prompt, 4, cfg.max_new_tokens, n=cfg.ppo_steps * cfg.prompts_per_step)
        work.forward(c, rows, T_ppo, n=3 * cfg.ppo_steps)  # policy, reference and reward model score the rollout
        work.train(c, rows, T_ppo, n=cfg.ppo_epochs * cfg.ppo_steps)
        n_eval = cfg.eval_samples // 8  # evaluate_policy before and after: 8 samples of each prompt
        work.generate(c, 8, 4, cfg.max_new_tokens, n=2 * n_eval).forward(c, 8 * n_eval, T_ppo, n=6)
    return max(peaks, key=lambda ph: sum(ph.values())), work


def estimate_rlhf(cfg=None, vocab_size: int = RLHF_VOCAB, speed: Optional[Speed] = None) -> Estimate:
    """The whole toy RLHF pipeline (tinygpt.beyond.rlhf.run_rlhf): SFT, reward model, PPO, one after another."""
    from .beyond.rlhf import RLHFConfig

    parts, work = _rlhf(cfg or RLHFConfig(), vocab_size, ("sft", "reward_model", "ppo"))
    return _estimate("rlhf", parts, work, speed, "use fewer SFT, reward-model or PPO steps")


def estimate_rlhf_ppo(cfg=None, vocab_size: int = RLHF_VOCAB, speed: Optional[Speed] = None) -> Estimate:
    """PPO only, from the session's SFT and reward models (the tab's "Re-run PPO only")."""
    from .beyond.rlhf import RLHFConfig

    parts, work = _rlhf(cfg or RLHFConfig(), vocab_size, ("ppo",))
    return _estimate("rlhf_ppo", parts, work, speed, "use fewer PPO steps")


def estimate_scaling(cfg=None, vocab_size: int = 65, corpus_tokens: int = SHAKESPEARE_CHARS,
                     speed: Optional[Speed] = None) -> Estimate:
    """A scaling sweep (tinygpt.beyond.scaling.plan_sweep's runs, one after another): the memory of its largest
    run, the time of all of them (each evaluated at its first and last step on eval_windows windows)."""
    from .beyond.scaling import SweepConfig, model_config, plan_sweep

    cfg = cfg or SweepConfig()
    plan = plan_sweep(cfg, vocab_size)
    windows = _windows(corpus_tokens - int(0.9 * corpus_tokens), cfg.context, max(1, cfg.eval_windows // 8) * 8)
    peaks, work = [], _Work()
    for shape in {r["shape"] for r in plan}:
        c = model_config(shape, vocab_size, cfg.context)
        peaks.append(_training_run(c, cfg.batch_size, cfg.context, eval_rows=min(EVAL_ROWS, windows)))
    for r in plan:
        c = model_config(r["shape"], vocab_size, cfg.context)
        work.train(c, cfg.batch_size, cfg.context, n=r["steps"]).forward(c, windows, cfg.context, n=2)
    parts = {"data": 8 * corpus_tokens, **max(peaks, key=lambda ph: sum(ph.values()))}
    return _estimate("scaling", parts, work, speed, "use fewer or smaller sizes, fewer steps or smaller budgets")


def estimate_gqa_uptrain(config: GPTConfig, n_kv_head: int, steps: int = 30, batch_size: int = 8,
                         context: int = 128, corpus_tokens: int = 87_410, reference_tokens: int = 200,
                         speed: Optional[Speed] = None) -> Estimate:
    """Convert to n_kv_head K/V heads (a full copy, tinygpt.efficiency.gqa.convert_kv_heads) and uptrain all its
    weights (tinygpt.efficiency.gqa.uptrain: batch 8, two evaluation batches), with the losses before and after.
    corpus_tokens: default the Python docs in GPT-2 BPE (the Shakespeare corpus for the embedded model: 338,025)."""
    c = config.replace(n_kv_head=n_kv_head)
    context = min(context, c.block_size)
    windows = _windows(corpus_tokens - int(0.9 * corpus_tokens), context, 16)  # two evaluation batches
    parts = _add({"data": 8 * corpus_tokens}, _training_run(c, batch_size, context, eval_rows=min(EVAL_ROWS, windows)))
    work = _Work().train(c, batch_size, context, n=steps)
    work.forward(c, windows, context, n=_evals(steps, max(1, steps // 5)) + 2)  # + MHA and converted, before
    work.forward(c, 1, min(reference_tokens, context), n=3 * -(-reference_tokens // context))  # 3 perplexities
    return _estimate("gqa_uptrain", parts, work, speed, "use fewer steps, or the embedded model")


def estimate_flash_benchmark(lengths: Sequence[int], methods: Sequence[str] = ("standard", "tiled", "sdpa"),
                             head_dim: int = 64, repeats: int = 1, speed: Optional[Speed] = None) -> Estimate:
    """The FlashAttention benchmark: one child process per (length, method), one at a time (the peak is the
    largest case: Python + torch, q, k, v and the method's own memory, as tinygpt.efficiency.measure predicts).
    Time: each child's start, then 1 + repeats passes on one thread (standard and tiled compute the full and the
    causal half of the 4·T²·d FLOPs; the tiled loop also pays TILE_S per tile)."""
    from .efficiency.measure import CHILD_OVERHEAD, case_need_bytes

    s = speed if speed is not None else machine_speed()
    one_thread = s.flops_per_s / max(1, torch.get_num_threads())
    parts, work, seconds = {}, _Work(), 0.0
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
    work = _Work()
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
    """The KV-cache timing (tinygpt.efficiency.kvcache.kv_cache_latency): n_new greedy tokens with the cache (one
    allocated for the whole context) and without it (every step reruns the whole sequence)."""
    c = config
    n = min(prompt_tokens + n_new, c.block_size)
    parts = {"KV cache": kv_cache_bytes(c, 1, c.block_size, dtype),
             "forward pass": _last_logits_forward(c, 1, n, dtype)}
    p = min(prompt_tokens, c.block_size)
    work = _Work().generate(c, 1, p, n_new)
    work.flops += sum(forward_flops(c, min(t, c.block_size), 1) for t in range(p, p + n_new))  # no cache
    work.calls += n_new
    return _estimate("kv_cache", parts, work, speed, "time fewer tokens")


def estimate_sampling(config: GPTConfig, num_samples: int = 3, max_new_tokens: int = 100, prompt_tokens: int = 16,
                      dtype: str = "fp32", speed: Optional[Speed] = None) -> Estimate:
    """Sampling (tinygpt.generate): num_samples rows share a KV cache for the whole context (calculator's
    kv_cache_bytes) after a prefill of the prompt."""
    c = config
    p = min(prompt_tokens, c.block_size)
    parts = {"KV cache": kv_cache_bytes(c, num_samples, c.block_size, dtype),
             "forward pass": _last_logits_forward(c, num_samples, p, dtype)}
    return _estimate("sample", parts, _Work().generate(c, num_samples, p, max_new_tokens), speed,
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
    work = _Work()
    work.flops = forward_flops(c, T) + 2 * c.n_layer * 2 * T * T * c.attn_dim + 20 * maps / 4
    work.calls = 3
    return _estimate("attention", parts, work, speed, "use a shorter prompt")


__all__ = ["estimate_train", "estimate_finetune", "estimate_dpo", "estimate_rlhf", "estimate_rlhf_ppo",
           "estimate_scaling", "estimate_gqa_uptrain", "estimate_flash_benchmark", "estimate_profile",
           "estimate_kv_cache", "estimate_sampling", "estimate_attention", "block_activation_bytes", "loss_bytes",
           "eval_pass_bytes", "state_bytes", "trained_part", "forward_flops", "train_flops", "generate_flops"]
