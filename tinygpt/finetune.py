"""Fine-tuning helpers: a trainable copy of a shared base model, and what changed after training.

`trainable_copy` never touches the base model's tensors: parameters that will be trained are cloned; the
frozen rest (with "top:N", most of the network) is shared read-only with the base, so a fine-tuned GPT-2
that trains its top 2 blocks costs ~15 MB per user instead of ~500 MB.
"""
from __future__ import annotations

import copy
import math
from collections import defaultdict

import torch
import torch.nn as nn

from .defaults import FINETUNE
from .evaluate import token_logprobs
from .model import GPT
from .train import TrainConfig, trainable_parameters

# The defaults of the Fine-tune tab and `python -m tinygpt finetune` (tinygpt.defaults.FINETUNE): top 2 blocks,
# 40 steps of 4 x 128 tokens, lr 1e-3, and the best held-out weights kept.
DEFAULTS = FINETUNE


def finetune_config(steps: int = DEFAULTS["steps"], context: int = DEFAULTS["context"],
                    batch_size: int = DEFAULTS["batch_size"], lr: float = DEFAULTS["lr"], seed: int = DEFAULTS["seed"],
                    trainable: str = DEFAULTS["trainable"], keep_best: bool = DEFAULTS["keep_best"],
                    **overrides) -> TrainConfig:
    """The TrainConfig of a fine-tune: short warm-up and ten evaluations over the run."""
    every = max(1, steps // 10)
    return TrainConfig(**{**dict(steps=steps, batch_size=batch_size, context=context, lr=lr, warmup=every,
                                 eval_interval=every, eval_batches=4, seed=seed, trainable=trainable,
                                 keep_best=keep_best), **overrides})


def holdout_split(ids: torch.Tensor, context: int, fraction: float = DEFAULTS["val_fraction"]):
    """(train, held-out): the last `fraction` of the text is held out, but never less than one window."""
    n_val = max(int(len(ids) * fraction), context + 2)
    if len(ids) - n_val < context + 2:
        raise ValueError(f"The text is too short: {len(ids):,} tokens, but fine-tuning needs at least "
                         f"{2 * (context + 2):,} for a context of {context} (training plus a held-out part).")
    return ids[:-n_val], ids[-n_val:]


def trainable_copy(base: GPT, trainable: str = "all") -> GPT:
    """A model with base's weights whose `trainable` parameters are private clones (the rest is shared)."""
    if trainable == "all":
        model = copy.deepcopy(base)
    else:
        with torch.device("meta"):
            model = GPT(base.config)
        model.load_state_dict(base.state_dict(), assign=True)  # assign: share base's tensors, no copy
        if base.config.tie_weights:
            model.lm_head.weight = model.transformer.wte.weight
        wanted = {id(p) for p in trainable_parameters(model, trainable)}
        for module in model.modules():
            for name, p in list(module._parameters.items()):
                if p is not None and id(p) in wanted:
                    module._parameters[name] = nn.Parameter(p.detach().clone())
    for p in model.parameters():
        p.requires_grad_(False)
    model.info = copy.copy(getattr(base, "info", None))
    model.eval()
    return model


def probability_shifts(base, tuned, tok, ids: torch.Tensor, context: int, top: int = 15, min_count: int = 2):
    """Tokens of `ids` whose probability rose most after fine-tuning.

    For every distinct next token seen at least min_count times: its count, the mean gain in log-probability
    (nats; +0.69 = twice as likely), and the mean probability before and after.
    """
    a = token_logprobs(base, ids, context)
    b = token_logprobs(tuned, ids, context)
    sums = defaultdict(lambda: [0, 0.0, 0.0, 0.0])  # count, gain, p_before, p_after
    for t, la, lb in zip(a.targets.tolist(), a.logprobs.tolist(), b.logprobs.tolist()):
        s = sums[t]
        s[0] += 1
        s[1] += lb - la
        s[2] += math.exp(la)
        s[3] += math.exp(lb)
    rows = [{"token": tok.piece(t), "count": n, "mean_logprob_gain": g / n, "p_before": pa / n, "p_after": pb / n}
            for t, (n, g, pa, pb) in sums.items() if n >= min_count]
    rows.sort(key=lambda r: -r["mean_logprob_gain"])
    return rows[:top]
