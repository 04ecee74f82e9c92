"""Direct Preference Optimization (Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is
Secretly a Reward Model"): learn from pairs (prompt, chosen, rejected) without a reward model or RL.

The policy starts as a copy of the model; the reference is the start model itself, frozen. For every pair,

    implicit reward r(x, y) = beta * (log pi(y | x) - log pi_ref(y | x))      (log-probs summed over y's tokens)
    loss = -log sigmoid(r(x, chosen) - r(x, rejected))                         (Bradley-Terry on implicit rewards)

At the start pi = pi_ref, both rewards are 0 and the loss is ln 2 = 0.693. The loss falls as the policy raises the
chosen response's probability *relative to the reference* more than the rejected one's; beta sets how far the
policy may drift: a small beta needs a big change in log-probabilities for the same loss, a big beta a small one.

Pairs come from a JSONL file (one {"prompt", "chosen", "rejected"} object per line) or `synthetic_pairs`, whose
rule is visible in the text (see SYNTHETIC_RULE).
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from ..defaults import DPO
from ..evaluate import masked_logprobs
from ..finetune import trainable_copy
from ..hf_config import MAX_JSON_DEPTH, json_too_deep
from ..sampling import encode_prompt
from ..train import TrainConfig, lr_at, make_optimizer, trainable_parameters


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float = 0.1):
    """The DPO loss of a batch of pairs -> (loss, chosen_rewards, rejected_rewards).

    Inputs (B,): log-probabilities of each response given its prompt, summed over the response's tokens, under
    the policy and the frozen reference. loss = mean over pairs of -logsigmoid(beta * ((pc - rc) - (pr - rr)));
    rewards = beta * (policy - reference) per pair (B,), detached: they are what we plot, not what we train."""
    logits = beta * ((policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps))
    loss = -F.logsigmoid(logits).mean()
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps).detach()
    return loss, chosen_rewards, rejected_rewards


def pad_responses(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], block_size: int,
                  pad_to: Optional[int] = None):
    """Rows prompt + response, padded at the end -> ids (B, T), mask (B, T) True on the response tokens.

    A row longer than the context keeps its last block_size tokens (the start of the prompt is cut, as
    generation does); a response that alone does not fit is refused. pad_to: pad every batch to this length
    (T), so a pair's score does not depend on which other pairs share its batch (not even in the last bit)."""
    rows, masks = [], []
    for p, r in zip(prompts, responses):
        p, r = list(p), list(r)
        if not p:
            raise ValueError("Each prompt needs at least one token (an empty prompt is the end-of-text token).")
        if not r:
            raise ValueError("Each response needs at least one token.")
        if len(r) >= block_size:
            raise ValueError(f"A response has {len(r)} tokens; the model's context is {block_size}: it cannot fit.")
        row = (p + r)[-block_size:]
        rows.append(row)
        masks.append([False] * (len(row) - len(r)) + [True] * len(r))
    T = max([len(r) for r in rows] + [min(pad_to or 0, block_size)])
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.bool)
    for i, (row, m) in enumerate(zip(rows, masks)):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(m)] = torch.tensor(m)
    return ids, mask


def is_batch(ids) -> bool:
    """A list of sequences (or a 2-D tensor), as opposed to one sequence of ids."""
    if isinstance(ids, torch.Tensor):
        return ids.dim() == 2
    first = ids[0] if len(ids) else None
    return isinstance(first, (list, tuple)) or (isinstance(first, torch.Tensor) and first.dim() == 1)


def sequence_logps(model, prompt_ids, response_ids, pad_to: Optional[int] = None) -> torch.Tensor:
    """log pi(response | prompt), summed over the response's tokens (nats), with gradients.

    prompt_ids, response_ids: one sequence each (lists of ids) -> a 0-d tensor, or lists of sequences (a batch,
    padded here, to pad_to tokens if given) -> (B,). Built on tinygpt.evaluate.masked_logprobs, the same
    log-probabilities as every loss."""
    single = not is_batch(prompt_ids)
    prompts = [prompt_ids] if single else prompt_ids
    responses = [response_ids] if single else response_ids
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses.")
    prompts = [[int(t) for t in p] for p in prompts]
    responses = [[int(t) for t in r] for r in responses]
    ids, mask = pad_responses(prompts, responses, model.config.block_size, pad_to)
    logps = masked_logprobs(model, ids, mask).sum(-1)  # (B,)
    return logps[0] if single else logps


