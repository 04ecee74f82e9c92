"""What every subcommand shares: one-line errors, loading a model, printing text or one JSON object, and the
options several commands take (--model and --hub-timeout, --seed, --dtype, --json, --budget), each defined once here.

The budget (tinygpt.budget): train, finetune, dpo, rlhf, scaling and profile put their run's estimate in the --json
report as "budget" (Estimate.as_dict with the limits in force). The command line is not limited unless asked:
--budget applies the server's limits (limits_from_env(): TINYGPT_RUN_MEMORY_GB, TINYGPT_RUN_MINUTES, default 2 GB
and 10 minutes per run) and refuses a run over them before any work, with the one-sentence message and exit code 2.

Defaults come from tinygpt.defaults; a subcommand passes its own table's value where it differs from COMMON's.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..defaults import COMMON
from ..dtypes import NAMES, torch_dtype


class CliError(Exception):
    """A user mistake: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + error
        raise CliError(message)


def say(text: str) -> None:
    """One progress or note line on stderr: stdout holds only the report (so --json output stays parseable)."""
    print(text, file=sys.stderr, flush=True)


def load(a, dtype: str = COMMON["dtype"], device=None):
    """(model, tokenizer) for --model on --device; the offline-fallback notice goes to stderr as one line."""
    from ..loading import load_model

    model, tok = load_model(a.model, dtype=torch_dtype(dtype), hub_timeout=a.hub_timeout,
                            device=device if device is not None else getattr(a, "device", None))
    if model.info.fallback:
        say(model.info.notice)
    return model, tok


def emit(a, report: dict, lines) -> int:
    """Print the report as JSON (--json) or the human-readable lines."""
    if a.json:
        print(json.dumps(report))
    else:
        for line in lines(report) if callable(lines) else lines:
            print(line)
    return 0


def summary_line(report: dict) -> str:
    """"steps 40, loss 0.6931, ...": a flat report on one line, floats to 4 significant digits."""
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in report.items())


def read_start(start: str) -> str:
    """The text itself, or the contents of the file named by FILE:path."""
    if start.startswith("FILE:"):
        with open(start[5:], "r", encoding="utf-8") as f:
            return f.read()
    return start


# ---- options shared by several commands ---------------------------------------------------------------------------
def add_json(p) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")


def add_budget(p) -> None:
    """--budget: refuse a run over the server's per-run limits before it starts (see the module's docstring)."""
    p.add_argument("--budget", action="store_true",
                   help="apply the server's per-run limits ($TINYGPT_RUN_MEMORY_GB, $TINYGPT_RUN_MINUTES; default 2 GB "
                        "and 10 minutes) and refuse a run over them before it starts (exit code 2); without it the "
                        "command is not limited and --json only reports the estimate")


def budget_report(a, estimate) -> dict | None:
    """The run's budget, checked before any work: `estimate` is a tinygpt.budget.Estimate or a function making one
    (called only when needed: --json or --budget; estimating calibrates this machine's speed once, ~1 s).
    --budget: limits_from_env(), and a run over them raises CliError with the one-sentence refusal (exit code 2).
    Returns Estimate.as_dict(limits) for the --json report (limits unlimited without --budget), else None."""
    from .. import budget

    asked = bool(getattr(a, "budget", False))
    if not asked and not getattr(a, "json", False):
        return None
    est = estimate() if callable(estimate) else estimate
    limits = budget.limits_from_env() if asked else budget.Limits.unlimited()
    if asked:
        try:
            budget.check(est, limits)
        except budget.BudgetError as e:
            raise CliError(str(e)) from None
        say(f"budget: about {est.memory} and {est.time}, within {budget.human_bytes(limits.run_memory_bytes)} and "
            f"{budget.human_seconds(limits.run_seconds)} per run")
    return est.as_dict(limits)


def with_budget(report: dict, budget: dict | None) -> dict:
    """The report with "budget" added (when budget_report gave one)."""
    return report if budget is None else {**report, "budget": budget}


def add_seed(p, default=COMMON["seed"], **kw) -> None:
    p.add_argument("--seed", type=int, default=default, **kw)


def add_dtype(p, choices=NAMES, default=COMMON["dtype"], flag: str = "--dtype", **kw) -> None:
    """A dtype by name (tinygpt.dtypes): fp32, fp16, bf16 or a subset."""
    p.add_argument(flag, choices=list(choices), default=default, **kw)


def add_device(p) -> None:
    """--device: where the command loads, trains, samples and measures (tinygpt.device.pick_device)."""
    p.add_argument("--device", default=COMMON["device"],
                   help="auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:N or mps (default: $TINYGPT_DEVICE, "
                        "else auto)")


def device_of(a):
    """The torch.device of --device (checked: an unknown or missing device is one line, exit code 2)."""
    from ..device import pick_device

    try:
        return pick_device(getattr(a, "device", None))
    except ValueError as e:
        raise CliError(str(e)) from None


def model_options(model: str = COMMON["model"]) -> Parser:
    """The options every model command shares: --model, --hub-timeout, --device, --json."""
    p = Parser(add_help=False)
    p.add_argument("--model", default=model,
                   help="gpt2, gpt2-medium, gpt2-large, gpt2-xl, tiny-shakespeare, or a checkpoint directory")
    p.add_argument("--hub-timeout", type=float, default=COMMON["hub_timeout"],
                   help="seconds to wait for the Hub before falling back")
    add_device(p)
    add_json(p)
    return p
