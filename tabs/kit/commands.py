"""The command line behind a run: a tab's settings as `python -m tinygpt ...` lines (same seed, same model, same
numbers), shell-quoted, and the text shown when a tab has no such line or its settings are invalid."""
from __future__ import annotations

import shlex
from typing import Callable

from .links import encode_value


def cli(subcommand: str, **options) -> str:
    """`python -m tinygpt SUBCOMMAND --opt value ...`, shell-quoted. None/False options are left out, True is a
    bare flag; a value starting with "-" is written --opt=value so argparse does not read it as an option."""
    args = ["python", "-m", "tinygpt", subcommand]
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.rstrip("_").replace("_", "-")
        if value is True:
            args.append(flag)
            continue
        text = encode_value(value) if not isinstance(value, float) else format(value, ".12g")
        args += [f"{flag}={text}"] if text.startswith("-") else [flag, text]
    return shlex.join(args)


def cli_python(code: str) -> str:
    """`python -c CODE`, shell-quoted (a preparation step before a tinygpt command)."""
    return shlex.join(["python", "-c", code])


def command_text(command: Callable | None, values: dict) -> str:
    """What a tab's command box shows for these settings: its command(values), or why there is none."""
    if command is None:
        return "(no command-line equivalent for this tab)"
    try:
        cmd = command(values)
    except ValueError as e:  # the same check the run would fail: say it in one line
        return f"# {str(e).strip().splitlines()[0] if str(e).strip() else 'invalid settings'}"
    return cmd or "(no command-line equivalent for this view)"