# ---- preference pairs -------------------------------------------------------------------------------------
@dataclass
class Pair:
    prompt: str
    chosen: str
    rejected: str


class PairsError(ValueError):
    """A pairs file cannot be used; the message names the line."""


def parse_pairs(text: str, source: str = "the pairs file") -> list[Pair]:
    """JSONL text -> pairs. Blank lines are skipped; every problem names its line: bad JSON, not an object,
    a missing key, a value that is not text, an empty chosen/rejected, chosen equal to rejected.
    The prompt may be empty (the model then starts from end-of-text, the start of a document)."""
    pairs = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if json_too_deep(line):
            raise PairsError(f"Line {n} of {source} nests arrays or objects more than {MAX_JSON_DEPTH} levels deep; "
                             'a pair is one flat object {"prompt", "chosen", "rejected"}.')
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise PairsError(f"Line {n} of {source} is not valid JSON ({e.msg} at column {e.colno}).") from None
        except (RecursionError, ValueError):  # a number too long for Python's int()
            raise PairsError(f"Line {n} of {source} holds a number thousands of digits long.") from None
        if not isinstance(obj, dict):
            raise PairsError(f'Line {n} of {source} must be a JSON object like {{"prompt": ..., "chosen": ..., '
                             f'"rejected": ...}}.')
        missing = [k for k in ("prompt", "chosen", "rejected") if k not in obj]
        if missing:
            raise PairsError(f"Line {n} of {source} has no {' and no '.join(repr(k) for k in missing)}.")
        for k in ("prompt", "chosen", "rejected"):
            if not isinstance(obj[k], str):
                raise PairsError(f"Line {n} of {source}: {k!r} must be text (got {type(obj[k]).__name__}).")
        for k in ("chosen", "rejected"):
            if not obj[k].strip():
                raise PairsError(f"Line {n} of {source}: {k!r} is empty.")
        if obj["chosen"] == obj["rejected"]:
            raise PairsError(f"Line {n} of {source}: 'chosen' and 'rejected' are the same text.")
        pairs.append(Pair(obj["prompt"], obj["chosen"], obj["rejected"]))
    if not pairs:
        raise PairsError(f"{source[0].upper()}{source[1:]} has no pairs: write one JSON object per line.")
    return pairs


MAX_PAIRS_BYTES = 4_000_000  # a pairs file: ~100-400 bytes a pair
MAX_PAIRS_LINES = 10_000  # pairs read from a file (every pair is tokenized before training starts)


def read_pairs(path: str, max_bytes: int = MAX_PAIRS_BYTES, max_lines: int = MAX_PAIRS_LINES) -> list[Pair]:
    """A UTF-8 JSONL file of preference pairs (see parse_pairs), refused from its size before it is read and from
    its line count before it is parsed. Messages name the file's own name, never the server's path to it."""
    path = os.fspath(path)
    name = os.path.basename(path) or "the pairs file"
    try:
        size = os.path.getsize(path)
    except OSError:
        raise PairsError(f"{name} could not be read: upload it again.") from None
    if size > max_bytes:
        raise PairsError(f"{name} is {size:,} bytes; a pairs file may be at most {max_bytes:,} bytes "
                         f"({max_lines:,} lines).")
    with open(path, "rb") as f:
        raw = f.read(max_bytes + 1)
    lines = raw.count(b"\n") + (not raw.endswith(b"\n") and bool(raw))
    if lines > max_lines:
        raise PairsError(f"{name} has {lines:,} lines; a pairs file may have at most {max_lines:,} (one pair per "
                         "line).")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PairsError(f"{name} is not UTF-8 text ({e.reason} at byte {e.start}).") from None
    return parse_pairs(text, source=name)


