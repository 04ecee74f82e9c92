"""Memory per visitor: many fresh sessions, one small sample each, and the server's resident memory (RSS).

Starts `python app.py` offline on 127.0.0.1 with the embedded model, then runs visitors the way a browser does:
each opens the page (GET /config, the heartbeat stream, the page's load events in its own session), presses
Generate once (/sample: 1 sample, a few new tokens, through the queue) and closes the page (the heartbeat stream
ends: Gradio runs the app's unload event). Prints the server's RSS before and after, the growth per session, and
the RSS after each further round (flat when nothing is kept per visitor).

    python benchmarks/bench_sessions.py [--sessions 1000] [--rounds 3] [--round-size 200] [--parallel 8]
    python benchmarks/bench_sessions.py --root DIR   # serve another checkout (e.g. `git archive` of an older commit)
    python benchmarks/bench_sessions.py --keep-open  # visitors that never close the page (API scripts): released
                                                     # by the idle sweep (TINYGPT_SESSION_IDLE_S, shortened here)

Goal: at most 100 MB added for 1,000 sessions (100 kB each) and a flat RSS over repeated rounds.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOAL_BYTES_PER_SESSION = 100_000  # 100 MB for 1,000 sessions


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def start_server(root: str, env: dict | None = None, log_path: str | None = None):
    """`python app.py` in `root` on a free loopback port -> (process, url). log_path: its output goes there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
               TINYGPT_MODEL="tiny-shakespeare", **(env or {}))
    out = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115 - the server's lifetime
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=root, env=dict(env, PYTHONUNBUFFERED="1"), stdout=out,
                            stderr=subprocess.STDOUT if log_path else subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    import httpx

    for _ in range(600):
        try:
            httpx.get(url + "config", timeout=2).raise_for_status()
            return proc, url
        except Exception:  # noqa: BLE001 - not up yet
            if proc.poll() is not None:
                raise SystemExit("the server exited") from None
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not start")


class Page:
    """What a browser learns from /config once: the load events to run and the fn index of an api_name."""

    def __init__(self, url: str):
        import httpx

        config = httpx.get(url + "config", timeout=60).json()
        deps = config["dependencies"]
        values = {c["id"]: (c.get("props") or {}).get("value") for c in config["components"]}
        self.url = url
        # the page's load events and the events chained after them with .then(), in order, each with the inputs'
        # start-up values as the browser sends them
        chain = [d for d in deps if any(t[1] == "load" for t in d["targets"])]
        ids = {d["id"] for d in chain}
        for d in deps:
            if d.get("trigger_after") in ids:
                chain.append(d)
                ids.add(d["id"])
        # (a step that only runs JavaScript in the browser, e.g. a scroll, has no server function: skipped)
        self.load_fns = [(d["id"], bool(d.get("queue")), [values.get(i) for i in d["inputs"]]) for d in chain
                         if d.get("backend_fn", True)]
        self.fn = {d["api_name"]: d["id"] for d in deps if d.get("api_name")}


def queued(client, page: Page, session: str, fn: int, data: list, timeout: float) -> dict:
    """One queued event as the browser sends it (queue/join, then the session's SSE stream) -> the final message."""
    r = client.post(page.url + "gradio_api/queue/join",
                    json={"fn_index": fn, "data": data, "session_hash": session, "event_data": None,
                          "trigger_id": None}, timeout=timeout)
    r.raise_for_status()
    with client.stream("GET", page.url + "gradio_api/queue/data", params={"session_hash": session},
                       timeout=timeout) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    return msg
    raise RuntimeError("the event's stream ended without a result")


def visit(page: Page, i: int, tokens: int = 4, close: bool = True, timeout: float = 120.0,
          model: str = "tiny-shakespeare") -> bool:
    """One visitor: open the page in a fresh session, sample once, close the page. True when the sample came back
    starting with this visitor's prompt."""
    import httpx

    session = uuid.uuid4().hex[:11]
    with httpx.Client(timeout=timeout) as client:
        client.get(page.url + "config").raise_for_status()
        heartbeat = client.stream("GET", page.url + f"gradio_api/heartbeat/{session}") if close else None
        if heartbeat is not None:
            heartbeat.__enter__()  # the page's open connection: Gradio's unload runs when it closes
        try:
            for fn, in_queue, data in page.load_fns:
                if in_queue:
                    queued(client, page, session, fn, data, timeout)
                else:
                    client.post(page.url + "gradio_api/run/predict",
                                json={"fn_index": fn, "data": data, "session_hash": session, "trigger_id": None}
                                ).raise_for_status()
            prompt = f"Visitor {i} writes:"
            msg = queued(client, page, session, page.fn["sample"],
                         [model, False, prompt, 1, tokens, 0.8, 50, 1.0, i], timeout)
            out = msg.get("output") or {}
            data = out.get("data") or [None, {}]
            samples = (data[1] or {}).get("samples") or [""]
            return bool(msg.get("success")) and samples[0].startswith(prompt)
        finally:
            if heartbeat is not None:
                heartbeat.__exit__(None, None, None)


