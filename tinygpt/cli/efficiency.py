"""`python -m tinygpt profile`: time one forward pass by component next to its FLOPs (the Efficiency tab's
forward-pass profile)."""
from __future__ import annotations

from ..defaults import PROFILE
from ..dtypes import FAST
from .common import add_budget, add_dtype, budget_report, emit, load, model_options, with_budget


def profile_lines(r: dict):
    from ..efficiency.profile import shares

    t, f = shares(r["seconds"]), shares(r["flops"])
    yield (f"{r['model']}: forward pass of batch {r['batch']} x {r['seq_len']} tokens, median of {r['repeats']} "
           f"runs on {r['threads']} thread(s): {1000 * r['total_seconds']:.2f} ms")
    yield f"{'component':<13} {'ms':>9} {'time share':>11} {'FLOPs':>12} {'FLOPs share':>12}"
    for k in r["seconds"]:
        yield (f"{k:<13} {1000 * r['seconds'][k]:>9.3f} {t[k]:>11.1%} {r['flops'][k]:>12.3e} {f[k]:>12.1%}")


def set_threads(threads) -> None:
    """--threads N: torch's intra-op threads (None: torch's choice)."""
    import torch

    if threads is not None:
        if threads < 1:
            raise ValueError("--threads must be at least 1.")
        torch.set_num_threads(threads)


def cmd_profile(a) -> int:
    from ..budget.estimates import estimate_profile
    from ..efficiency import profile_forward
    from ..efficiency.profile import check_profile_size

    set_threads(a.threads)
    model, _ = load(a, a.dtype)
    check_profile_size(model, a.batch, a.seq_len)  # a bad size is its own sentence, before the budget's
    budget = budget_report(a, lambda: estimate_profile(model.config, a.batch, [a.seq_len], a.repeats, a.dtype))
    r = profile_forward(model, a.batch, a.seq_len, a.repeats)
    report = {**r, "model": model.info.name, "fallback": model.info.fallback, "dtype": a.dtype}
    return emit(a, with_budget(report, budget), profile_lines)


def register(sub) -> None:
    d = PROFILE
    r = sub.add_parser("profile", parents=[model_options()],
                       help="time one forward pass by component next to its FLOPs")
    r.add_argument("--batch", type=int, default=d["batch"])
    r.add_argument("--seq-len", type=int, default=d["seq_len"])
    r.add_argument("--repeats", type=int, default=d["repeats"],
                   help="timed runs after 2 warm-up runs; medians are reported")
    add_dtype(r, ("fp32", FAST), d["dtype"])
    r.add_argument("--threads", type=int, default=d["threads"], help="torch threads (default: torch's choice)")
    add_budget(r)
    r.set_defaults(func=cmd_profile)
