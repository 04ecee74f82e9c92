"""A budget for every run: how much memory and time a run may take, checked before it starts.

A shared CPU server (a Hugging Face Space: 2 vCPU, 16 GB, a whole class) must refuse a run that would not fit
*before* it allocates anything: at the Train tab's slider maxima one visitor's run grew from 0.5 to 9.9 GB in 40 s.

* `Limits`: per run at most 2 GB and 10 minutes, and all runs together (the app's heavy work) at most 12 GB.
  `limits_from_env()` reads TINYGPT_RUN_MEMORY_GB, TINYGPT_RUN_MINUTES and TINYGPT_MEMORY_GB each time it is called
  (never at import), so a private machine can change them; `Limits.unlimited()` is the command line's default.
* `Estimate`: one run's peak memory above the process's baseline (its parts named), its seconds and FLOPs. The
  functions that build one per action live in `tinygpt.budget.estimates`, from the terms of `tinygpt.budget.terms`
  (the calculator's formulas plus what measurement adds); `tinygpt.budget.child` measures a real run's peak.
* `check(estimate, limits, in_use_bytes)` raises `BudgetError` (a ValueError) with one plain sentence holding
  both figures and the limits. `LEDGER.reserve(estimate)` holds a running run's memory (a context manager) and
  refuses a run that would push all running runs past the app total.
* `machine_speed()`: this machine's measured speed (a short calibration, once per process: FLOP rate, the fixed
  cost of a step, the loss's time per logit), which turns a run's work into seconds; `set_speed` injects one
  (tests, or a figure measured elsewhere).

GB here means 10^9 bytes, as in the environment variables' names.
"""
from __future__ import annotations

import math
import os
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

GB = 10 ** 9
RUN_MEMORY_GB, RUN_MINUTES, APP_MEMORY_GB = 2.0, 10.0, 12.0  # the public Space's defaults (16 GB, 2 vCPU)
ENV_RUN_MEMORY, ENV_RUN_MINUTES, ENV_APP_MEMORY = "TINYGPT_RUN_MEMORY_GB", "TINYGPT_RUN_MINUTES", "TINYGPT_MEMORY_GB"


class BudgetError(ValueError):
    """A run was refused before it started; the message is one sentence with the figures and the limits."""


# ---- limits ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    run_memory_bytes: float = RUN_MEMORY_GB * GB  # one run's peak memory above the baseline
    run_seconds: float = RUN_MINUTES * 60  # one run's wall time
    app_memory_bytes: float = APP_MEMORY_GB * GB  # all runs in progress together

    @classmethod
    def unlimited(cls) -> "Limits":
        """No limit at all (the command line, unless asked for one)."""
        return cls(math.inf, math.inf, math.inf)

    def as_dict(self) -> dict:
        """JSON-able: null where there is no limit."""
        fin = lambda v: v if math.isfinite(v) else None  # noqa: E731
        return {"run_memory_bytes": fin(self.run_memory_bytes), "run_seconds": fin(self.run_seconds),
                "app_memory_bytes": fin(self.app_memory_bytes)}


