"""Recorded answers of the course map's heavy rows (train, fine-tune, DPO, RLHF, scaling, efficiency): each row's
default run, made once by `python -m tinygpt record-course-map` (which runs `python -m tabs.kit.recordings`), shipped
in assets/recordings/ and shown at once under the row; "Run live" opens the tab with the settings filled in.

One code path for every row: build the app (app.build_demo, offline: the embedded model stands in for GPT-2), take
the row's tab's start-up field values overlaid with the row's settings, call the handler of the tab's run button
(the row's section's button when it has one) as Gradio would, drain it, and keep its last output: a matplotlib
Figure becomes a PNG (plus its curves as numbers), text stays text, a table becomes lists.

`assets/recordings/<row id>.json` holds the question, the tab, the full settings, the outputs, the date, the CPU,
torch's version, the commit, `code` (runs.code_version(): all sources) and `fingerprint`: a hash of only the files
that decide the result (the tab's own sources and the tinygpt modules they import, directly or not; never the other
tabs, tabs.kit or the command line), with `fingerprint_files` naming them ({file: its own hash}).
tests/test_recordings.py fails when a row's settings or those files changed since it was recorded.

This module makes the recordings (and is the command); two others hold the rest, and their names are re-exported
here (`recordings.load`, `recordings.render`, `recordings.fingerprint_files`, ...):

    recordings_view.py         a recording loaded and shown under its course-map row (what the running app needs)
    recordings_fingerprint.py  which files decide a row's result, and their hashes

Nothing here imports a tab at module level (the kit imports no tab): the app is built by app.build_demo inside
record().
"""
from __future__ import annotations

import argparse
import datetime as dt
import inspect
import io
import json
import math
import os
import re
import subprocess
import sys
import time
import types

from .recordings_fingerprint import TAB_SOURCES, file_hashes, fingerprint, fingerprint_files  # noqa: F401
from .recordings_view import (  # noqa: F401 - re-exported: the course map and the tests use `recordings.load`, ...
    RECORDINGS,
    ROOT,
    file_url,
    is_title,
    label_line,
    load,
    path_of,
    render,
    serve,
)

HEAVY_TABS = ("train", "finetune", "dpo", "rlhf", "scaling", "efficiency")
# timings of this machine: shown, never compared with a re-run
MEASURED_TABS = ("efficiency",)
DPI = 72  # PNG resolution: a 10x4 inch figure is 720x288 pixels, a few tens of KB
MAX_POINTS = 400  # points kept per curve in the JSON (evenly spaced, the last one always kept)
FINETUNE_TEXT_CHARS = 10_000  # the row asks for an essay of 5,000-15,000 characters: the built-in Python docs' start
RECORDER_LIMITS = {"TINYGPT_RUN_MINUTES": "180", "TINYGPT_RUN_MEMORY_GB": "8"}  # tinygpt.budget's, for the recorder


def heavy_rows(entries) -> list:
    """The course map's rows (tabs.coursemap.ENTRIES, or those a built app registered: app_rows) whose tab trains
    or measures (HEAVY_TABS), each with an id."""
    rows = [e for e in entries if e.tab in HEAVY_TABS]
    missing = [e.question for e in rows if not e.id]
    if missing:
        raise ValueError(f"course-map row without an id: {missing[0]!r}")
    return rows


# ---- running a row ---------------------------------------------------------------------------------------------
def build_app(models=None):
    """The app as app.py builds it (no batching: every request decodes alone, as on a quiet Space)."""
    sys.path.insert(0, ROOT) if ROOT not in sys.path else None
    from app import build_demo  # noqa: PLC0415 - app.py imports the kit: only at run time

    from tinygpt import ModelCache

    return build_demo(models or ModelCache(hub_timeout=2.0), default_model="gpt2", batchers=None)


def app_rows(demo) -> list:
    """The course map's rows as the built app registered them (the kit imports no tab: not tabs.coursemap)."""
    return [row for row in demo._tinygpt_share.course_rows]


def settings_for(demo, entry) -> dict:
    """The row's tab's start-up field values overlaid with the row's settings (section included)."""
    t = demo._tinygpt_share.tabs[entry.tab]
    return jsonable({**t.defaults, **entry.settings})


def main_handler(demo, entry):
    """The BlockFunction of the button that runs the row: the row's section's button, else the tab's first."""
    t = demo._tinygpt_share.tabs[entry.tab]
    section = entry.settings.get("section")
    buttons = [b for s, b in t.runs if s == section] or [b for _, b in t.runs]
    # a tab with several buttons (Fine-tune: prepare, then fine-tune): the one whose handler streams (the run)
    fns = [fn for b in buttons for fn in demo.fns.values() if (b._id, "click") in [tuple(x) for x in fn.targets]]
    streaming = [fn for fn in fns if inspect.isgeneratorfunction(_unwrap(fn.fn))]
    if not (streaming or fns):
        raise ValueError(f"the {entry.tab} tab has no run button")
    return (streaming or fns)[0]


def _unwrap(fn):
    while hasattr(fn, "func"):
        fn = fn.func
    return inspect.unwrap(fn)


