"""The class benchmark (`python benchmarks/load_test.py --course-map`): a room of students on one server, pressing
course-map rows at once, with the room's run sharing off (TINYGPT_SHARING=0: every request computes alone) and on.

Each student first opens the page (a gradio_client Client that runs the page's load events, as a browser does
long before the lecturer says "go"); then everyone acts at the same moment. "Time to a visible answer":
  * a recorded row (assets/recordings, python -m tinygpt record-course-map): the course map's "Recorded answer"
    opened (its HTML sent by the server) and its figures fetched;
  * a live row: the row's run pressed (the tab's run button, its start-up values overlaid with the row's settings,
    through the API) until its final result;
  * an instant row (calculator, sampling, embeddings, attention, positions, pruning): its tab's main action.
Rounds, per mode:
  (a-recorded) N students open the same recorded row;
  (a-live)     one student runs the live row alone (seed S + 1), then N students press it at once (seed S + 2: a
               key nobody computed yet); computations = "[room] computing" lines in the server's log;
  (b)          N students each open a random row (seeded), recorded answers for the heavy rows.
Rounds run in the order a-recorded, b, a-live (sharing off leaves its unserved live runs queued on the server).
Sharing off serves N live runs one after another: the round stops at --off-cap seconds and reports how many
students had their answer by then.

    python benchmarks/load_test.py --course-map [--students 40] [--live-row train-mask] [--modes off,on]
                                   [--off-cap 300] [--seed 7]
"""
from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))


def _rows():
    """(demo, {row id or index: Entry}, recordings module): the app built in this process, for the rows, their
    tabs' inputs and the course map's event ids (the server builds the same app: same ids)."""
    sys.path.insert(0, ROOT) if ROOT not in sys.path else None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tabs.kit import recordings

    demo = recordings.build_app()
    return demo, recordings.app_rows(demo), recordings


def _expand_fn(demo, row_id: str):
    """fn id of the course map's "Recorded answer" accordion of this row (its expand event)."""
    import gradio as gr

    acc = next((b for b in demo.blocks.values() if isinstance(b, gr.Accordion) and b.elem_id == f"map-rec-{row_id}"),
               None)
    if acc is None:
        return None
    return next((fn._id for fn in demo.fns.values() if [acc._id, "expand"] in [list(t) for t in fn.targets]), None)


def _api_args(demo, entry, recordings, seed=None) -> tuple[str, list]:
    """(api name, inputs) of the row's run: the tab's start-up values overlaid with the row's settings."""
    import inspect

    fn = _public_fn(demo, entry, recordings)
    t = demo._tinygpt_share.tabs[entry.tab]
    values = {**t.defaults, **entry.settings}
    if seed is not None and "seed" in t.fields:
        values["seed"] = seed
    by_id = {c._id: k for k, c in t.fields.items()}
    extras = recordings.extra_inputs(entry)
    params = list(inspect.signature(fn.fn).parameters)
    args = []
    for i, comp in enumerate(fn.inputs):
        key = by_id.get(comp._id)
        name = params[i] if i < len(params) else ""
        if key is not None:
            args.append(values[key])
        elif name in extras:
            args.append(extras[name][0])
        else:
            args.append(recordings.jsonable(getattr(comp, "value", None)))
    return "/" + fn.api_name, recordings.jsonable(args)


def _public_fn(demo, entry, recordings):
    """The row's run as the API offers it: the recorder's handler, or the first public event of the tab's run
    buttons (the calculator's button first hides a chart in the page, privately, then computes)."""
    fn = recordings.main_handler(demo, entry)
    if fn.api_name and getattr(fn, "api_visibility", "public") == "public":
        return fn
    t = demo._tinygpt_share.tabs[entry.tab]
    for _, button in t.runs:
        chain = [f for f in demo.fns.values() if [button._id, "click"] in [list(x) for x in f.targets]]
        while chain:  # the click's events, then those chained after them with .then()
            for f in chain:
                if f.api_name and getattr(f, "api_visibility", "public") == "public":
                    return f
            ids = {f._id for f in chain}
            chain = [f for f in demo.fns.values() if getattr(f, "trigger_after", None) in ids]
    raise ValueError(f"the {entry.tab} tab has no public run")