# The synthetic preference data (exercise 7): the rule is visible in every pair.
SYNTHETIC_RULE = ("Each prompt is a speaker's line that stops before an adjective (\"ROMEO:\\nThou art most\"). "
                  "Both responses are the same words except one adjective: the chosen one says something kind "
                  "(gentle, noble, sweet, ...), the rejected one an insult (vile, false, foul, ...). DPO should "
                  "teach the model to praise: the kind word becomes more likely, the insult less.")
KIND = ["gentle", "noble", "sweet", "fair", "kind", "honest", "brave", "good", "loving", "true", "wise", "merry"]
UNKIND = ["vile", "false", "foul", "base", "cruel", "wicked", "cursed", "wretched", "bloody", "proud", "vain",
          "treacherous"]
SPEAKERS = ["ROMEO", "JULIET", "KING HENRY", "QUEEN MARGARET", "GLOUCESTER", "MENENIUS", "CLARENCE", "LUCIO",
            "PETRUCHIO", "KATHARINA", "ISABELLA", "CORIOLANUS", "BUCKINGHAM", "DUKE VINCENTIO", "NURSE", "TRANIO"]
OPENINGS = ["Thou art most", "My lord, you are most", "She is a most", "He was ever", "Your brother is",
            "O, this is a", "I know thee for a", "Here comes the", "Thy father was a", "You have a",
            "What a", "He hath a"]
ENDINGS = [" man.", " heart.", " friend.", " lord.", " soul.", " gentleman.", " tongue.", " deed.", " face.",
           " word."]


def synthetic_pairs(n: int, seed: int = 0) -> list[Pair]:
    """n pairs following SYNTHETIC_RULE: same speaker, opening and ending, a kind vs an unkind adjective."""
    if n < 1:
        raise ValueError(f"Ask for at least one synthetic pair (got {n}).")
    rng = random.Random(seed)
    pairs = []
    for _ in range(int(n)):
        prompt = f"{rng.choice(SPEAKERS)}:\n{rng.choice(OPENINGS)}"
        end = rng.choice(ENDINGS)
        pairs.append(Pair(prompt, f" {rng.choice(KIND)}{end}", f" {rng.choice(UNKIND)}{end}"))
    return pairs


# ---- training ---------------------------------------------------------------------------------------------
@dataclass
class DPOConfig:
    """A DPO run's settings; the ones a user sets default to tinygpt.defaults.DPO."""
    steps: int = DPO["steps"]  # optimizer steps
    batch_size: int = DPO["batch_size"]  # pairs per step
    lr: float = DPO["lr"]  # peak learning rate (AdamW; warm-up then cosine, as tinygpt.train)
    beta: float = DPO["beta"]  # how far the policy may move from the reference (see the module docstring)
    warmup: int = 10
    eval_interval: int = 10  # evaluate on the held-out pairs every this many steps (and at 0 and the end)
    val_fraction: float = 0.1  # held out when there are at least MIN_HELD_OUT / val_fraction pairs
    seed: int = DPO["seed"]
    trainable: str = DPO["trainable"]  # "all" or "top:N" (as fine-tuning)
    weight_decay: float = 0.0  # DPO usually trains without decay: the reference already anchors the policy


MIN_HELD_OUT = 2


@dataclass
class EncodedPairs:
    prompts: list
    chosen: list
    rejected: list
    ref_chosen: torch.Tensor  # (N,) reference log-probs, computed once: the reference never changes
    ref_rejected: torch.Tensor
    length: int  # every batch is padded to this many tokens (the longest pair), so scores are batch-independent

    def __len__(self):
        return len(self.prompts)

    def subset(self, idx):
        return EncodedPairs([self.prompts[i] for i in idx], [self.chosen[i] for i in idx],
                            [self.rejected[i] for i in idx], self.ref_chosen[idx], self.ref_rejected[idx],
                            self.length)


