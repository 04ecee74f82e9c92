"""Command line: `python -m tinygpt sample|params|train|finetune|eval|embed|attention|profile|scaling|dpo|rlhf ...`.

One module per group of subcommands, each holding its `cmd_*` functions and a `register(sub)` that adds their
parsers: sample.py (sample), params.py (params), train.py (train, finetune, eval), inspect.py (embed, attention),
efficiency.py (profile), beyond.py (scaling, dpo, rlhf), course.py (record-course-map: runs the app's recorder in
a child process). common.py holds what they share (loading, printing, the
common options); every default comes from tinygpt.defaults.

A `cmd_*` function checks the arguments, loads a model through `common.load()` (which prints the offline-fallback
notice), calls into tinygpt, and prints text or, with --json, one JSON object. Heavy imports (torch, the
subpackages) happen inside the commands, so building the parser and `params` stay fast. Every failure is one line
on stderr and a non-zero exit code, never a traceback.
"""
from __future__ import annotations

from . import beyond, course, efficiency, inspect, params, sample, train
from .common import CliError, Parser, say

GROUPS = (sample, params, train, inspect, efficiency, beyond, course)  # the order of the subcommands in --help

__all__ = ["main", "build_parser", "CliError", "Parser"]


def build_parser() -> Parser:
    p = Parser(prog="python -m tinygpt", description="TinyGPT Lab command line")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    for group in GROUPS:
        group.register(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        a = parser.parse_args(argv)
        return a.func(a)
    except (CliError, ValueError, KeyError, FileNotFoundError, OSError, RuntimeError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        say(f"error: {msg}")
        return 2
    except KeyboardInterrupt:
        say("error: interrupted")
        return 130
