"""Scaling laws at toy scale: train a sweep of small GPTs, fit L(N) = a * N^(-alpha) + c, and find the
compute-optimal model size for a few compute budgets (Chinchilla's IsoFLOP profiles).

Two sweeps share one loop (`scaling_sweep`):

- size sweep (Kaplan et al. 2020, L(N)): models of several sizes N all see the same D tokens; the final
  validation losses are fitted with `fit_power_law(N, L)`.
- budget sweep (Hoffmann et al. 2022, "Chinchilla", approach 2): for each compute budget C, each size N trains on
  D = C / (6 N) tokens (so bigger models see fewer tokens); the loss-vs-log N curve is U-shaped, a parabola through
  its lowest points gives the best size N_opt(C), and `fit_loglinear(C, N_opt)` gives N_opt ∝ C^a.

N counts non-embedding parameters (Kaplan's choice: attention, MLP and norm weights; the token and position tables
are left out), C = 6 N D is the usual training-FLOPs estimate, and every model is a character-level GPT by default.
`analyse_sweep(runs)` redoes every fit from a list of runs, so a saved sweep (assets/scaling/) can be re-read.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import numpy as np
import torch

from ..defaults import SCALING

# (n_layer, n_head, n_embd): about 2x more non-embedding parameters per rung, 0.9k to 100k at a 65-char vocab
DEFAULT_SHAPES = SCALING["shapes"]


@dataclass
class SweepConfig:
    """One sweep's settings; the defaults (and what each means) are tinygpt.defaults.SCALING."""
    shapes: tuple = DEFAULT_SHAPES  # model sizes, as (n_layer, n_head, n_embd)
    steps: int = SCALING["steps"]  # size sweep: training steps of every model
    budgets: tuple = SCALING["budgets"]  # compute budgets C in FLOPs for the IsoFLOP runs
    context: int = SCALING["context"]
    batch_size: int = SCALING["batch_size"]
    lr: float = SCALING["lr"]
    min_steps: int = SCALING["min_steps"]  # shorter budget runs are skipped
    max_steps: int = SCALING["max_steps"]  # longer budget runs are skipped
    eval_windows: int = SCALING["eval_windows"]
    tokenizer: str = SCALING["tokenizer"]  # "char" or "gpt2"
    seed: int = SCALING["seed"]

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.context


# ---- fits ------------------------------------------------------------------------------------------------
def _points(x, y, min_points: int, names=("N", "L")) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64).reshape(-1), np.asarray(y, dtype=np.float64).reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"{names[0]} and {names[1]} must have the same length ({len(x)} vs {len(y)}).")
    if len(x) < min_points:
        raise ValueError(f"A fit needs at least {min_points} points (got {len(x)}).")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("Every point must be a finite number.")
    if np.any(x <= 0):
        raise ValueError(f"Every {names[0]} must be above 0 (a power law lives on a log axis).")
    return x, y