def _post(url, fn_index, session, timeout) -> dict:
    body = json.dumps({"fn_index": fn_index, "data": [], "session_hash": session, "trigger_id": 0})
    req = urllib.request.Request(url + "gradio_api/run/predict", data=body.encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def _recorded(url, fn_index, session, timeout) -> bool:
    """Open a row's recorded answer: its HTML, then every figure it shows."""
    import re

    out = _post(url, fn_index, session, timeout)
    page = json.dumps(out)
    srcs = re.findall(r'src=\\"(/gradio_api/file=[^"\\]+)\\"', page)
    for src in srcs:
        with urllib.request.urlopen(url.rstrip("/") + src, timeout=timeout) as r:
            r.read()
    return "Recorded on" in page and bool(srcs)


def _count_computations(log_path: str) -> int:
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            return sum("[room] computing" in line for line in f)
    except OSError:
        return 0


def _round(url, n, act, timeout, cap=None, label=None) -> dict:
    """n students connect, then act(i, client) at once -> latencies (only those answered within `cap`); label(i)
    names what student i did: the result's "slowest" lists the five slowest answers with it."""
    from load_test import connect, pct

    lat, fails, lock = {}, [], threading.Lock()
    ready = threading.Barrier(n)
    opening = threading.Semaphore(8)

    def student(i):
        try:
            with opening:
                c = connect(url, timeout)
        except Exception as e:  # noqa: BLE001 - counted
            ready.abort()
            with lock:
                fails.append(f"connect: {str(e)[:100]}")
            return
        try:
            ready.wait(timeout=timeout)
        except threading.BrokenBarrierError:
            pass
        t = time.perf_counter()
        try:
            ok = act(i, c)
            dt = time.perf_counter() - t
            with lock:
                if ok is True:
                    lat[i] = dt
                else:
                    fails.append(str(ok)[:120])
        except Exception as e:  # noqa: BLE001 - counted
            with lock:
                fails.append(f"{type(e).__name__}: {str(e)[:120]}")

    threads = [threading.Thread(target=student, args=(i,), daemon=True) for i in range(n)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    deadline = None if cap is None else t0 + cap
    for th in threads:
        th.join(timeout=None if deadline is None else max(0.1, deadline - time.perf_counter()))
    xs = list(lat.values())
    done = len(xs)
    return {"n": n, "ok": done, "failed": len(fails), "fails": fails[:3], "pending": n - done - len(fails),
            "p50": pct(xs, .5), "p95": pct(xs, .95) if done == n else float("inf"), "max": max(xs, default=0.0),
            "wall": time.perf_counter() - t0,
            "slowest": [(round(dt, 1), label(i) if label else i)
                        for i, dt in sorted(lat.items(), key=lambda x: -x[1])[:5]]}


def course_map(a):
    sys.path.insert(0, HERE)
    from machine import cpu_name

    demo, rows, recordings = _rows()
    heavy = {e.id: e for e in rows if e.id}
    recorded = {rid: e for rid, e in heavy.items() if recordings.load(rid)}
    live = heavy[a.live_row]
    rec_row = a.recorded_row or next(iter(recorded), None)
    print(f"CPU: {cpu_name()} · {os.cpu_count()} logical cores · {a.students} students · live row {live.id!r}"
          f" · recorded row {rec_row!r} · {len(recorded)} of {len(heavy)} heavy rows recorded · {len(rows)} rows",
          flush=True)
    rng = random.Random(a.seed)
    picks = [rng.randrange(len(rows)) for _ in range(a.students)]
    table = {}
    for mode in a.modes.split(","):
        table[mode] = run_mode(mode, a, demo, rows, recordings, recorded, live, rec_row, picks)
    print("\n| round | " + " | ".join(f"sharing {m}: p50 / p95 (s), answered, failed, computations" for m in table)
          + " |")
    print("|---|" + "---|" * len(table))
    for name in ("a-recorded", "a-live", "b-random"):
        cells = []
        for m, res in table.items():
            r = res.get(name)
            cells.append("—" if r is None else f"{r['p50']:.1f} / {r['p95']:.1f}, {r['ok']}/{r['n']}, {r['failed']},"
                                               f" {r.get('computations', '—')}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| lone live run | " + " | ".join(f"{res['lone']['seconds']:.1f} s" for res in table.values()) + " |")
    on = table.get("on")
    if on:
        print(f"goals: (a) recorded p95 {on['a-recorded']['p95']:.1f} s (≤ 5), live p95 ÷ lone"
              f" {on['a-live']['p95'] / on['lone']['seconds']:.2f} (≤ 1.5), computations {on['a-live']['computations']}"
              f" (1); (b) p95 {on['b-random']['p95']:.1f} s (≤ 10)")


def run_mode(mode, a, demo, rows, recordings, recorded, live, rec_row, picks) -> dict:
    """One server (sharing off or on) and its three rounds -> {round: result}."""
    from load_test import connect, start_server

    log_path = os.path.join(tempfile.gettempdir(), f"tinygpt_load_test_{mode}.log")
    proc, url, cold = start_server({"TINYGPT_SHARING": "0" if mode == "off" else "1"}, log_path=log_path)
    cap = a.off_cap if mode == "off" else None
    try:
        print(f"[{mode}] sharing {mode}: server up in {cold:.1f} s", flush=True)
        res = {}
        if rec_row:
            fid = _expand_fn(demo, rec_row)
            res["a-recorded"] = _round(url, a.students, lambda i, c: _recorded(url, fid, c.session_hash, a.timeout),
                                       a.timeout)

        def one(i, c):
            e = rows[picks[i]]
            if e.id in recorded:
                return _recorded(url, _expand_fn(demo, e.id), c.session_hash, a.timeout) or "no recording"
            api_, args_ = _api_args(demo, e, recordings)  # an instant row (or a heavy one not recorded: live)
            return True if c.predict(*args_, api_name=api_) is not None else "empty answer"

        res["b-random"] = _round(url, a.students, one, a.timeout,
                                 label=lambda i: rows[picks[i]].id or f"{rows[picks[i]].tab} (instant)")
        api, args = _api_args(demo, live, recordings, seed=a.seed + 1)
        c0 = _count_computations(log_path)
        t = time.perf_counter()
        connect(url, a.timeout).predict(*args, api_name=api)
        lone = time.perf_counter() - t
        res["lone"] = {"seconds": lone, "computations": _count_computations(log_path) - c0}
        print(f"[{mode}] {live.id} alone: {lone:.1f} s", flush=True)
        api2, args2 = _api_args(demo, live, recordings, seed=a.seed + 2)  # a key nobody computed yet
        c0 = _count_computations(log_path)
        r = _round(url, a.students, lambda i, c: bool(c.predict(*args2, api_name=api2)) or "empty answer",
                   a.timeout, cap=cap)
        r["computations"] = _count_computations(log_path) - c0
        res["a-live"] = r
        for name in ("a-recorded", "a-live", "b-random"):
            r = res.get(name)
            if r:
                extra = f", computations {r['computations']}" if "computations" in r else ""
                pend = f", not answered within {cap:.0f} s: {r['pending']}" if r["pending"] else ""
                print(f"[{mode}] {name}: ok {r['ok']}/{r['n']}, failed {r['failed']}{pend}, p50 {r['p50']:.1f} s,"
                      f" p95 {r['p95']:.2f} s, max {r['max']:.2f} s{extra}", flush=True)
                for f in r["fails"]:
                    print("    failure:", f)
                if name == "b-random":
                    print(f"    slowest answers (s, row): {r['slowest']}", flush=True)
        return res
    finally:
        proc.terminate()
        proc.wait(timeout=60)
