"""`python -m tinygpt record-course-map`: record the default run of every heavy course-map row (train, fine-tune,
DPO, RLHF, scaling, efficiency) into assets/recordings, shown at once under each row of the app's course map.

The recorder drives the app's own tabs (tabs/kit/recordings.py), and this package never imports the app: the
command runs `python -m tabs.kit.recordings ...` in a child process from the project root (the folder that holds
both tinygpt/ and tabs/).
"""
from __future__ import annotations

import os
import subprocess
import sys

from .common import CliError

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cmd_record(a) -> int:
    if not os.path.isfile(os.path.join(PROJECT, "tabs", "kit", "recordings.py")):
        raise CliError("record-course-map needs the app's tabs/ folder beside the tinygpt package (run it from a"
                       " clone of the project, not from an installed tinygpt)")
    args = [sys.executable, "-m", "tabs.kit.recordings"]
    if a.rows:
        args += ["--rows", *a.rows]
    if a.out:
        args += ["--out", os.path.abspath(a.out)]
    if a.list:
        args.append("--list")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (PROJECT, os.environ.get("PYTHONPATH")) if p))
    return subprocess.run(args, cwd=PROJECT, env=env).returncode


def register(sub) -> None:
    r = sub.add_parser("record-course-map", help="record the heavy course-map rows' default runs (assets/recordings)")
    r.add_argument("--rows", nargs="+", help="row ids, e.g. dpo-loss train-small (default: every heavy row)")
    r.add_argument("--out", help="folder for <row id>.json and its PNGs (default: assets/recordings)")
    r.add_argument("--list", action="store_true", help="print the heavy rows' ids and stop")
    r.set_defaults(func=cmd_record)