def fit_power_law(N, L, c: Optional[float] = None) -> dict:
    """Least-squares fit of L(N) = a * N^(-alpha) + c -> {a, alpha, c, r2}.

    For a given c the model is a straight line in log space, log(L - c) = log a - alpha log N (linear least
    squares); c itself is found by scanning [0, min L) and refining with a golden-section search on the squared
    error in L, and all three are then polished with a few Gauss-Newton (Levenberg-Marquardt) steps. Pass c to fix
    the offset (c=0: a pure power law). r2 = 1 - SS_res / SS_tot on L itself."""
    x, y = _points(N, L, 2 if c is not None else 3)
    sst = float(np.sum((y - y.mean()) ** 2))
    if sst == 0:
        raise ValueError("All losses are equal: there is no trend to fit.")
    lx = np.log(x)
    design = np.stack([np.ones_like(lx), lx], 1)  # (n, 2)

    def at(cc: float):
        """(sse, a, alpha) with c fixed at cc."""
        (log_a, slope), *_ = np.linalg.lstsq(design, np.log(y - cc), rcond=None)
        a, alpha = math.exp(log_a), -float(slope)
        return float(np.sum((y - cc - a * x ** -alpha) ** 2)), a, alpha

    if c is not None:
        if np.any(y <= c):
            raise ValueError(f"Every L must be above the fixed offset c = {c}.")
        sse, a, alpha = at(float(c))
        return {"a": a, "alpha": alpha, "c": float(c), "r2": 1 - sse / sst}
    top = float(y.min())
    if top <= 0:
        raise ValueError("Losses must be above 0 to fit an offset c >= 0.")
    grid = top * (1 - np.geomspace(1.0, 1e-6, 300))  # 0 .. just below min L, denser near min L
    errs = [at(cc)[0] for cc in grid]
    i = int(np.argmin(errs))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    g = (math.sqrt(5) - 1) / 2
    for _ in range(80):  # golden section on c within the two neighbouring grid cells
        m1, m2 = hi - g * (hi - lo), lo + g * (hi - lo)
        if at(m1)[0] < at(m2)[0]:
            hi = m2
        else:
            lo = m1
    cc = (lo + hi) / 2
    sse, a, alpha = at(cc)
    p = np.array([math.log(a), alpha, cc])  # Levenberg-Marquardt polish of (log a, alpha, c), c kept in [0, min L)
    lam = 1e-3
    for _ in range(50):
        pred_pow = np.exp(p[0]) * x ** -p[1]  # (n,)
        r = y - p[2] - pred_pow
        J = np.stack([pred_pow, -pred_pow * lx, np.ones_like(lx)], 1)  # d pred / d (log a, alpha, c)
        JTJ = J.T @ J
        step = np.linalg.solve(JTJ + lam * np.diag(np.diag(JTJ) + 1e-12), J.T @ r)
        q = p + step
        q[2] = min(max(q[2], 0.0), top * (1 - 1e-9))
        new = float(np.sum((y - q[2] - np.exp(q[0]) * x ** -q[1]) ** 2))
        if new < sse:
            p, sse, lam = q, new, lam / 3
        else:
            lam *= 10
        if lam > 1e8:
            break
    return {"a": float(np.exp(p[0])), "alpha": float(p[1]), "c": float(p[2]), "r2": 1 - sse / sst}


def fit_loglinear(x, y) -> dict:
    """A pure power law y = k * x^exponent by a straight line in log-log space -> {k, exponent, r2} (r2 of the
    log-log line). N_opt ∝ C^a and L_opt ∝ C^b of the budget sweep are fitted with it."""
    x, y = _points(x, y, 2, ("x", "y"))
    if np.any(y <= 0):
        raise ValueError("Every y must be above 0 for a log-log fit.")
    lx, ly = np.log(x), np.log(y)
    slope, intercept = np.polyfit(lx, ly, 1)
    sst = float(np.sum((ly - ly.mean()) ** 2))
    sse = float(np.sum((ly - intercept - slope * lx) ** 2))
    return {"k": float(math.exp(intercept)), "exponent": float(slope), "r2": 1 - sse / sst if sst > 0 else 1.0}


def isoflop_optimum(params, losses) -> dict:
    """The best model size on one compute budget's U-shaped curve: a parabola in log10 N through the lowest
    run and its neighbours (Chinchilla approach 2) -> {params, val_loss, edge, method}. When the lowest run is the
    smallest or largest size tried (edge=True) the true optimum may lie outside and that run is returned."""
    n, l = _points(params, losses, 1)
    order = np.argsort(n)
    n, l = n[order], l[order]
    i = int(np.argmin(l))
    if i == 0 or i == len(n) - 1 or len(n) < 3:
        return {"params": float(n[i]), "val_loss": float(l[i]), "edge": True, "method": "best run"}
    sel = slice(max(i - 2, 0), min(i + 3, len(n))) if len(n) >= 5 else slice(i - 1, i + 2)  # up to 5 around
    lx = np.log10(n[sel])
    p2, p1, p0 = np.polyfit(lx, l[sel], 2)
    if p2 <= 0:
        return {"params": float(n[i]), "val_loss": float(l[i]), "edge": False, "method": "best run"}
    xv = float(np.clip(-p1 / (2 * p2), lx.min(), lx.max()))
    return {"params": float(10 ** xv), "val_loss": float(p0 + p1 * xv + p2 * xv * xv), "edge": False,
            "method": "parabola"}


