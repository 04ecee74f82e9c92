"""A toy RLHF pipeline (Ouyang et al. 2022, "Training language models to follow instructions with human
feedback"), small enough to run in minutes on a CPU: SFT, a reward model, then PPO against it.

The task (what a student can see in the text). A tiny grammar writes short sentences about a subject:
"the cat" + " was sad and kind.". Its adjectives are kind (happy, kind, glad, ...), gloomy (sad, cruel, angry, ...)
or neutral (big, old, red, ...). The "human" labeller prefers the cheerful sentence: the one with more kind words
minus gloomy words (`gold_score`).

1. SFT: a small character-level GPT (~0.35M parameters at the defaults: policy_parameters) learns the grammar's
   sentences (the toy has no pretraining, so supervised fine-tuning starts from random weights: it is the whole
   language model here). It writes kind and gloomy sentences equally often.
2. Reward model: the SFT transformer with a scalar head on the last token (`RewardModel`), trained on pairs of
   sentences for the same subject that the labeller ranked, with the Bradley-Terry loss -log sigmoid(r_c - r_r).
3. PPO (Schulman et al. 2017) with a KL penalty against the SFT model: every response token gets the reward
   -kl_coef * (log pi - log pi_sft), the last one also the reward model's score; a value head on the policy's trunk,
   GAE advantages, the clipped surrogate objective. The policy learns to pick kind words.

Reward hacking: the reward model only ever saw grammatical sentences, so it never learned that gibberish is bad.
With the KL penalty turned down (--kl-coef 0), PPO finds text the reward model scores highly that no grammar
would write ("happy kind glad glad ..."): the reward rises while the text degenerates (`is_grammatical` and the
KL to the SFT model show it).
"""
from __future__ import annotations

import copy
import random
import re
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import GPTConfig
from ..data import encode_text, split_tokens
from ..defaults import RLHF
from ..evaluate import masked_logprobs, ngram_stats, target_logprobs
from ..model import GPT
from ..sampling import generate
from ..tokenizer import CharTokenizer
from ..train import TrainConfig, lr_at, train

# ---- the task: a grammar of short sentences and a visible preference ----------------------------------------
KIND = ["happy", "kind", "glad", "warm", "sweet", "lovely", "calm", "gentle"]
GLOOMY = ["sad", "cruel", "angry", "cold", "bitter", "awful", "grim", "nasty"]
NEUTRAL = ["big", "small", "old", "tall", "red", "round"]
ADJECTIVES = KIND + GLOOMY + NEUTRAL
NOUNS = ["dog", "house", "tree", "song", "book", "boat"]
SUBJECTS = ["the cat", "my dog", "the old man", "a little girl", "the king", "our teacher", "the farmer",
            "my sister"]
TEMPLATES = [" is {a}.", " was {a} and {b}.", " felt {a} today.", " saw the {a} {n}.", " likes the {a} {n}."]
TASK = ("Sentences about a subject (\"the cat\" + \" was sad and kind.\"). The labeller prefers the cheerful one: "
        f"score = number of kind words ({', '.join(KIND)}) minus gloomy words ({', '.join(GLOOMY)}).")


def grammar_sentence(rng: random.Random, subject: Optional[str] = None) -> tuple[str, str]:
    """(prompt, response) from the grammar: the subject, then one template with random words, then a newline."""
    subject = subject or rng.choice(SUBJECTS)
    t = rng.choice(TEMPLATES)
    words = dict(a=rng.choice(ADJECTIVES), b=rng.choice(ADJECTIVES), n=rng.choice(NOUNS))
    return subject, t.format(**words) + "\n"


BOS = "\n"  # every sentence follows a newline, so a prompt starts with one: the model knows a sentence begins


def sft_text(n: int, seed: int = 0) -> str:
    """The SFT data set: n demonstration sentences, one per line."""
    rng = random.Random(seed)
    return BOS + "".join(p + r for p, r in (grammar_sentence(rng) for _ in range(n)))