def extra_inputs(entry) -> dict:
    """Inputs a row's run needs that are not link fields (and so not settings): the Fine-tune row's essay."""
    if entry.tab == "finetune":
        from tinygpt.data import python_docs

        return {"text": (python_docs(FINETUNE_TEXT_CHARS),
                         f"the built-in Python-docs corpus' first {FINETUNE_TEXT_CHARS:,} characters")}
    return {}


class _Request(types.SimpleNamespace):
    def __init__(self):
        super().__init__(session_hash="course-map-recorder", query_params={}, headers={}, client=None)


def call(demo, entry) -> tuple[list, list, dict]:
    """Run the row's handler as the page would -> (components, last output values, notes about extra inputs)."""
    fn = main_handler(demo, entry)
    t = demo._tinygpt_share.tabs[entry.tab]
    values = {**t.defaults, **entry.settings}
    by_id = {c._id: k for k, c in t.fields.items()}
    extras, used = extra_inputs(entry), {}
    args = []
    params = list(inspect.signature(fn.fn).parameters)
    for i, comp in enumerate(fn.inputs):
        key = by_id.get(comp._id)
        if key is not None:
            args.append(values[key])
            continue
        name = params[i] if i < len(params) else ""
        if name in extras:
            args.append(extras[name][0])
            used[name] = extras[name][1]
        else:
            args.append(getattr(comp, "value", None))
    kwargs = {}
    sig = inspect.signature(fn.fn).parameters
    if "request" in sig:
        kwargs["request"] = _Request()
    if "progress" in sig:
        kwargs["progress"] = lambda *a, **k: None
    out = fn.fn(*args, **kwargs)
    if inspect.isgenerator(out):
        last = None
        for last in out:
            pass
        out = last
    out = list(out) if isinstance(out, (tuple, list)) and len(fn.outputs) > 1 else [out]
    return list(fn.outputs), out, used


# ---- outputs -> JSON + PNG ---------------------------------------------------------------------------------------
def jsonable(v):
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            return jsonable(v.item())
        except (ValueError, TypeError):
            pass
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def _thin(xs: list) -> list:
    if len(xs) <= MAX_POINTS:
        return xs
    step = (len(xs) - 1) / (MAX_POINTS - 1)
    return [xs[round(i * step)] for i in range(MAX_POINTS)]


def figure_curves(fig) -> list:
    """Every line of a matplotlib Figure: its axes' title, the line's label and its points (thinned)."""
    out = []
    for k, ax in enumerate(fig.axes):
        for line in ax.get_lines():
            label = line.get_label()
            x, y = list(map(float, line.get_xdata())), list(map(float, line.get_ydata()))
            if not y or label.startswith("_child") and len(y) < 3:
                continue
            idx = _thin(list(range(len(y))))
            out.append({"axes": ax.get_title() or f"axes {k + 1}", "ylabel": ax.get_ylabel(),
                        "label": "" if label.startswith("_") else label,
                        "x": jsonable([x[i] for i in idx]), "y": jsonable([y[i] for i in idx])})
    return out


def write_png(data: bytes, path: str) -> None:
    """A figure's PNG with a 128-colour palette (a line plot needs no more): a third of the size."""
    try:
        from PIL import Image  # noqa: PLC0415 - matplotlib's own dependency

        img = Image.open(io.BytesIO(data)).convert("RGB").quantize(colors=128)
        img.save(path, format="PNG", optimize=True)
    except ImportError:
        with open(path, "wb") as f:
            f.write(data)


def table_value(value, comp) -> dict | None:
    if hasattr(value, "columns") and hasattr(value, "values"):  # a pandas DataFrame
        return {"headers": [str(c) for c in value.columns], "rows": jsonable(value.values.tolist())}
    if isinstance(value, dict) and "data" in value:
        return {"headers": jsonable(value.get("headers") or []), "rows": jsonable(value["data"])}
    if isinstance(value, (list, tuple)):
        return {"headers": jsonable(list(getattr(comp, "headers", None) or [])), "rows": jsonable(list(value))}
    return None


def convert(row_id: str, comps: list, values: list, out: str) -> list:
    """The handler's outputs -> [{label, kind, ...}]; figures saved as <row id>-<n>.png in `out`."""
    import gradio as gr
    from matplotlib.figure import Figure

    from .exports import figure_of

    items, n = [], 0
    for comp, value in zip(comps, values):
        if isinstance(value, dict) and value.get("__type__") == "update":
            if "value" not in value:
                continue
            value = value["value"]
        if value is None or isinstance(comp, gr.State):
            continue
        label = str(getattr(comp, "label", None) or getattr(comp, "elem_id", None) or type(comp).__name__)
        if isinstance(comp, gr.Plot) and not isinstance(value, Figure):  # a room's shared frame: already encoded
            value = figure_of(value) or value
        if isinstance(value, Figure):
            n += 1
            name = f"{row_id}-{n}.png"
            buf = io.BytesIO()
            value.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
            write_png(buf.getvalue(), os.path.join(out, name))
            items.append({"label": label, "kind": "figure", "png": name, "curves": figure_curves(value)})
        elif isinstance(comp, gr.Dataframe):
            t = table_value(value, comp)
            if t is not None:
                items.append({"label": label, "kind": "table", **t})
        elif isinstance(value, str):
            if value.strip():
                kind = "html" if isinstance(comp, gr.HTML) else "markdown"
                items.append({"label": label, "kind": kind, "text": value})
        else:
            items.append({"label": label, "kind": "json", "value": jsonable(value)})
    return items