def compute_frontier(runs: list) -> list:
    """The runs no other run beats with less or equal compute: the lower envelope of loss vs FLOPs."""
    best, out = float("inf"), []
    for r in sorted(runs, key=lambda r: (r["flops"], r["val_loss"])):
        if r["val_loss"] < best:
            best = r["val_loss"]
            out.append(r)
    return out


def analyse_sweep(runs: list) -> dict:
    """Every fit from a list of runs ({params, tokens, flops, val_loss, group: "size"|"budget", budget}).

    -> {fit: L(N) of the size sweep {a, alpha, c, r2} (None under 3 runs), fit_compute: L(C) on the compute
    frontier (offset fitted from 4 points, else a pure power law), budgets: per budget {flops, runs, best, n_opt,
    d_opt, loss_opt, tokens_per_param, edge, method}, optimum: N_opt ∝ C^a {exponent, k, r2} and the loss of the
    optimum L_opt ∝ C^b {loss_exponent, loss_k, loss_r2} (None under 2 budgets)}."""
    size = sorted((r for r in runs if r.get("group") == "size" and math.isfinite(r["val_loss"])),
                  key=lambda r: r["params"])
    fit = None
    if len({r["params"] for r in size}) >= 3 and len({r["val_loss"] for r in size}) > 1:
        fit = fit_power_law([r["params"] for r in size], [r["val_loss"] for r in size])
    frontier = compute_frontier([r for r in runs if math.isfinite(r["val_loss"])])
    fit_compute = None
    if len(frontier) >= 2 and len({r["val_loss"] for r in frontier}) > 1:
        xs, ys = [r["flops"] for r in frontier], [r["val_loss"] for r in frontier]
        fit_compute = fit_power_law(xs, ys, None if len(frontier) >= 4 else 0.0)
        fit_compute["points"] = len(frontier)
    budgets = []
    for C in sorted({r["budget"] for r in runs if r.get("group") == "budget"}):
        rs = sorted((r for r in runs if r.get("group") == "budget" and r["budget"] == C), key=lambda r: r["params"])
        rs = [r for r in rs if math.isfinite(r["val_loss"])]
        if not rs:
            continue
        best = min(rs, key=lambda r: r["val_loss"])
        opt = isoflop_optimum([r["params"] for r in rs], [r["val_loss"] for r in rs])
        d_opt = C / (6 * opt["params"])
        budgets.append({"flops": C, "runs": [{k: r[k] for k in ("params", "tokens", "val_loss")} for r in rs],
                        "best": {k: best[k] for k in ("params", "tokens", "val_loss")},
                        "n_opt": opt["params"], "d_opt": d_opt, "loss_opt": opt["val_loss"],
                        "tokens_per_param": d_opt / opt["params"], "edge": opt["edge"], "method": opt["method"]})
    optimum = None
    if len(budgets) >= 2:
        cs = [b["flops"] for b in budgets]
        n_fit = fit_loglinear(cs, [b["n_opt"] for b in budgets])
        l_fit = fit_loglinear(cs, [b["loss_opt"] for b in budgets])
        optimum = {**n_fit, "loss_exponent": l_fit["exponent"], "loss_k": l_fit["k"], "loss_r2": l_fit["r2"]}
    return {"fit": fit, "fit_compute": fit_compute, "budgets": budgets, "optimum": optimum}


# ---- settings as text (command line and tab) -------------------------------------------------------------
def parse_shapes(text) -> tuple:
    """"1x2x16, 2x4x64" -> ((1, 2, 16), (2, 4, 64)): n_layer x n_head x n_embd per model. ValueError otherwise."""
    try:
        shapes = tuple(tuple(int(v) for v in part.strip().lower().split("x"))
                       for part in str(text).replace(";", ",").split(",") if part.strip())
    except ValueError:
        shapes = ()
    if not shapes or any(len(s) != 3 or min(s) < 1 for s in shapes):
        raise ValueError(f"Model sizes look like 1x2x16, 2x4x64 (layers x heads x d_model); got {str(text)!r}.")
    return shapes