def encode_pairs(reference, tok, pairs: Sequence[Pair], batch_size: int = 32) -> EncodedPairs:
    """Token ids of every pair (prompt and responses tokenized separately) and the reference's log-probs."""
    block = reference.config.block_size
    prompts = [encode_prompt(tok, p.prompt) for p in pairs]
    chosen = [tok.encode(p.chosen) for p in pairs]
    rejected = [tok.encode(p.rejected) for p in pairs]
    for i, (c, r) in enumerate(zip(chosen, rejected)):
        if max(len(c), len(r)) >= block:
            raise ValueError(f"Pair {i + 1}: a response has {max(len(c), len(r))} tokens, longer than the model's "
                             f"context ({block}).")
    length = min(block, max(len(p) + max(len(c), len(r)) for p, c, r in zip(prompts, chosen, rejected)))
    ref_c, ref_r = [], []
    was_training = reference.training
    reference.eval()
    with torch.no_grad():
        for b in range(0, len(pairs), batch_size):
            sl = slice(b, b + batch_size)
            ref_c.append(sequence_logps(reference, prompts[sl], chosen[sl], length))
            ref_r.append(sequence_logps(reference, prompts[sl], rejected[sl], length))
    reference.train(was_training)
    return EncodedPairs(prompts, chosen, rejected, torch.cat(ref_c), torch.cat(ref_r), length)


def pair_logps(policy, enc: EncodedPairs):
    """Policy log-probs of the chosen and rejected responses, (B,) each, in one forward pass of 2B rows."""
    logps = sequence_logps(policy, enc.prompts + enc.prompts, enc.chosen + enc.rejected, enc.length)
    return logps[:len(enc)], logps[len(enc):]


def pair_metrics(loss, chosen_rewards, rejected_rewards) -> dict:
    """The numbers DPO papers plot: loss, mean implicit rewards, margin, and how often chosen > rejected."""
    return {"loss": float(loss), "chosen_reward": float(chosen_rewards.mean()),
            "rejected_reward": float(rejected_rewards.mean()),
            "reward_margin": float((chosen_rewards - rejected_rewards).mean()),
            "reward_accuracy": float((chosen_rewards > rejected_rewards).float().mean())}


@torch.no_grad()
def evaluate_pairs(policy, enc: EncodedPairs, beta: float, batch_size: int = 32) -> dict:
    """DPO loss, implicit rewards, margin and accuracy of the policy on a set of pairs (no gradients)."""
    pc, pr = [], []
    for b in range(0, len(enc), batch_size):
        c, r = pair_logps(policy, enc.subset(list(range(b, min(b + batch_size, len(enc))))))
        pc.append(c)
        pr.append(r)
    loss, cr, rr = dpo_loss(torch.cat(pc), torch.cat(pr), enc.ref_chosen, enc.ref_rejected, beta)
    return pair_metrics(loss, cr, rr)


def split_pairs(n: int, val_fraction: float, seed: int):
    """(train indices, held-out indices). Small sets (< MIN_HELD_OUT / val_fraction pairs) hold nothing out:
    then the reported numbers are on the training pairs."""
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    n_val = int(n * val_fraction)
    if n_val < MIN_HELD_OUT or n - n_val < 1:
        return sorted(idx), []
    return sorted(idx[n_val:]), sorted(idx[:n_val])


