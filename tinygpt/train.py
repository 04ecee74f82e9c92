"""One small training loop for every experiment: training from scratch, fine-tuning (and the MoE/positions runs).

AdamW with decoupled weight decay on matrices only, linear warm-up then cosine decay, gradient clipping,
a train/validation split, and periodic evaluation on fixed validation windows. It knows nothing about any
UI: it reports every step through `callback(event)` (a dict: step, steps_total, train_loss, val_loss,
val_accuracy, train_eval_loss, train_eval_accuracy, tokens_per_s, lr, elapsed; the val_* and train_eval_* entries
are None except on evaluation steps, train_eval_* also unless `eval_train` is set) and checks `should_stop()`
between steps.

train_loss is the loss of the step's training batch (with dropout on, if the model has any); train_eval_* measure a
fixed, evenly spaced subset of the training text exactly as validation is measured (eval mode: no dropout, the same
number of windows), so validation minus train_eval is the generalisation gap.

Where it runs: on the model's own device (the batches follow it), with bf16 autocast on CUDA
(`tinygpt.device.autocast`; a no-op on the CPU). Under torchrun the model is wrapped in DistributedDataParallel
(`tinygpt.distributed`): each rank draws its own micro-batches from its own seeded stream, gradients are averaged
across ranks, rank 0 evaluates. `grad_accum` micro-batches per rank make one optimizer step, so the global batch
is batch_size × grad_accum × world_size sequences.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from . import distributed as D
from .data import get_batch
from .device import autocast, model_device, needs_grad_scaler
from .evaluate import evaluate


@dataclass
class TrainConfig:
    steps: int = 1000  # optimizer steps
    batch_size: int = 16  # sequences per micro-batch (one forward/backward)
    grad_accum: int = 1  # micro-batches per optimizer step on each process (a larger batch than fits at once)
    context: int = 128  # tokens per training sequence (<= the model's block_size)
    lr: float = 1e-3  # peak learning rate
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup: int = 50  # linear warm-up steps
    weight_decay: float = 0.1  # AdamW decay on 2-D weights (not on biases, LayerNorms)
    betas: tuple = (0.9, 0.99)  # AdamW betas (0.99: small batches, nanoGPT's char recipe)
    grad_clip: float = 1.0  # clip the global gradient norm (0 = off)
    eval_interval: int = 100  # evaluate every this many steps (and at the last step)
    eval_batches: int = 8  # fixed validation batches per evaluation
    seed: int = 1337  # batch sampling and dropout
    trainable: str = "all"  # "all", or "top:N" = only the last N blocks + ln_f (fine-tuning on a CPU)
    keep_best: bool = False  # end with the weights of the best evaluation (early stopping, as nanoGPT saves)
    eval_train: bool = False  # also measure loss and accuracy on fixed training windows at each evaluation


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to cfg.lr * min_lr_ratio at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def trainable_parameters(model, spec: str):
    """Select what to train: "all", or "top:N" (last N blocks and the final LayerNorm)."""
    if spec == "all":
        return [p for p in model.parameters()]
    if spec.startswith("top:"):
        n = int(spec.split(":", 1)[1])
        L = model.config.n_layer
        if not 1 <= n <= L:
            raise ValueError(f"top:N needs 1 <= N <= {L}.")
        params = [p for i in range(L - n, L) for p in model.transformer.h[i].parameters()]
        return params + list(model.transformer.ln_f.parameters())
    raise ValueError(f"Unknown trainable spec {spec!r} (use 'all' or 'top:N').")


def make_optimizer(params, cfg: TrainConfig):
    decay = [p for p in params if p.dim() >= 2]  # matrices and embeddings
    no_decay = [p for p in params if p.dim() < 2]  # biases and LayerNorm gains
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:  # the fused kernel is one pass over all parameters: noticeably faster on CPU
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def batch_streams(cfg: TrainConfig, ctx: D.DistContext = D.SINGLE) -> list[torch.Generator]:
    """This process's micro-batch streams: rank r draws streams r·K ... r·K + K − 1 (K = grad_accum), each a
    torch.Generator seeded by (seed, stream). A lone run with K = 1 draws stream 0, seeded by `seed` itself."""
    K = cfg.grad_accum
    return [torch.Generator().manual_seed(D.stream_seed(cfg.seed, ctx.rank * K + k)) for k in range(K)]


def train(model, train_data: torch.Tensor, val_data: torch.Tensor, cfg: TrainConfig,
          callback: Optional[Callable[[dict], None]] = None,
          should_stop: Optional[Callable[[], bool]] = None, dist: D.DistContext | None = None) -> dict:
    """Train `model` in place. Returns {steps, train_loss, val_loss, val_accuracy, train_eval_loss,
    train_eval_accuracy, tokens_per_s, seconds, stopped, history, world_size}; history holds every event passed to
    the callback (train_eval_* are None unless cfg.eval_train).

    dist: this process's place in a torchrun job (default: read from the environment; alone = rank 0 of 1).
    train_loss is the mean over every micro-batch of the step on every rank; tokens_per_s counts all ranks.
    Only rank 0 evaluates (val_* stay None on the others)."""
    if cfg.context > model.config.block_size:
        raise ValueError(f"Context {cfg.context} is longer than the model's block size {model.config.block_size}.")
    if len(train_data) < cfg.context + 2:
        raise ValueError(f"The training text is too short: {len(train_data)} tokens for a context of {cfg.context}.")
    if len(val_data) < cfg.context + 2:
        raise ValueError(f"The held-out text is too short: {len(val_data)} tokens for a context of {cfg.context}.")
    if not isinstance(cfg.grad_accum, int) or cfg.grad_accum < 1:
        raise ValueError(f"Gradient accumulation must be a whole number of at least 1 (got {cfg.grad_accum!r}).")
    ctx = D.from_env() if dist is None else dist
    device = model_device(model)
    K = cfg.grad_accum
    gens = batch_streams(cfg, ctx)
    torch.manual_seed(cfg.seed)  # dropout masks
    params = trainable_parameters(model, cfg.trainable)
    wanted = {id(p) for p in params}
    flags = {id(p): p.requires_grad for p in model.parameters()}  # restored at the end
    for p in model.parameters():
        p.requires_grad_(id(p) in wanted)
    opt = make_optimizer(params, cfg)
    net = D.wrap(model, ctx, device)  # DDP averages gradients across ranks during backward (itself when alone)
    scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(device) else None  # fp16 autocast only
    model.train()
    history, t0 = [], time.perf_counter()
    tokens_seen, train_time = 0, 0.0
    step, stopped, last, lv = 0, False, None, float("nan")
    val_windows = cfg.eval_batches * 8
    best = {"loss": float("inf")}

    def report(step, lr, evaluate_now):
        """One event per step; val_* are filled on evaluation steps (rank 0) and None otherwise."""
        ev = {"step": step, "steps_total": cfg.steps, "train_loss": lv, "val_loss": None, "val_accuracy": None,
              "train_eval_loss": None, "train_eval_accuracy": None,
              "tokens_per_s": tokens_seen / max(train_time, 1e-9), "lr": lr, "elapsed": time.perf_counter() - t0}
        if evaluate_now and ctx.is_main:
            res = evaluate(model, val_data, cfg.context, max_windows=val_windows)
            ev.update(val_loss=res["loss"], val_accuracy=res["accuracy"])
            if cfg.eval_train:  # eval mode, no randomness drawn: the run's numbers are the same with or without
                fit = evaluate(model, train_data, cfg.context, max_windows=val_windows)
                ev.update(train_eval_loss=fit["loss"], train_eval_accuracy=fit["accuracy"])
            ev["elapsed"] = time.perf_counter() - t0
            if cfg.keep_best and res["loss"] < best["loss"]:
                best.update(loss=res["loss"], step=step, event=dict(ev),
                            state={k: v.detach().clone() for k, v in model.state_dict().items()})
        history.append(ev)
        if callback is not None:
            callback(dict(ev))
        return ev

    for step in range(1, cfg.steps + 1):
        stop_now = should_stop is not None and should_stop()
        if D.any_rank(stop_now, ctx, device if ctx.backend == "nccl" else None):
            stopped, step = True, step - 1
            break
        ts = time.perf_counter()
        lr = lr_at(step - 1, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for k in range(K):
            x, y = get_batch(train_data, cfg.batch_size, cfg.context, gens[k])
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            # DDP all-reduces gradients on every backward unless told not to: only the last micro-batch syncs
            sync = contextlib.nullcontext() if (k == K - 1 or not ctx.enabled) else net.no_sync()
            with sync:
                with autocast(device):
                    _, loss = net(x, y)
                scaled = loss / K  # the step's gradient is the mean over its K micro-batches
                (scaler.scale(scaled) if scaler else scaled).backward()
            total += loss.item()
            tokens_seen += x.numel() * ctx.world_size
        if scaler is not None:
            scaler.unscale_(opt)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        train_time += time.perf_counter() - ts
        lv = D.mean_over_ranks(total / K, ctx, device if ctx.backend == "nccl" else None)
        last = report(step, lr, step % cfg.eval_interval == 0 or step == cfg.steps or step == 1)
    if step > 0 and (last is None or last["val_loss"] is None):  # stopped between evaluations
        last = report(step, lr_at(step - 1, cfg), True)
    if cfg.keep_best and "state" in best and best["step"] != step:
        model.load_state_dict(best.pop("state"))  # back to the best evaluated weights
        last = best["event"]
    model.eval()
    for p in model.parameters():  # leave flags as we found them (frozen shared tensors stay frozen)
        p.requires_grad_(flags[id(p)])
    last = last or {}
    return {"steps": step, "best_step": best.get("step"), "train_loss": last.get("train_loss"),
            "val_loss": last.get("val_loss"), "val_accuracy": last.get("val_accuracy"),
            "train_eval_loss": last.get("train_eval_loss"), "train_eval_accuracy": last.get("train_eval_accuracy"),
            "tokens_per_s": last.get("tokens_per_s"), "world_size": ctx.world_size,
            "seconds": time.perf_counter() - t0, "stopped": stopped, "history": history}