def parse_budgets(text) -> tuple:
    """"1.5e10, 5e10" -> (1.5e10, 5e10) FLOPs. ValueError otherwise."""
    try:
        budgets = tuple(float(v) for v in str(text).replace(";", ",").split(",") if v.strip())
    except ValueError:
        budgets = ()
    if not budgets or not all(math.isfinite(b) and b > 0 for b in budgets):
        raise ValueError(f"Compute budgets look like 1.5e10, 5e10, 1.5e11 (FLOPs); got {str(text)!r}.")
    return budgets


def format_shapes(shapes, sep: str = ", ") -> str:
    """((1, 2, 16), (2, 4, 64)) -> "1x2x16, 2x4x64" (parse_shapes' inverse: the tab's field and a link's value)."""
    return sep.join("x".join(str(int(v)) for v in s) for s in shapes)


def format_budgets(budgets, sep: str = ", ") -> str:
    """(1.5e10, 5e10) -> "1.5e+10, 5e+10" (parse_budgets' inverse)."""
    return sep.join(f"{float(b):g}" for b in budgets)


# ---- the sweep ---------------------------------------------------------------------------------------------
def model_config(shape, vocab_size: int, context: int):
    from ..config import GPTConfig

    n_layer, n_head, n_embd = (int(v) for v in shape)
    return GPTConfig(vocab_size=vocab_size, block_size=context, n_layer=n_layer, n_head=n_head, n_embd=n_embd)