def train_dpo(base, tok, pairs: Sequence[Pair], cfg: DPOConfig = DPOConfig(),
              callback: Optional[Callable[[dict], None]] = None,
              should_stop: Optional[Callable[[], bool]] = None) -> dict:
    """Train a copy of `base` with DPO on `pairs`; `base` (the reference) is only read, never changed.

    Every step the callback gets {step, steps_total, loss, chosen_reward, rejected_reward, reward_margin,
    reward_accuracy (this batch), lr, elapsed, val (None, or the held-out metrics on evaluation steps)}; step 0 is
    the start (loss ln 2). Returns {steps, loss, reward_accuracy, reward_margin, seconds, held_out (number of
    held-out pairs; 0 = the numbers are on the training pairs), start (metrics at step 0), stopped, history,
    policy}. Dropout is off throughout (as TRL's DPO trainer): both models must score a response the same way."""
    if cfg.beta <= 0:
        raise ValueError(f"beta must be above 0 (got {cfg.beta}).")
    if cfg.steps < 0 or cfg.batch_size < 1:
        raise ValueError("Steps must be >= 0 and the batch size >= 1.")
    t0 = time.perf_counter()
    enc = encode_pairs(base, tok, pairs)
    tr_idx, val_idx = split_pairs(len(enc), cfg.val_fraction, cfg.seed)
    train_set = enc.subset(tr_idx)
    eval_set = enc.subset(val_idx) if val_idx else train_set
    policy = trainable_copy(base, cfg.trainable)
    params = trainable_parameters(policy, cfg.trainable)
    for p in params:
        p.requires_grad_(True)
    sched = TrainConfig(steps=max(cfg.steps, 1), lr=cfg.lr, warmup=min(cfg.warmup, max(cfg.steps, 1)),
                        weight_decay=cfg.weight_decay)
    opt = make_optimizer(params, sched)
    gen = torch.Generator().manual_seed(cfg.seed)
    policy.eval()  # no dropout: at step 0 the policy must score exactly as the reference (loss = ln 2)
    history = []

    def report(ev):
        history.append(ev)
        if callback is not None:
            callback(dict(ev))

    start = evaluate_pairs(policy, eval_set, cfg.beta)
    report({"step": 0, "steps_total": cfg.steps, **start, "lr": 0.0, "elapsed": time.perf_counter() - t0,
            "val": start})
    step, stopped, last_val = 0, False, start
    for step in range(1, cfg.steps + 1):
        if should_stop is not None and should_stop():
            stopped, step = True, step - 1
            break
        lr = lr_at(step - 1, sched)
        for g in opt.param_groups:
            g["lr"] = lr
        pick = torch.randint(0, len(train_set), (min(cfg.batch_size, len(train_set)),), generator=gen).tolist()
        batch = train_set.subset(pick)
        pc, pr = pair_logps(policy, batch)
        loss, cr, rr = dpo_loss(pc, pr, batch.ref_chosen, batch.ref_rejected, cfg.beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        val = None
        if step % cfg.eval_interval == 0 or step == cfg.steps:
            val = last_val = evaluate_pairs(policy, eval_set, cfg.beta)
        report({"step": step, "steps_total": cfg.steps, **pair_metrics(loss.item(), cr, rr), "lr": lr,
                "elapsed": time.perf_counter() - t0, "val": val})
    if history[-1]["val"] is None:  # stopped between evaluations
        last_val = evaluate_pairs(policy, eval_set, cfg.beta)
        history[-1]["val"] = last_val
    for p in policy.parameters():
        p.requires_grad_(False)
    return {"steps": step, "loss": last_val["loss"], "reward_accuracy": last_val["reward_accuracy"],
            "reward_margin": last_val["reward_margin"], "seconds": time.perf_counter() - t0,
            "held_out": len(val_idx), "train_pairs": len(tr_idx), "start": start, "end": last_val,
            "stopped": stopped, "history": history, "policy": policy}


LN2 = math.log(2)  # the DPO loss at the start, when the policy is the reference


@torch.no_grad()
def next_word_probability(model, tok, prompt: str, words: Sequence[str]) -> float:
    """Probability that the next token after `prompt` starts one of `words` (each preceded by a space): how much
    the model leans towards, e.g., the kind adjectives of the synthetic pairs."""
    ids = encode_prompt(tok, prompt, model.config.block_size)
    logits, _ = model(torch.tensor([ids]), last_only=True)
    probs = F.softmax(logits[0, -1].float(), -1)
    first = {tok.encode(" " + w)[0] for w in words}
    return float(probs[list(first)].sum())


def dpo_seconds(n_params: int, n_trainable: int, steps: int, batch_size: int, tokens: int,
                flops_per_s: float = 1.5e10) -> float:
    """A rough duration of train_dpo: every step runs 2 x batch_size rows of `tokens` tokens forwards (2N FLOPs
    per token) and backwards (~4 FLOPs per trainable parameter). flops_per_s: measured on a 2-core CPU (fp32)."""
    return steps * 2 * batch_size * tokens * (2 * n_params + 4 * n_trainable) / flops_per_s