def _env_number(env, name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or not str(raw).strip():
        return default
    try:
        v = float(raw)
    except ValueError:
        v = float("nan")
    if not v > 0:  # also NaN
        raise ValueError(f"{name} must be a positive number (got {raw!r}).")
    return v


def limits_from_env(env=None) -> Limits:
    """The server's limits: the defaults (2 GB and 10 minutes per run, 12 GB in all), or the values of
    TINYGPT_RUN_MEMORY_GB, TINYGPT_RUN_MINUTES and TINYGPT_MEMORY_GB (read now, from `env` or os.environ)."""
    env = os.environ if env is None else env
    return Limits(_env_number(env, ENV_RUN_MEMORY, RUN_MEMORY_GB) * GB,
                  _env_number(env, ENV_RUN_MINUTES, RUN_MINUTES) * 60,
                  _env_number(env, ENV_APP_MEMORY, APP_MEMORY_GB) * GB)


# ---- the figures in words -------------------------------------------------------------------------------
def human_bytes(n: float) -> str:
    """2e9 -> '2 GB', 9.62e9 -> '9.6 GB', 4.5e8 -> '450 MB' (decimal units, as the limits are set)."""
    if not math.isfinite(n):
        return "no limit"
    for unit, size in (("TB", 10 ** 12), ("GB", GB), ("MB", 10 ** 6)):
        if n >= size:
            v = n / size
            return f"{v:.1f} {unit}".replace(".0 ", " ") if v < 100 else f"{v:,.0f} {unit}"
    return f"{max(n, 0) / 1e3:.0f} kB"


def human_seconds(s: float) -> str:
    """40 -> '40 seconds', 600 -> '10 minutes', 111600 -> '31 hours'."""
    if not math.isfinite(s):
        return "no limit"
    if s < 90:
        return f"{max(1, round(s))} second{'s' if round(s) != 1 else ''}"
    if s < 90 * 60:
        return f"{round(s / 60)} minutes"
    if s < 72 * 3600:
        return f"{round(s / 3600)} hours"
    return f"{round(s / 86400):,} days"


# ---- one run's estimate -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """One run: `memory_bytes` = the peak above the process's baseline (= the sum of `parts`, bytes by name),
    `seconds` on this machine, the FLOPs behind them, and what to lower when it does not fit (`advice`)."""

    action: str
    memory_bytes: int
    seconds: float
    parts: dict = field(default_factory=dict)
    flops: float = 0.0
    advice: str = "use fewer steps, a smaller batch or context"

    @property
    def memory(self) -> str:
        return human_bytes(self.memory_bytes)

    @property
    def time(self) -> str:
        return human_seconds(self.seconds)

    def as_dict(self, limits: Optional[Limits] = None, in_use_bytes: int = 0) -> dict:
        """JSON-able (the command line's --json report); with limits also "fits" and, if not, "message"."""
        out = {"action": self.action, "memory_bytes": int(self.memory_bytes), "seconds": round(self.seconds, 3),
               "flops": float(self.flops), "memory": self.memory, "time": self.time,
               "parts": {k: int(v) for k, v in self.parts.items()}}
        if limits is not None:
            out["limits"] = limits.as_dict()
            try:
                check(self, limits, in_use_bytes)
                out.update(fits=True, message=None)
            except BudgetError as e:
                out.update(fits=False, message=str(e))
        return out


def check(estimate: Estimate, limits: Limits, in_use_bytes: int = 0) -> Estimate:
    """The estimate, if it fits one run's limits and, with `in_use_bytes` held by runs in progress, the app's
    total; else BudgetError with one sentence giving the figures, the limits and what to change."""
    if estimate.memory_bytes > limits.run_memory_bytes or estimate.seconds > limits.run_seconds:
        raise BudgetError(
            f"This run needs about {estimate.memory} and {estimate.time}, but a run on this server may use at most "
            f"{human_bytes(limits.run_memory_bytes)} and {human_seconds(limits.run_seconds)}: {estimate.advice}, or "
            f"raise {ENV_RUN_MEMORY} / {ENV_RUN_MINUTES} on a private machine.")
    if in_use_bytes + estimate.memory_bytes > limits.app_memory_bytes:
        raise BudgetError(
            f"This run needs about {estimate.memory}, but the runs in progress already hold about "
            f"{human_bytes(in_use_bytes)} of the {human_bytes(limits.app_memory_bytes)} that all runs on this "
            f"server may share: try again when one has finished, or raise {ENV_APP_MEMORY} on a private machine.")
    return estimate


class Ledger:
    """The memory of the runs in progress, for the whole process (thread-safe).

    `with ledger.reserve(estimate): ...` checks the estimate against the limits and the runs already going, holds
    its memory while the block runs and gives it back however the block ends (an exception, a closed generator)."""

    def __init__(self, limits: Optional[Limits] = None):
        self._limits = limits  # None: limits_from_env() at every reservation
        self._lock = threading.Lock()
        self._held: dict[int, Estimate] = {}
        self._next = 0

    def in_use(self) -> int:
        with self._lock:
            return sum(e.memory_bytes for e in self._held.values())

    def running(self) -> list:
        with self._lock:
            return list(self._held.values())

    @contextmanager
    def reserve(self, estimate: Estimate, limits: Optional[Limits] = None):
        limits = limits or self._limits or limits_from_env()
        with self._lock:  # check and hold in one step: two runs cannot both take the last gigabytes
            check(estimate, limits, sum(e.memory_bytes for e in self._held.values()))
            key = self._next
            self._next += 1
            self._held[key] = estimate
        try:
            yield estimate
        finally:
            with self._lock:
                del self._held[key]


LEDGER = Ledger()  # the process-wide ledger every tab reserves through


# ---- this machine's speed --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Speed:
    """This machine's speed: seconds = FLOPs / flops_per_s + the fixed cost of each training step (a forward-only
    call: a third of it) + the time spent per logit in the loss (log-softmax over the vocabulary, forward and
    backward) and in scoring without gradients (log-softmax and argmax): memory-bound work no FLOP count sees."""

    flops_per_s: float
    step_overhead_s: float = 0.0
    loss_s_per_logit: float = 0.0
    score_s_per_logit: float = 0.0
    source: str = "given"

    def seconds(self, flops: float, steps: float = 0.0, forward_calls: float = 0.0, loss_logits: float = 0.0,
                scored_logits: float = 0.0) -> float:
        return (flops / self.flops_per_s + (steps + forward_calls / 3) * self.step_overhead_s
                + loss_logits * self.loss_s_per_logit + scored_logits * self.score_s_per_logit)


# Calibration: a 2-layer d=256 character model (4.9 GFLOP a step, nearly all in matmuls, as in every heavier run),
# a model so small that its step is all fixed cost (Python, kernel launches, the optimizer's loop), and the loss
# over 256 positions of GPT-2's 50,257-token vocabulary (51 MB a tensor: the size of a real run's logits).
CALIBRATION = {"big": dict(n_layer=2, n_head=4, n_embd=256, vocab=65, context=64, batch=8, steps=3),
               "small": dict(n_layer=1, n_head=1, n_embd=16, vocab=65, context=8, batch=1, steps=8),
               "loss": dict(rows=256, vocab=50257, steps=3)}
CALIBRATION_PART_S = 1.0  # stop trying a part after this long (one timed try at least): about 0.5 s in all when idle

_speed: Optional[Speed] = None
_speed_lock = threading.Lock()


def _time_steps(shape: dict, steps: int) -> tuple[float, float]:
    """(seconds per training step, its training FLOPs) of `shape`: the median of `steps` after a warm-up step."""
    import torch

    from ..compute import flops_per_token
    from ..config import GPTConfig
    from ..model import GPT
    from ..train import TrainConfig, make_optimizer

    c = GPTConfig(vocab_size=shape["vocab"], block_size=shape["context"], n_layer=shape["n_layer"],
                  n_head=shape["n_head"], n_embd=shape["n_embd"])
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():  # leave the caller's random state alone
        torch.manual_seed(0)
        model = GPT(c)
    opt = make_optimizer(list(model.parameters()), TrainConfig())
    x = torch.randint(0, c.vocab_size, (shape["batch"], shape["context"]), generator=g)
    times = []
    start = time.perf_counter()
    for i in range(steps + 1):
        t = time.perf_counter()
        _, loss = model(x, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:  # the first step warms up kernels and the allocator
            times.append(time.perf_counter() - t)
            if time.perf_counter() - start > CALIBRATION_PART_S:  # a busy machine: fewer tries, not a long wait
                break
    tokens = shape["batch"] * shape["context"]
    return statistics.median(times), flops_per_token(c, shape["context"])["per_token_train"] * tokens


def _time_loss(rows: int, vocab: int, steps: int) -> tuple[float, float]:
    """(seconds per logit of cross-entropy forward + backward, of log-softmax + argmax without gradients), as
    tinygpt.model's loss and tinygpt.evaluate.target_logprobs compute them: the median of `steps`."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(rows, vocab, generator=g).requires_grad_(True)
    targets = torch.randint(0, vocab, (rows,), generator=g)
    train, score = [], []
    start = time.perf_counter()
    for i in range(steps + 1):
        t = time.perf_counter()
        F.cross_entropy(logits.float(), targets).backward()
        logits.grad = None
        t1 = time.perf_counter()
        with torch.no_grad():
            F.log_softmax(logits.float(), dim=-1).gather(-1, targets[:, None])
            logits.argmax(-1)
        if i:
            train.append(t1 - t)
            score.append(time.perf_counter() - t1)
            if time.perf_counter() - start > CALIBRATION_PART_S:
                break
    return statistics.median(train) / (rows * vocab), statistics.median(score) / (rows * vocab)


def measure_speed(steps: Optional[int] = None) -> Speed:
    """Calibrate now (well under a second on an idle machine): the small model's step time is the fixed cost per
    step; the big model's step time less that cost, over its FLOPs (tinygpt.compute.flops_per_token), the FLOP
    rate; and the loss's time per logit. Each is the median of a few tries: on a shared machine it is what a run
    meets most of the time (the fastest try would promise an idle machine)."""
    small, _ = _time_steps(CALIBRATION["small"], steps or CALIBRATION["small"]["steps"])
    big, flops = _time_steps(CALIBRATION["big"], steps or CALIBRATION["big"]["steps"])
    loss = CALIBRATION["loss"]
    per_logit = _time_loss(loss["rows"], loss["vocab"], steps or loss["steps"])
    overhead = min(small, big / 5)  # a step of the small model that was interrupted says nothing about overhead
    return Speed(flops_per_s=flops / (big - overhead), step_overhead_s=overhead, loss_s_per_logit=per_logit[0],
                 score_s_per_logit=per_logit[1], source="measured")


def machine_speed() -> Speed:
    """The injected speed, else this process's calibration (measured once, on first use)."""
    global _speed
    with _speed_lock:
        if _speed is None:
            _speed = measure_speed()
        return _speed


def set_speed(speed: Optional[Speed]) -> None:
    """Use `speed` from now on (tests, or a figure measured elsewhere); None: measure again when next asked."""
    global _speed
    with _speed_lock:
        _speed = speed


def __getattr__(name: str):
    """budget.estimate_train (and every estimate_*) without importing the estimates module at `import budget`."""
    if name.startswith("estimate_"):
        from . import estimates

        return getattr(estimates, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