def plan_sweep(cfg: SweepConfig, vocab_size: int) -> list:
    """Every run of the sweep before any training: [{group, budget, shape, params, steps, tokens, flops}].

    Size sweep: every shape for cfg.steps steps. Budget sweep: for each budget C and shape, D = C / (6 N) tokens
    rounded to whole steps (runs outside [min_steps, max_steps] are left out). Raises ValueError (one sentence)
    when a budget keeps fewer than 3 sizes: an optimum needs a U to sit in."""
    from ..params import count_parameters

    if not cfg.shapes:
        raise ValueError("Give at least one model size.")
    for name in ("steps", "context", "batch_size", "min_steps", "max_steps", "eval_windows"):
        v = getattr(cfg, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive whole number (got {v!r}).")
    if cfg.min_steps > cfg.max_steps:
        raise ValueError(f"min_steps ({cfg.min_steps}) is above max_steps ({cfg.max_steps}).")
    if not 0 < cfg.lr < 1:
        raise ValueError(f"The learning rate must be between 0 and 1 (got {cfg.lr}).")
    sizes = []
    for shape in cfg.shapes:
        c = model_config(shape, vocab_size, cfg.context)  # validates the shape (e.g. n_embd % n_head)
        sizes.append((tuple(int(v) for v in shape), count_parameters(c)["non_embedding"]))
    if len({n for _, n in sizes}) != len(sizes):
        raise ValueError("Two of the model shapes have the same number of parameters: give distinct sizes.")
    sizes.sort(key=lambda s: s[1])
    tps = cfg.tokens_per_step
    plan = [{"group": "size", "budget": None, "shape": s, "params": n, "steps": cfg.steps,
             "tokens": cfg.steps * tps, "flops": 6 * n * cfg.steps * tps} for s, n in sizes]
    for C in cfg.budgets:
        C = float(C)
        if not C > 0 or not math.isfinite(C):
            raise ValueError(f"Compute budgets must be positive numbers of FLOPs (got {C!r}).")
        runs = []
        for s, n in sizes:
            steps = round(C / (6 * n * tps))
            if cfg.min_steps <= steps <= cfg.max_steps:
                runs.append({"group": "budget", "budget": C, "shape": s, "params": n, "steps": steps,
                             "tokens": steps * tps, "flops": 6 * n * steps * tps})
        if len(runs) < 3:
            raise ValueError(f"The budget {C:.3g} FLOPs keeps only {len(runs)} model sizes between {cfg.min_steps} and "
                             f"{cfg.max_steps} steps; it needs at least 3 (change the budget or the sizes).")
        plan += runs
    return plan


def step_seconds(shape, vocab_size: int, context: int, batch_size: int, steps: int = 3) -> float:
    """Measured seconds per training step (forward, backward, AdamW) of one shape on this machine."""
    from ..model import GPT
    from ..train import TrainConfig, make_optimizer

    torch.manual_seed(0)
    model = GPT(model_config(shape, vocab_size, context))
    opt = make_optimizer(list(model.parameters()), TrainConfig())
    x = torch.randint(0, vocab_size, (batch_size, context))
    t0 = 0.0
    for i in range(steps + 1):  # the first step warms up the allocator and kernels
        if i == 1:
            t0 = time.perf_counter()
        _, loss = model(x, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def estimate_seconds(cfg: SweepConfig, vocab_size: int, plan: Optional[list] = None) -> dict:
    """Predicted wall time of the sweep from a 3-step timing of each shape -> {seconds, per_run: [...]}.
    Each run also pays two evaluations of eval_windows windows (a forward pass is about a third of a step)."""
    plan = plan or plan_sweep(cfg, vocab_size)
    per_step = {s: step_seconds(s, vocab_size, cfg.context, cfg.batch_size) for s in {r["shape"] for r in plan}}
    eval_steps = 2 * cfg.eval_windows / cfg.batch_size / 3
    per_run = [per_step[r["shape"]] * (r["steps"] + eval_steps) for r in plan]
    return {"seconds": float(sum(per_run)), "per_run": per_run}


def sweep_corpus(text: Optional[str] = None) -> tuple[str, str]:
    """(text, name): the given text, else Tiny Shakespeare (downloaded once), else the offline Python docs."""
    from ..data import load_corpus

    if text is not None:
        return text, "given text"
    try:
        return load_corpus("tiny-shakespeare"), "tiny-shakespeare"
    except ConnectionError:
        return load_corpus("python-docs"), "python-docs (Tiny Shakespeare could not be downloaded)"


def scaling_sweep(cfg: Optional[SweepConfig] = None, text: Optional[str] = None,
                  callback: Optional[Callable[[dict], None]] = None,
                  should_stop: Optional[Callable[[], bool]] = None, corpus_name: Optional[str] = None,
                  shard: tuple = (0, 1), workers: int = 1) -> dict:
    """Train every run of `plan_sweep(cfg)` on `text` (default: `sweep_corpus()`), 90% train / last 10% held out.

    callback(event) gets every training step ({kind: "step", run, runs_total, step, steps_total, train_loss,
    val_loss, ...}) and every finished run ({kind: "run", run, runs_total, result}). should_stop() ends the sweep
    after the current step; the runs finished so far are analysed. Returns {runs: [{index, params, tokens, flops,
    val_loss, group, budget, n_layer, n_head, n_embd, steps, train_loss, seconds}], **analyse_sweep(runs),
    corpus, config, vocab_size, seconds, stopped}.

    Every run depends only on its own settings and the seed, so runs can be spread out: shard=(i, n) trains the
    runs whose index is i modulo n (a torchrun rank's share: `merge_sweeps` joins the parts), and workers=N trains
    the sweep in N processes on this machine, each with its share of the CPU threads."""
    from ..data import encode_text, make_tokenizer, split_tokens

    cfg = cfg or SweepConfig()
    if text is None:
        text, corpus_name = sweep_corpus()
    t0 = time.perf_counter()
    if workers > 1:
        return _sweep_in_processes(cfg, text, corpus_name, workers, callback, t0)
    tok = make_tokenizer(cfg.tokenizer, text)
    train_data, val_data = split_tokens(encode_text(tok, text), 0.1)
    if len(val_data) < cfg.context + 2:
        raise ValueError(f"The text is too short: {len(val_data)} held-out tokens for a context of {cfg.context}.")
    plan = plan_sweep(cfg, tok.vocab_size)
    runs, stopped = [], False
    for i, spec in enumerate(plan):
        if i % shard[1] != shard[0]:
            continue
        if should_stop is not None and should_stop():
            stopped = True
            break
        run = train_point(cfg, spec, i, len(plan), tok.vocab_size, train_data, val_data, callback, should_stop)
        if run is None:
            stopped = True
            break
        runs.append(run)
        if callback is not None:
            callback({"kind": "run", "run": i, "runs_total": len(plan), "result": dict(run)})
    return sweep_result(cfg, runs, corpus_name, tok.vocab_size, len(plan), time.perf_counter() - t0, stopped)


def train_point(cfg: SweepConfig, spec: dict, i: int, runs_total: int, vocab_size: int, train_data, val_data,
                callback=None, should_stop=None) -> Optional[dict]:
    """Train run `i` of the plan from its own seed -> its result row (None when stopped before the end)."""
    from .. import distributed as D
    from ..model import GPT
    from ..train import TrainConfig, train

    torch.manual_seed(cfg.seed)
    model = GPT(model_config(spec["shape"], vocab_size, cfg.context))
    steps = spec["steps"]
    tcfg = TrainConfig(steps=steps, batch_size=cfg.batch_size, context=cfg.context, lr=cfg.lr,
                       warmup=max(1, min(100, steps // 10)), eval_interval=steps,
                       eval_batches=max(1, cfg.eval_windows // 8), seed=cfg.seed)

    def step_event(ev):
        if callback is not None:
            callback({**ev, "kind": "step", "run": i, "runs_total": runs_total})
    # each process trains its own models: never data-parallel, even under torchrun
    res = train(model, train_data, val_data, tcfg, step_event, should_stop, dist=D.SINGLE)
    if res["stopped"]:
        return None
    n_layer, n_head, n_embd = spec["shape"]
    return {"index": i, "params": spec["params"], "tokens": spec["tokens"], "flops": spec["flops"],
            "val_loss": res["val_loss"], "group": spec["group"], "budget": spec["budget"], "n_layer": n_layer,
            "n_head": n_head, "n_embd": n_embd, "steps": steps, "train_loss": res["train_loss"],
            "seconds": res["seconds"]}


def sweep_result(cfg: SweepConfig, runs: list, corpus_name, vocab_size: int, planned: int, seconds: float,
                 stopped: bool) -> dict:
    """The sweep's report: its runs in plan order and every fit redone from them."""
    runs = sorted(runs, key=lambda r: r.get("index", 0))
    config = {k: (list(map(list, v)) if k == "shapes" else list(v) if k == "budgets" else v)
              for k, v in asdict(cfg).items()}
    return {"runs": runs, **analyse_sweep(runs), "corpus": corpus_name or "given text", "config": config,
            "vocab_size": vocab_size, "planned_runs": planned, "seconds": seconds, "stopped": stopped}


def merge_sweeps(parts: list, seconds: Optional[float] = None) -> dict:
    """Join the shares of one sweep (from torchrun ranks or worker processes) into one report."""
    first = parts[0]
    cfg = SweepConfig(**{k: (tuple(map(tuple, v)) if k == "shapes" else tuple(v) if k == "budgets" else v)
                         for k, v in first["config"].items()})
    runs = [r for p in parts for r in p["runs"]]
    return sweep_result(cfg, runs, first["corpus"], first["vocab_size"], first["planned_runs"],
                        seconds if seconds is not None else max(p["seconds"] for p in parts),
                        any(p["stopped"] for p in parts))


def _sweep_share(cfg_dict: dict, text: str, corpus_name, shard: tuple, threads: int) -> dict:
    """One worker process's share of a sweep (module level: a spawned process imports it by name)."""
    torch.set_num_threads(threads)
    cfg = SweepConfig(**{k: (tuple(map(tuple, v)) if k == "shapes" else tuple(v) if k == "budgets" else v)
                         for k, v in cfg_dict.items()})
    return scaling_sweep(cfg, text, corpus_name=corpus_name, shard=shard)


def _sweep_in_processes(cfg: SweepConfig, text: str, corpus_name, workers: int, callback, t0: float) -> dict:
    """The sweep spread over `workers` processes on this machine (spawned: a clean torch in each), joined."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, torch.get_num_threads() // workers)
    cfg_dict = asdict(cfg)
    parts = []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_sweep_share, cfg_dict, text, corpus_name, (w, workers), threads)
                   for w in range(workers)]
        for f in as_completed(futures):
            part = f.result()
            parts.append(part)
            if callback is not None:
                for run in part["runs"]:
                    callback({"kind": "run", "run": run["index"], "runs_total": part["planned_runs"],
                              "result": dict(run)})
    return merge_sweeps(parts, time.perf_counter() - t0)
