"""The bad-input matrix over every api_name and every parameter, through the HTTP API a visitor can script.

The endpoints and their parameters come from the Blocks' dependencies (cross-checked with gradio_client's
view_api). Each parameter in turn gets every bad value of its kind (type-wrong, NaN/inf, extremes, empty, 1 MB
strings, lone surrogates, control characters, foreign file paths) while the others keep their start-up values;
each reply must be a success or one plain sentence: one line, no server path, no traceback words, no handler or
Gradio component names. A run that starts (its first update arrives) counts as a success and is cancelled.
"""
import json
import math
import os
import re
import tempfile
import time
import uuid

import gradio as gr
import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MATRIX_VISITORS = 4  # endpoints probed at the same time
MB_TEXT = "x" * 1_000_000
SURROGATE = "dog\ud800cat"
FILE_META = {"_type": "gradio.FileData"}

NUMBER_CASES = {"text": "many", "empty": "", "none": None, "nan": math.nan, "inf": math.inf, "-inf": -math.inf,
                "list": [1, 2], "nested list": [[[1]]], "object": {"a": 1}, "bool": True, "large": 1e30, "huge": 1e308,
                "-huge": -1e308, "zero": 0, "negative": -1, "1 MB": MB_TEXT, "surrogate": SURROGATE}
TEXT_CASES = {"empty": "", "none": None, "1 MB": MB_TEXT, "surrogate": SURROGATE, "control": "a\x00b\x07c\x1b[2J",
              "number": 12345, "nan": math.nan, "list": ["a", "b"], "object": {"a": 1},
              "nested JSON": "[" * 10_000 + "]" * 10_000}
CHOICE_CASES = {"empty": "", "none": None, "unknown": "no-such-choice", "list": ["a"], "object": {"a": 1},
                "number": 3, "surrogate": SURROGATE, "1 MB": MB_TEXT, "bool": False}
CHECKBOX_CASES = {"text": "yes", "none": None, "number": 2, "list": [True], "nan": math.nan}
GROUP_CASES = {"empty": "", "none": None, "unknown": ["no-such-choice"], "text": "full", "nested": [[1]],
               "object": {"a": 1}, "surrogate": [SURROGATE]}
FILE_CASES = {"relative": {"path": "app.py", "meta": FILE_META}, "outside": {"path": "/etc/passwd", "meta": FILE_META},
              "traversal": {"path": "../../../../etc/passwd", "meta": FILE_META},
              "url": {"path": "http://127.0.0.1:9/pairs.jsonl", "meta": FILE_META},
              "string": "pairs.jsonl", "number": 7, "list": [{"path": "/etc/hosts", "meta": FILE_META}],
              "no path": {"meta": FILE_META}}


def cases_for(block) -> dict:
    if isinstance(block, (gr.Slider, gr.Number)):
        return NUMBER_CASES
    if isinstance(block, gr.Checkbox):
        return CHECKBOX_CASES
    if isinstance(block, gr.CheckboxGroup):
        return GROUP_CASES
    if isinstance(block, (gr.Dropdown, gr.Radio)):
        return CHOICE_CASES
    if isinstance(block, gr.File):
        return FILE_CASES
    return TEXT_CASES


def endpoints(demo) -> dict:
    """api_name -> BlockFunction, every endpoint the API offers."""
    return {fn.api_name: fn for fn in demo.fns.values() if fn.api_name and fn.api_visibility != "private"}


ESSAY = ("The lighthouse keeper wrote every evening about the weather, the ships and the gulls. "
         "Some nights the fog was so thick that the lamp seemed to float in the air. ") * 30
# The runs' start-up values made small, so that a call whose bad value is accepted starts (and is cancelled) fast
SMALL = {
    "dpo": {"Synthetic pairs": 4, "β, run B (0 = no second run)": 0, "Steps": 1, "Pairs per step": 1},
    "rlhf": {"SFT steps": 10, "Reward-model steps": 5, "PPO steps": 1},
    "rlhf_ppo": {"PPO steps": 1},
    "train": {"Corpus": "Python docs (offline, built-in)", "Layers": 1, "Heads": 1, "d_model": 16, "Context": 16,
              "Steps": 10, "Batch size": 1, "Sample length": 50},
    "finetune": {"Cleaned text (used for training; you can edit it)": ESSAY, "Prompt (a phrase from your text)":
                 "The lighthouse", "Steps": 1, "Context (tokens)": 16, "Batch size": 1, "Sample length (tokens)": 10},
    "finetune_prepare": {"…or paste text": ESSAY},
    "scaling": {"Corpus": "Python docs (offline, built-in)", "Model sizes (layers x heads x d_model)": "1x1x8",
                "Size-sweep steps per model": 10, "Compute budgets C (FLOPs)": "1.5e+10",
                "Shortest budget run (steps)": 10, "Longest budget run (steps)": 20},
    "gqa_uptrain": {"Steps": 1},
    "gqa": {"Sequence lengths": "32"},
    "flash_benchmark": {"Methods": ["sdpa"], "Head size": 8},
    "profile": {"Sequence lengths": "32", "Repeats (median; 2 warm-up runs excluded)": 1},
    "prune": {"Configurations": ["full"], "Max new tokens": 5},
    "sample": {"Max new tokens": 4},
    "kv_cache": {"Tokens to time": 8},
}
SMALL["scaling_estimate"] = SMALL["scaling"]


def start_values(demo, fn, tiny_dir) -> list:
    """The inputs' start-up values, as the page would send them (the model pickers on the tiny test model, the
    runs made small: SMALL)."""
    config = {c["id"]: c.get("props", {}) for c in demo.get_config_file()["components"]}
    small = SMALL.get(fn.api_name, {})
    out = []
    for block in fn.inputs:
        label = getattr(block, "label", None)
        value = small.get(label, config.get(block._id, {}).get("value"))
        if isinstance(block, gr.Dropdown) and label == "Model":
            value = tiny_dir
        out.append(value)
    return out