def git_commit() -> str:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def record_row(demo, entry, out: str = RECORDINGS) -> dict:
    """Run one heavy row and return its recording (the PNGs are written to `out`; the JSON is not)."""
    import torch

    from tinygpt.device import cpu_name

    from .runs import code_version

    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):  # this row's old figures
        if re.fullmatch(re.escape(entry.id) + r"-\d+\.png", f):
            os.remove(os.path.join(out, f))
    t0 = time.perf_counter()
    comps, values, used = call(demo, entry)
    seconds = time.perf_counter() - t0
    files = fingerprint_files(entry.tab)
    return {"id": entry.id, "question": entry.question, "tab": entry.tab, "settings": settings_for(demo, entry),
            "inputs": used, "outputs": convert(entry.id, comps, values, out),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"), "cpu": cpu_name(),
            "torch": torch.__version__, "python": sys.version.split()[0], "commit": git_commit(),
            "code": code_version(), "fingerprint": fingerprint(files), "fingerprint_files": file_hashes(files),
            "limits": {k: os.environ.get(k) for k in RECORDER_LIMITS},
            "measured": entry.tab in MEASURED_TABS, "seconds": round(seconds, 1)}


def rounded(v, digits: int = 6):
    """Floats to `digits` significant digits (the curves' last digits are float noise, and bytes in the repo)."""
    if isinstance(v, float):
        return float(f"{v:.{digits}g}")
    if isinstance(v, list):
        return [rounded(x, digits) for x in v]
    if isinstance(v, dict):
        return {k: rounded(x, digits) for k, x in v.items()}
    return v


def dumps(rec: dict) -> str:
    """Compact JSON, one line per top-level key and per output (readable in a diff, a few tens of KB a row); the
    outputs' floats rounded."""
    def one(v):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))

    lines = []
    for k, v in rec.items():
        if k == "outputs":  # the settings stay exact (a test compares them with the tab's)
            body = ",\n".join("  " + one(rounded(item)) for item in v)
            lines.append(f" {one(k)}: [\n{body}\n ]")
        else:
            lines.append(f" {one(k)}: {one(v)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def write(rec: dict, out: str = RECORDINGS) -> str:
    path = path_of(rec["id"], out)
    with open(path, "w", encoding="utf-8") as f:
        f.write(dumps(rec))
    return path


def record(rows: list[str] | None = None, out: str = RECORDINGS, log=print) -> list[dict]:
    """Record the named heavy rows (all when None), one after another; each JSON is written as soon as its run
    ends."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # what the offline app does: the embedded model, the Python docs
    # a row is recorded even where a Space's limits would refuse it (FlashAttention at 16,384 tokens needs ~2.6 GB;
    # a busy machine is slow): the limits only gate a run, they never change its result
    for name, value in RECORDER_LIMITS.items():
        os.environ.setdefault(name, value)
    demo = build_app()
    entries = heavy_rows(app_rows(demo))
    known = [e.id for e in entries]
    bad = [r for r in rows or [] if r not in known]
    if bad:
        raise ValueError(f"no heavy course-map row {bad[0]!r}; rows: {', '.join(known)}")
    chosen = [e for e in entries if rows is None or e.id in rows]
    done, failed = [], []
    for e in chosen:
        log(f"recording {e.id} ({e.tab}) ...")
        try:
            rec = record_row(demo, e, out)
        except Exception as err:  # noqa: BLE001 - one row's failure must not lose the others' recordings
            log(f"  {e.id} failed: {type(err).__name__}: {err}")
            failed.append(e.id)
            continue
        write(rec, out)
        log(f"  {e.id}: {rec['seconds']:.1f} s")
        done.append(rec)
    if failed:
        raise RuntimeError(f"not recorded: {', '.join(failed)}")
    return done


# ---- the command ---------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tinygpt record-course-map",
                                description="Record the default run of every heavy course-map row (or --rows) into"
                                            " assets/recordings: numbers, curves (PNG) and samples.")
    p.add_argument("--rows", nargs="+", help="row ids (default: every heavy row)")
    p.add_argument("--out", default=RECORDINGS, help="folder for <row id>.json and its PNGs")
    p.add_argument("--list", action="store_true", help="print the heavy rows' ids and stop")
    a = p.parse_args(argv)
    if a.list:
        for e in heavy_rows(app_rows(build_app())):
            print(f"{e.id}\t{e.tab}\t{e.question}")
        return 0
    rows = [r for x in a.rows or [] for r in x.split(",") if r] or None
    try:
        record(rows, os.path.abspath(a.out), log=lambda m: print(m, flush=True))
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
