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
import torch.nn.functional as F

from .model import GPT
from .train import trainable_parameters


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


@torch.no_grad()
def token_logprobs(model, ids: torch.Tensor, context: int) -> torch.Tensor:
    """Log-probability the model gives each next token of `ids` (1-D), in non-overlapping windows -> (N,)."""
    out = []
    for s in range(0, len(ids) - 1, context):
        x = ids[s:s + context].unsqueeze(0)
        y = ids[s + 1:s + 1 + context]
        x = x[:, :len(y)]
        logp = F.log_softmax(model(x).float(), -1)[0]  # (T, V)
        out.append(logp.gather(-1, y.unsqueeze(-1)).squeeze(-1))
    return torch.cat(out)


def probability_shifts(base, tuned, tok, ids: torch.Tensor, context: int, top: int = 15, min_count: int = 2):
    """Tokens of `ids` whose probability rose most after fine-tuning.

    For every distinct next token seen at least min_count times: its count, the mean gain in log-probability
    (nats; +0.69 = twice as likely), and the mean probability before and after.
    """
    a = token_logprobs(base, ids, context)
    b = token_logprobs(tuned, ids, context)
    sums = defaultdict(lambda: [0, 0.0, 0.0, 0.0])  # count, gain, p_before, p_after
    for t, la, lb in zip(ids[1:1 + len(a)].tolist(), a.tolist(), b.tolist()):
        s = sums[t]
        s[0] += 1
        s[1] += lb - la
        s[2] += math.exp(la)
        s[3] += math.exp(lb)
    rows = [{"token": tok.piece(t), "count": n, "mean_logprob_gain": g / n, "p_before": pa / n, "p_after": pb / n}
            for t, (n, g, pa, pb) in sums.items() if n >= min_count]
    rows.sort(key=lambda r: -r["mean_logprob_gain"])
    return rows[:top]
