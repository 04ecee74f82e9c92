"""Mixture-of-Experts, measured: where the router sends tokens, and the dense model a MoE should be compared with.

The MoE layer itself lives in model.py (class MoE, `GPTConfig(n_experts=4, moe_top_k=1, moe_aux_weight=0.01)`).
Here are the numbers a student reads about it:

- `expert_load(model, data, context)`: the share of held-out tokens each expert takes, per layer and averaged.
  A balanced router gives 1/n_experts each; a collapsed one sends almost everything to one expert.
- `with_expert_load(callback, model, data, context)`: the training callback, plus that load on every evaluation
  step (so the load can be drawn over training, with the load-balancing loss on and off).
- `dense_n_inner(config)` / `dense_equivalent(config)`: the feed-forward width that gives a dense model the same
  number of parameters *per token* as the MoE (its active parameters), the fair comparison: same compute per
  token, the MoE just has more parameters to choose from.
- `match_active_params(configs)`: for a dense run next to an MoE run, that width given to the dense run.
- `token_experts(model, ids)`: the expert each token of a text went to, layer by layer (to colour a prompt).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .config import GPTConfig
from .evaluate import window_starts
from .params import count_parameters


def _check_moe(model) -> None:
    if not model.config.n_experts:
        raise ValueError("This model has no Mixture-of-Experts layers (n_experts is 0).")


@torch.no_grad()
def expert_load(model, data, context: Optional[int] = None, max_windows: Optional[int] = None,
                batch_size: int = 16) -> dict:
    """Fraction of the tokens of `data` (1-D token ids) that the router sends to each expert.

    The text is cut into the same windows `evaluate` uses (max_windows: a fixed, evenly spaced subset).
    Returns {per_layer: [[fraction per expert] per MoE layer], average: [fraction per expert] (mean over layers),
    counts: [[assignments per expert] per layer], tokens: routed tokens per layer, top_k}. With top-k > 1 each
    token makes k assignments, and the fractions are shares of the assignments, so every row sums to 1."""
    _check_moe(model)
    data = torch.as_tensor(data, dtype=torch.long).reshape(-1)
    context = int(context or min(model.config.block_size, 128))
    if context > model.config.block_size:
        raise ValueError(f"Context {context} is longer than the model's block size {model.config.block_size}.")
    starts = window_starts(len(data), context, max_windows)
    by_len: dict[int, list[int]] = {}
    for s in starts:  # windows of equal length go through the model as one (B, T) batch
        by_len.setdefault(min(context, len(data) - 1 - s), []).append(s)
    counts, tokens = None, 0
    was_training = model.training
    model.eval()
    try:
        for T, group in by_len.items():
            for b in range(0, len(group), batch_size):
                x = torch.stack([data[s:s + T] for s in group[b:b + batch_size]])  # (B, T): the inputs the model sees
                per_layer = torch.stack([r["counts"] for r in model.moe_routing(x)])  # (n_layer, E)
                counts = per_layer if counts is None else counts + per_layer
                tokens += x.numel()
    finally:
        model.train(was_training)
    frac = counts.double() / counts.sum(-1, keepdim=True)  # (n_layer, E), rows sum to 1
    return {"per_layer": frac.tolist(), "average": frac.mean(0).tolist(), "counts": counts.tolist(),
            "tokens": tokens, "top_k": model.config.moe_top_k}


def with_expert_load(callback: Optional[Callable[[dict], None]], model, data, context: int,
                     max_windows: int = 8) -> Callable[[dict], None]:
    """A training callback that adds `expert_load` (per layer, as expert_load's per_layer) to every evaluation
    event, measured on the same fixed validation windows each time, then calls `callback`.

    For a dense model it is `callback` unchanged."""
    if not model.config.n_experts:
        return callback or (lambda ev: None)

    def cb(ev: dict) -> None:
        if ev.get("val_loss") is not None:
            ev = {**ev, "expert_load": expert_load(model, data, context, max_windows)["per_layer"]}
        if callback is not None:
            callback(ev)
    return cb


def dense_n_inner(config: GPTConfig) -> int:
    """The dense feed-forward width whose model has as many parameters as the MoE `config` uses per token.

    Per block the MoE runs k experts of width f plus the router: k * (f*(m*d + m*b) + b*d) + d*E parameters
    (m = 2 matrices for GELU, 3 for gated; b = 1 with biases); a dense MLP of width f' has f'*(m*d + m*b) + b*d.
    Solving for f' and rounding gives the nearest whole width; the difference left (less than half a column per
    block) is what `dense_equivalent` reports."""
    if not config.n_experts:
        raise ValueError("dense_n_inner needs a Mixture-of-Experts configuration (n_experts >= 2).")
    target = count_parameters(config)["active"]
    dense = config.replace(n_experts=0, n_inner=1)
    base = count_parameters(dense)["total"]
    per_column = count_parameters(config.replace(n_experts=0, n_inner=2))["total"] - base  # params per FFN column
    f = 1 + round((target - base) / per_column)
    if f < 1:
        raise ValueError("No dense width matches: the MoE's active parameters are fewer than a width-1 MLP's.")
    return f


def dense_equivalent(config: GPTConfig) -> GPTConfig:
    """The same model with a dense MLP of width `dense_n_inner(config)`: equal active parameters per token."""
    return config.replace(n_experts=0, n_inner=dense_n_inner(config))


def match_active_params(configs: dict) -> str:
    """Give the one dense configuration of `configs` ({name: GPTConfig}, changed in place) the feed-forward width
    at which its parameters equal the active parameters of the one MoE configuration (dense_n_inner).

    Returns a sentence saying what was matched: the widths and both parameter counts, or, when `configs` is not
    exactly one dense and one MoE configuration, that nothing was matched."""
    dense = [k for k, c in configs.items() if not c.n_experts]
    sparse = [k for k, c in configs.items() if c.n_experts]
    if len(dense) != 1 or len(sparse) != 1:
        return "Equal active parameters needs one dense run and one MoE run: nothing was matched."
    d, m = dense[0], sparse[0]
    configs[d] = configs[d].replace(n_inner=dense_n_inner(configs[m]))
    a, b = count_parameters(configs[d])["total"], count_parameters(configs[m])["active"]
    return (f"Run {d}'s feed-forward width is {configs[d].n_inner} (not {4 * configs[d].n_embd}) so that its {a:,} "
            f"parameters match the {b:,} that run {m} uses per token.")


@torch.no_grad()
def token_experts(model, ids) -> dict:
    """The expert every token of `ids` (the first block_size of them) goes to, in each MoE layer.

    -> {ids: [token ids], choice: [[expert per token] per layer], gate: [[router probability of that expert]
    per layer]}."""
    _check_moe(model)
    ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)[:model.config.block_size]
    if ids.numel() == 0:
        raise ValueError("Give at least one token to route.")
    was_training = model.training
    model.eval()
    try:
        routing = model.moe_routing(ids[None])  # per layer: choice (1, T), probs (1, T, E)
    finally:
        model.train(was_training)
    choice = [r["choice"][0].tolist() for r in routing]
    gate = [r["probs"][0].gather(-1, r["choice"][0][:, None]).squeeze(-1).tolist() for r in routing]
    return {"ids": ids.tolist(), "choice": choice, "gate": gate}