WORD = re.compile(r"[a-z]+")


def gold_score(response: str) -> int:
    """The labeller's preference, visible in the text: kind words minus gloomy words."""
    words = WORD.findall(response.lower())
    return sum(w in KIND for w in words) - sum(w in GLOOMY for w in words)


def _template_regex(t: str) -> str:
    alt = lambda ws: "(?:" + "|".join(ws) + ")"  # noqa: E731
    out = re.escape(t)
    for slot, words in (("a", ADJECTIVES), ("b", ADJECTIVES), ("n", NOUNS)):
        out = out.replace(re.escape("{" + slot + "}"), alt(words))
    return out


GRAMMAR = re.compile("(?:" + "|".join(_template_regex(t) for t in TEMPLATES) + ")\n?")


def is_grammatical(response: str) -> bool:
    """Could the grammar have written this response? (What the reward model never checks.)"""
    return GRAMMAR.fullmatch(response) is not None


def preference_pairs(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """n labelled pairs (prompt, chosen, rejected): two sentences for the same subject with different gold
    scores; the labeller chooses the more cheerful one (ties are not labelled, as annotators skip them)."""
    rng = random.Random(seed)
    pairs = []
    while len(pairs) < n:
        subject = rng.choice(SUBJECTS)
        (_, a), (_, b) = grammar_sentence(rng, subject), grammar_sentence(rng, subject)
        if gold_score(a) != gold_score(b):
            pairs.append((subject, a, b) if gold_score(a) > gold_score(b) else (subject, b, a))
    return pairs


# ---- models -----------------------------------------------------------------------------------------------
class RewardModel(nn.Module):
    """A transformer with a scalar head: score = (head(ln_f(last token's hidden state)) - offset) / scale.

    The trunk is a GPT (initialised from the SFT model, as in InstructGPT); its language-model head is unused.
    offset and scale are set after training (`normalize`) so the demonstrations score mean 0 and std 1: the
    Bradley-Terry loss only sees differences, so the level and unit of a score are otherwise arbitrary."""

    def __init__(self, gpt: GPT):
        super().__init__()
        self.gpt = gpt
        self.head = nn.Linear(gpt.config.n_embd, 1)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("offset", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))

    def forward(self, ids: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """ids (B, T), last (B,) index of each row's last real token -> scores (B,)."""
        h = self.gpt.transformer.ln_f(self.gpt.hidden_states(ids)[-1])  # (B, T, C)
        h_last = h[torch.arange(ids.size(0)), last]  # (B, C)
        return (self.head(h_last).squeeze(-1) - self.offset) / self.scale

    @torch.no_grad()
    def normalize(self, scores: torch.Tensor) -> None:
        """Given the current scores of reference texts, make them mean 0 and std 1 from now on."""
        self.offset += self.scale * scores.mean()
        self.scale *= scores.std().clamp(min=1e-6)


def bradley_terry_loss(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> torch.Tensor:
    """-log P(chosen preferred) under Bradley-Terry, P = sigmoid(r_chosen - r_rejected); mean over pairs."""
    return -F.logsigmoid(chosen_scores - rejected_scores).mean()


class PolicyWithValue(nn.Module):
    """The PPO policy: a GPT plus a value head on its last hidden state (one trunk for both, as TRL's
    AutoModelForCausalLMWithValueHead)."""

    def __init__(self, gpt: GPT):
        super().__init__()
        self.gpt = gpt
        self.v_head = nn.Linear(gpt.config.n_embd, 1)
        nn.init.zeros_(self.v_head.weight)
        nn.init.zeros_(self.v_head.bias)

    def forward(self, ids: torch.Tensor):
        """ids (B, T) -> logits (B, T, V), values (B, T): the value of the state after each token."""
        h = self.gpt.hidden_states(ids)[-1]  # (B, T, C), before ln_f
        return self.gpt.logits(h), self.v_head(self.gpt.transformer.ln_f(h)).squeeze(-1)


# ---- PPO pieces (each checked by hand in the tests) --------------------------------------------------------
def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries (advantage normalisation); 0 outside the mask."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return ((x - mean) * torch.rsqrt(var + eps)) * mask


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(pi || pi_ref) of each sampled sequence, (B,): sum over its tokens of log pi - log pi_ref.

    Unbiased when the tokens were sampled from pi (one sample can be negative; the mean cannot, in expectation)."""
    return ((logp - ref_logp) * mask).sum(-1)


def kl_shaped_rewards(logp, ref_logp, mask, scores, kl_coef: float) -> torch.Tensor:
    """Per-token rewards (B, T): -kl_coef * (log pi - log pi_ref) on every response token, plus the reward
    model's score (B,) on the last one (InstructGPT's reward: score - beta * KL, spread over the tokens)."""
    rewards = -kl_coef * (logp - ref_logp) * mask
    last = mask.long().cumsum(-1).argmax(-1)  # (B,) index of the last True entry
    rewards[torch.arange(len(scores)), last] += scores
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95):
    """Generalised advantage estimation (Schulman et al. 2016) over each row's masked (response) tokens.

    delta_t = r_t + gamma * V_{t+1} - V_t (V after the last token = 0); A_t = delta_t + gamma * lam * A_{t+1}.
    Returns (advantages, returns = advantages + values), both (B, T) and 0 outside the mask."""
    m = mask.to(rewards.dtype)
    T = rewards.size(-1)
    adv = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_adv = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        nxt = m[:, t + 1] if t + 1 < T else torch.zeros_like(m[:, 0])  # is t + 1 still a response token?
        delta = rewards[:, t] + gamma * next_value * nxt - values[:, t]
        adv[:, t] = (delta + gamma * lam * next_adv * nxt) * m[:, t]
        next_value, next_adv = values[:, t], adv[:, t]
    return adv, (adv + values) * m


def ppo_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                    clip: float = 0.2):
    """The clipped surrogate (Schulman et al. 2017): mean over tokens of max(-A * ratio, -A * clip(ratio)),
    ratio = pi_new / pi_old. Returns (loss, fraction of tokens where the clip was active)."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).float(), mask)
    return loss, clipfrac


def ppo_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                   clip: float = 0.2) -> torch.Tensor:
    """0.5 * mean of max((V - R)^2, (V_clipped - R)^2), V_clipped = old V +- clip (as the PPO baselines)."""
    v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (v_clipped - returns) ** 2), mask)