def crowd(page: Page, n: int, start: int, parallel: int, tokens: int, close: bool = True,
          model: str = "tiny-shakespeare") -> int:
    """n visitors, `parallel` at a time -> how many got their sample."""
    with ThreadPoolExecutor(parallel) as pool:
        return sum(pool.map(lambda i: visit(page, i, tokens, close, model=model), range(start, start + n)))


def settle(pid: int, seconds: float = 3.0) -> int:
    """Let the unload events and frees finish, then the RSS."""
    time.sleep(seconds)
    return rss_bytes(pid)


def mib(b: float) -> str:
    return f"{b / 2 ** 20:,.1f} MiB"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=50, help="sessions before the first RSS reading")
    ap.add_argument("--rounds", type=int, default=3, help="further rounds after the main one (flat RSS)")
    ap.add_argument("--round-size", type=int, default=200)
    ap.add_argument("--parallel", type=int, default=8, help="visitors at once")
    ap.add_argument("--tokens", type=int, default=4)
    ap.add_argument("--root", default=ROOT, help="the checkout whose app.py is served")
    ap.add_argument("--keep-open", action="store_true",
                    help="visitors never close the page; the server's idle sweep (TINYGPT_SESSION_IDLE_S=20 here)"
                         " releases them")
    a = ap.parse_args()
    print(describe())
    env = {"TINYGPT_SESSION_IDLE_S": "20"} if a.keep_open else {}
    proc, url = start_server(os.path.abspath(a.root), env)
    try:
        page = Page(url)
        close = not a.keep_open
        wait = 45.0 if a.keep_open else 3.0
        print(f"served {a.root} at {url}; each visitor: /config, heartbeat, {len(page.load_fns)} load event(s)"
              f" and their .then()s, one /sample (embedded model, 1 x {a.tokens} tokens), then"
              f" {'closes the page' if close else 'stays'}", flush=True)
        ok = crowd(page, a.warmup, 0, a.parallel, a.tokens, close)
        before = settle(proc.pid, wait)
        print(f"after {a.warmup} warm-up sessions ({ok} ok): RSS {mib(before)}", flush=True)
        t0 = time.perf_counter()
        ok = crowd(page, a.sessions, 10_000, a.parallel, a.tokens, close)
        seconds = time.perf_counter() - t0
        after = settle(proc.pid, wait)
        grow = after - before
        print(f"after {a.sessions} fresh sessions ({ok} ok, {seconds:.0f} s): RSS {mib(after)}; added {mib(grow)}"
              f" = {grow / a.sessions / 1024:,.1f} KiB per session (goal: at most"
              f" {GOAL_BYTES_PER_SESSION * a.sessions / 1e6:,.0f} MB, {GOAL_BYTES_PER_SESSION / 1000:.0f} kB per"
              f" session: {'met' if grow <= GOAL_BYTES_PER_SESSION * a.sessions else 'NOT met'})", flush=True)
        readings = [after]
        for r in range(a.rounds):
            ok = crowd(page, a.round_size, 100_000 * (r + 2), a.parallel, a.tokens, close)
            readings.append(settle(proc.pid, wait))
            print(f"round {r + 1}: {a.round_size} more sessions ({ok} ok): RSS {mib(readings[-1])}"
                  f" ({mib(readings[-1] - readings[-2])} vs the previous reading)", flush=True)
        if a.rounds:
            spread = max(readings) - min(readings)
            print(f"RSS over the {a.rounds} rounds after the main one: {mib(min(readings))} .. {mib(max(readings))}"
                  f" (spread {mib(spread)}, {spread / (a.rounds * a.round_size) / 1024:.1f} KiB per session)")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    threading.excepthook = lambda args: None  # a visitor thread's network error is counted, not printed
    main()