def call(url, fn_index, data, session=None, timeout=120.0) -> tuple[str, str]:
    """One event through the queue, as a script would send it -> ("ok" | "error" | "http", message). A run whose
    first update arrives is a success: it is cancelled there. One session may serve many calls (one at a time)."""
    try:
        return _call(url, fn_index, data, session or uuid.uuid4().hex[:12], timeout)
    except httpx.TimeoutException:
        return "http", f"no answer within {timeout:.0f} s"


def _call(url, fn_index, data, session, timeout):
    body = json.dumps({"fn_index": fn_index, "data": data, "session_hash": session, "event_data": None,
                       "trigger_id": None})  # NaN and Infinity as Python's json writes them
    with httpx.Client(timeout=timeout) as c:
        r = c.post(url + "gradio_api/queue/join", content=body, headers={"Content-Type": "application/json"})
        if r.status_code != 200:
            return "http", f"{r.status_code} {r.text[:300]}"
        event_id = r.json()["event_id"]
        with c.stream("GET", url + "gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                kind = msg.get("msg")
                if kind == "process_generating" and msg.get("success"):
                    c.post(url + "gradio_api/cancel", json={"session_hash": session, "fn_index": fn_index,
                                                           "event_id": event_id})
                    return "ok", "started"
                if kind == "process_completed":
                    if msg.get("success"):
                        return "ok", "done"
                    return "error", (msg.get("output") or {}).get("error") or ""
                if kind == "unexpected_error":
                    return "error", msg.get("message") or ""
    return "http", "the event's stream ended without an answer"


TRACEBACK_WORDS = ("Traceback", "Error:", 'File "', "preprocess", "component", "Could not", "handler", "fn_index",
                   "(type:", "<class")
LINE_N = re.compile(r",? line \d+")


def plain(message: str, handler_names: set) -> str | None:
    """Why `message` is not one plain sentence (None when it is)."""
    if not message.strip():
        return "empty"
    if "\n" in message.strip() or len(message) > 500:
        return "not one line"
    for w in TRACEBACK_WORDS:
        if w in message:
            return f"says {w!r}"
    if LINE_N.search(message):
        return "names a source line"
    for p in {os.getcwd(), ROOT, tempfile.gettempdir(), os.path.expanduser("~"), "/etc/", "site-packages"}:
        if p and p != "/" and p in message:
            return f"names the server path {p}"
    if re.search(r"(?<![\w.:])/[\w.-]+/[\w.-]+/", message):
        return "names a path"
    words = set(re.findall(r"[A-Za-z_][\w]*", message))
    named = sorted(n for n in handler_names & words)
    if named:
        return f"names {named}"
    return None


def handler_names(demo) -> set:
    names = {"preprocess", "postprocess"}
    for fn in demo.fns.values():
        for n in (fn.name, getattr(fn.fn, "__name__", None)):
            if n and "_" in n.strip("_"):
                names.add(n)
    return names


def test_every_api_name_is_covered(app):
    """The matrix covers what gradio_client sees: every named endpoint (26 today)."""
    from gradio_client import Client

    demo, url = app
    seen = set(Client(url, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert seen == {"/" + name for name in endpoints(demo)}
    assert len(seen) >= 26


def matrix(demo, tiny_dir):
    for name, fn in sorted(endpoints(demo).items()):
        base = start_values(demo, fn, tiny_dir)
        for i, block in enumerate(fn.inputs):
            for case, value in cases_for(block).items():
                data = list(base)
                data[i] = value
                yield name, fn, i, block, case, data


def test_bad_input_matrix_every_endpoint_every_parameter(app, tiny_dir):
    """Each endpoint is one visitor sending its cases one at a time; MATRIX_VISITORS endpoints go at once (most
    replies are refusals: the time is the round trips, which overlap)."""
    from concurrent.futures import ThreadPoolExecutor

    demo, url = app
    names = handler_names(demo)
    by_endpoint: dict = {}
    for name, fn, i, block, case, data in matrix(demo, tiny_dir):
        by_endpoint.setdefault(name, []).append((fn, i, block, case, data))

    def visitor(name):
        replies = []
        for fn, i, block, case, data in by_endpoint[name]:
            kind, message = call(url, fn._id, data, f"matrix-{name}")  # one visitor per endpoint, a call at a time
            replies.append((name, i, getattr(block, "label", None) or type(block).__name__, case, kind, message))
        return replies

    failures, counts, t0 = [], {"ok": 0, "error": 0}, time.perf_counter()
    with ThreadPoolExecutor(MATRIX_VISITORS) as pool:
        replies = [r for rs in pool.map(visitor, sorted(by_endpoint)) for r in rs]
    for name, i, label, case, kind, message in replies:
        if kind == "http":
            failures.append(f"/{name} [{i}] {label} <- {case}: HTTP {message}")
            continue
        counts[kind] += 1
        if kind == "error":
            why = plain(message, names)
            if why:
                failures.append(f"/{name} [{i}] {label} <- {case}: {why}: {message[:200]!r}")
    total = len(replies)
    print(f"{total} calls ({counts}) in {time.perf_counter() - t0:.0f} s")
    assert not failures, f"{len(failures)} of {total}:\n" + "\n".join(failures[:60])
    assert total >= 1500
    kind, _ = call(url, endpoints(demo)["sample"]._id, start_values(demo, endpoints(demo)["sample"], tiny_dir))
    assert kind == "ok"  # the app still answers a normal request afterwards