# ---- the pipeline -----------------------------------------------------------------------------------------
@dataclass
class RLHFConfig:
    """The pipeline's settings; those a user sets (command line, tab) default to tinygpt.defaults.RLHF."""
    seed: int = RLHF["seed"]
    # the toy model (characters)
    n_layer: int = RLHF["n_layer"]
    n_head: int = 4
    n_embd: int = RLHF["n_embd"]
    block_size: int = 64
    # 1. SFT (tinygpt.train on the demonstrations)
    sft_sentences: int = 4000
    sft_steps: int = RLHF["sft_steps"]
    sft_batch: int = 16
    sft_lr: float = RLHF["sft_lr"]
    # 2. reward model
    rm_pairs: int = 900  # labelled pairs; 1/6 held out for the validation accuracy
    rm_steps: int = RLHF["rm_steps"]
    rm_batch: int = 32
    rm_lr: float = 1e-3
    # 3. PPO
    ppo_steps: int = RLHF["ppo_steps"]  # rollouts (each followed by ppo_epochs passes over it)
    prompts_per_step: int = 2  # distinct subjects per rollout (one generate call each: the costly part)
    samples_per_prompt: int = 16  # responses sampled for each
    ppo_epochs: int = 2
    ppo_lr: float = RLHF["ppo_lr"]
    kl_coef: float = RLHF["kl_coef"]  # the KL penalty; 0 lets the policy drift anywhere: reward hacking
    clip: float = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    vf_coef: float = 0.1
    max_new_tokens: int = 32  # the longest grammatical response has 26 characters with its newline
    eval_samples: int = 48  # responses scored before and after PPO (the same prompts and seed)

    def model_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, block_size=self.block_size, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd, embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0)


