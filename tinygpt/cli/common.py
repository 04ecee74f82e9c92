"""What every subcommand shares: one-line errors, loading a model, printing text or one JSON object, and the
options several commands take (--model and --hub-timeout, --seed, --dtype, --json), each defined once here.

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