def _stopper(should_stop):
    return should_stop if should_stop is not None else (lambda: False)


def policy_parameters(cfg: RLHFConfig) -> int:
    """Parameters of the pipeline's toy model (its character vocabulary is the SFT sentences')."""
    from ..params import count_parameters

    vocab = CharTokenizer.from_text(sft_text(cfg.sft_sentences, cfg.seed)).vocab_size
    return count_parameters(cfg.model_config(vocab))["total"]


def run_sft(cfg: RLHFConfig, callback=None, should_stop=None):
    """Stage 1 -> (model, tokenizer, result of tinygpt.train). Events are tinygpt.train's, with stage="sft"."""
    text = sft_text(cfg.sft_sentences, cfg.seed)
    tok = CharTokenizer.from_text(text)
    train_ids, val_ids = split_tokens(encode_text(tok, text), 0.1)
    torch.manual_seed(cfg.seed)
    model = GPT(cfg.model_config(tok.vocab_size))
    every = max(1, cfg.sft_steps // 10)
    tc = TrainConfig(steps=cfg.sft_steps, batch_size=cfg.sft_batch, context=cfg.block_size, lr=cfg.sft_lr,
                     warmup=min(30, max(1, cfg.sft_steps // 10)), eval_interval=every, eval_batches=4, seed=cfg.seed)
    result = train(model, train_ids, val_ids, tc, lambda ev: callback and callback({"stage": "sft", **ev}),
                   should_stop)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tok, result


def encode_rows(tok, prompts, responses):
    """Rows BOS + prompt + response padded at the end -> ids (B, T), response mask (B, T), last index (B,)."""
    prompts = [BOS + p for p in prompts]
    rows = [tok.encode(p) + tok.encode(r) for p, r in zip(prompts, responses)]
    T = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.bool)
    for i, (row, p) in enumerate(zip(rows, prompts)):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, len(tok.encode(p)):len(row)] = True
    return ids, mask, torch.tensor([len(r) - 1 for r in rows])


def rm_scores(rm: RewardModel, tok, prompts, responses) -> torch.Tensor:
    ids, _, last = encode_rows(tok, prompts, responses)
    return rm(ids, last)


@torch.no_grad()
def rm_accuracy(rm: RewardModel, tok, pairs) -> float:
    """Share of pairs where the reward model scores the labeller's choice higher."""
    prompts = [p for p, _, _ in pairs]
    sc = rm_scores(rm, tok, prompts, [c for _, c, _ in pairs])
    sr = rm_scores(rm, tok, prompts, [r for _, _, r in pairs])
    return float((sc > sr).float().mean())


def run_reward_model(sft: GPT, tok, cfg: RLHFConfig, callback=None, should_stop=None):
    """Stage 2 -> (reward model, {val_accuracy, train_accuracy, val_pairs, steps, seconds, history}).

    Events: {stage="reward_model", step, steps_total, loss, accuracy (batch), val_accuracy (evaluation steps)}."""
    t0 = time.perf_counter()
    should_stop = _stopper(should_stop)
    pairs = preference_pairs(cfg.rm_pairs, cfg.seed + 1)
    n_val = max(1, len(pairs) // 6)
    train_pairs, val_pairs = pairs[n_val:], pairs[:n_val]
    torch.manual_seed(cfg.seed)
    rm = RewardModel(copy.deepcopy(sft))
    for p in rm.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(rm.parameters(), lr=cfg.rm_lr, weight_decay=0.0)
    sched = TrainConfig(steps=max(1, cfg.rm_steps), lr=cfg.rm_lr, warmup=max(1, cfg.rm_steps // 10))
    rng = random.Random(cfg.seed)
    rm.eval()  # no dropout in the toy model; eval mode all along
    history, every = [], max(1, cfg.rm_steps // 6)
    val_acc = rm_accuracy(rm, tok, val_pairs)
    ev = {"stage": "reward_model", "step": 0, "steps_total": cfg.rm_steps, "loss": None, "accuracy": None,
          "val_accuracy": val_acc, "elapsed": time.perf_counter() - t0}
    history.append(ev)
    if callback:
        callback(dict(ev))
    step = 0
    for step in range(1, cfg.rm_steps + 1):
        if should_stop():
            step -= 1
            break
        for g in opt.param_groups:  # warm-up, then cosine decay (as tinygpt.train): a steadier final accuracy
            g["lr"] = lr_at(step - 1, sched)
        batch = rng.sample(train_pairs, min(cfg.rm_batch, len(train_pairs)))
        prompts = [p for p, _, _ in batch]
        sc = rm_scores(rm, tok, prompts, [c for _, c, _ in batch])
        sr = rm_scores(rm, tok, prompts, [r for _, _, r in batch])
        loss = bradley_terry_loss(sc, sr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(rm.parameters(), 1.0)
        opt.step()
        ev = {"stage": "reward_model", "step": step, "steps_total": cfg.rm_steps, "loss": loss.item(),
              "accuracy": float((sc > sr).float().mean()), "val_accuracy": None, "elapsed": time.perf_counter() - t0}
        if step % every == 0 or step == cfg.rm_steps:
            ev["val_accuracy"] = val_acc = rm_accuracy(rm, tok, val_pairs)
        history.append(ev)
        if callback:
            callback(dict(ev))
    if history[-1]["val_accuracy"] is None:
        history[-1]["val_accuracy"] = val_acc = rm_accuracy(rm, tok, val_pairs)
    for p in rm.parameters():
        p.requires_grad_(False)
    with torch.no_grad():  # demonstrations (the training pairs' sentences) score mean 0, std 1
        ref = train_pairs[:200]
        rm.normalize(rm_scores(rm, tok, [p for p, _, _ in ref] * 2, [c for _, c, _ in ref] + [r for _, _, r in ref]))
    return rm, {"val_accuracy": val_acc, "train_accuracy": rm_accuracy(rm, tok, train_pairs[:200]),
                "val_pairs": len(val_pairs), "steps": step, "seconds": time.perf_counter() - t0, "history": history}


@dataclass
class Rollout:
    """A batch of sampled responses and everything PPO needs about them; the (B, T-1) tensors are aligned with
    the actions: entry t is about token t + 1, chosen after seeing tokens 0..t."""

    prompts: list
    responses: list  # decoded text, cut after the first newline
    ids: torch.Tensor  # (B, T)
    mask: torch.Tensor  # (B, T - 1) True on response tokens
    logp: torch.Tensor  # (B, T - 1) log pi_old of each action
    ref_logp: torch.Tensor  # (B, T - 1) log pi_sft
    values: torch.Tensor  # (B, T - 1) V of the state before each action
    scores: torch.Tensor  # (B,) reward model
    kl: torch.Tensor  # (B,) sum of log pi - log pi_sft over each response


@torch.no_grad()
def rollout(policy: PolicyWithValue, ref: GPT, rm: RewardModel, tok, prompts: list, samples_per_prompt: int,
            max_new_tokens: int, generator: torch.Generator) -> Rollout:
    """Sample responses (temperature 1: PPO needs the policy's own distribution), cut each after its first
    newline, and score them: policy and reference log-probs, values, reward-model scores."""
    policy.eval()
    nl = tok.encode("\n")[0]
    all_prompts, responses = [], []
    for p in prompts:  # one generate call per prompt: equal-length rows share a batch
        x = torch.tensor([tok.encode(BOS + p)] * samples_per_prompt)
        new = generate(policy.gpt, x, max_new_tokens, 1.0, None, None, generator)[:, x.size(1):]
        for row in new.tolist():
            cut = row.index(nl) + 1 if nl in row else len(row)
            all_prompts.append(p)
            responses.append(tok.decode(row[:cut]))
    ids, mask, last = encode_rows(tok, all_prompts, responses)
    logits, values = policy(ids)
    logp = target_logprobs(logits[:, :-1], ids[:, 1:])  # (B, T-1)
    amask = mask[:, 1:]
    ref_logp = masked_logprobs(ref, ids, mask)
    scores = rm(ids, last)
    logp = logp * amask
    return Rollout(all_prompts, responses, ids, amask, logp, ref_logp, values[:, :-1] * amask, scores,
                   kl_estimate(logp, ref_logp, amask))


def rollout_stats(ro: Rollout) -> dict:
    """Mean reward-model score and KL, and what the reward model cannot see: the labeller's gold score, the
    share of grammatical responses, their length and repetition."""
    return {"reward": float(ro.scores.mean()), "kl": float(ro.kl.mean()),
            "gold": sum(gold_score(r) for r in ro.responses) / len(ro.responses),
            "grammatical": sum(is_grammatical(r) for r in ro.responses) / len(ro.responses),
            "length": sum(len(r) for r in ro.responses) / len(ro.responses),
            "repetition": sum(ngram_stats(list(r))["repetition"] for r in ro.responses) / len(ro.responses)}


def ppo_update(policy: PolicyWithValue, opt, ro: Rollout, cfg: RLHFConfig) -> dict:
    """KL-shaped rewards, GAE, then cfg.ppo_epochs passes of the clipped PPO loss over the whole rollout."""
    rewards = kl_shaped_rewards(ro.logp, ro.ref_logp, ro.mask, ro.scores, cfg.kl_coef)
    adv, returns = gae(rewards, ro.values, ro.mask, cfg.gamma, cfg.lam)
    adv = masked_whiten(adv, ro.mask)
    policy.eval()  # no dropout: the ratio must compare the same function of the weights
    out = {}
    for _ in range(cfg.ppo_epochs):
        logits, values = policy(ro.ids)
        logp = target_logprobs(logits[:, :-1], ro.ids[:, 1:])
        pg_loss, clipfrac = ppo_policy_loss(logp, ro.logp, adv, ro.mask, cfg.clip)
        vf_loss = ppo_value_loss(values[:, :-1], ro.values, returns, ro.mask, cfg.clip)
        loss = pg_loss + cfg.vf_coef * vf_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        out = {"pg_loss": pg_loss.item(), "vf_loss": vf_loss.item(), "clipfrac": clipfrac.item()}
    return out


def eval_prompts(n: int, seed: int) -> list:
    rng = random.Random(seed)
    return [rng.choice(SUBJECTS) for _ in range(n)]


EVAL_PER_PROMPT = 8


def evaluate_policy(policy: PolicyWithValue, ref: GPT, rm: RewardModel, tok, cfg: RLHFConfig) -> tuple[dict, list]:
    """Fixed prompts and seed: the same evaluation before and after PPO -> (stats, [(prompt, response, reward)]),
    EVAL_PER_PROMPT responses for each of the first eval_samples / EVAL_PER_PROMPT subjects."""
    prompts = SUBJECTS[:max(1, min(len(SUBJECTS), cfg.eval_samples // EVAL_PER_PROMPT))]
    ro = rollout(policy, ref, rm, tok, prompts, EVAL_PER_PROMPT, cfg.max_new_tokens,
                 torch.Generator().manual_seed(cfg.seed))
    return rollout_stats(ro), list(zip(ro.prompts, ro.responses, ro.scores.tolist()))


def run_ppo(sft: GPT, rm: RewardModel, tok, cfg: RLHFConfig, callback=None, should_stop=None):
    """Stage 3 -> (policy, {reward_start, reward_end, kl_end, start, end, steps, seconds, history, samples}).

    Events: {stage="ppo", step, steps_total, reward, kl, gold, grammatical, length, repetition, pg_loss, vf_loss,
    clipfrac, elapsed, sample}. reward/kl_start/end come from evaluate_policy (the same prompts and seed before
    and after); the per-step curves from each step's rollout."""
    t0 = time.perf_counter()
    should_stop = _stopper(should_stop)
    torch.manual_seed(cfg.seed)
    policy = PolicyWithValue(copy.deepcopy(sft))
    for p in policy.parameters():
        p.requires_grad_(True)
    ref = sft  # frozen: the KL anchor
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.ppo_lr, weight_decay=0.0)
    start, samples_before = evaluate_policy(policy, ref, rm, tok, cfg)
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    rng = random.Random(cfg.seed + 7)
    history, step = [], 0
    for step in range(1, cfg.ppo_steps + 1):
        if should_stop():
            step -= 1
            break
        prompts = [rng.choice(SUBJECTS) for _ in range(cfg.prompts_per_step)]
        ro = rollout(policy, ref, rm, tok, prompts, cfg.samples_per_prompt, cfg.max_new_tokens, gen)
        losses = ppo_update(policy, opt, ro, cfg)
        ev = {"stage": "ppo", "step": step, "steps_total": cfg.ppo_steps, **rollout_stats(ro), **losses,
              "elapsed": time.perf_counter() - t0, "sample": ro.prompts[0] + ro.responses[0]}
        history.append(ev)
        if callback:
            callback(dict(ev))
    end, samples_after = evaluate_policy(policy, ref, rm, tok, cfg)
    for p in policy.parameters():
        p.requires_grad_(False)
    return policy, {"reward_start": start["reward"], "reward_end": end["reward"], "kl_end": end["kl"],
                    "start": start, "end": end, "steps": step, "seconds": time.perf_counter() - t0,
                    "history": history, "samples": {"sft": samples_before, "ppo": samples_after},
                    "kl_coef": cfg.kl_coef}


def run_rlhf(cfg: RLHFConfig = RLHFConfig(), callback: Optional[Callable[[dict], None]] = None,
             should_stop: Optional[Callable[[], bool]] = None) -> dict:
    """The whole pipeline -> {"sft": {val_loss, ...}, "reward_model": {val_accuracy, ...},
    "ppo": {reward_start, reward_end, kl_end, ...}, "seconds", "params", "config", "models": {sft, reward_model,
    policy}, "tokenizer"}. Every stage reports through `callback` (events carry "stage")."""
    t0 = time.perf_counter()
    sft, tok, sft_res = run_sft(cfg, callback, should_stop)
    rm, rm_res = run_reward_model(sft, tok, cfg, callback, should_stop)
    policy, ppo_res = run_ppo(sft, rm, tok, cfg, callback, should_stop)
    return {"sft": {"val_loss": sft_res["val_loss"], "train_loss": sft_res["train_loss"], "steps": sft_res["steps"],
                    "seconds": sft_res["seconds"], "history": sft_res["history"]},
            "reward_model": rm_res, "ppo": ppo_res, "seconds": time.perf_counter() - t0,
            "params": sft.num_params(), "config": asdict(cfg),
            "models": {"sft": sft, "reward_model": rm, "policy": policy}, "tokenizer": tok}


def summary(result: dict) -> dict:
    """The command line's --json report: exactly these keys."""
    return {"sft": {"val_loss": result["sft"]["val_loss"]},
            "reward_model": {"val_accuracy": result["reward_model"]["val_accuracy"]},
            "ppo": {k: result["ppo"][k] for k in ("reward_start", "reward_end", "kl_end")},
            "seconds": result["seconds"]}
