"""Load test on loopback: N concurrent gradio_client users sampling, plus M fine-tunes queued behind each other.

Starts `python app.py` offline (embedded model) on 127.0.0.1, then runs bounded work only: every client sends
one request, everything has a time limit, and the script stops the server at the end. Reports completed/failed
counts, p50/p95 latency, the largest queue position seen, and checks that nobody received another user's text.

    python benchmarks/load_test.py [--clients 20] [--finetunes 2] [--tokens 30]

The class scenario (--course-map): 40 students press course-map rows at once, the room's run sharing off vs on
(see benchmarks/course_map_load.py).

    python benchmarks/load_test.py --course-map [--students 40] [--live-row train-mask] [--off-cap 300]

The lecture scenario (--lecture): a whole room presses Generate at once. A GPT-2-124M-sized model (random
weights, transformers' GPT2Config() written with save_pretrained) is served by `python app.py` with
TINYGPT_MODEL pointing at it, once with batching off (TINYGPT_BATCHING=0: before) and once with it on (after);
for each N (10, 40, 100) N clients send one /sample request each (1 sample x 40 new tokens, the tab's default
knobs) at the same moment. Prints the CPU, the single-request latency and p50/p95/max per N, before and after.

    python benchmarks/load_test.py --lecture [--sizes 10,40,100] [--tokens 40] [--threads 0]

--actions distribution,prune adds the other short model actions that go through the batcher, crowded the same
way (--other-sizes, default 40): the next-token distribution (/sample_distribution) and Layer pruning (/prune with
full, even and first half).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_server(extra_env: dict | None = None, log_path: str | None = None):
    """`python app.py` offline on a free loopback port -> (process, url, seconds to the first page). log_path: the
    server's output goes there (the class benchmark counts the room's computations in it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
               **(extra_env or {}))
    t0 = time.perf_counter()
    out = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115 - the server's lifetime
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=dict(env, PYTHONUNBUFFERED="1"), stdout=out,
                            stderr=subprocess.STDOUT if log_path else subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url, time.perf_counter() - t0
        except Exception:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not start")


def cpu_seconds(pid=None) -> float:
    """User + system CPU seconds of a process so far (this one by default): the clients run on the same cores as
    the server here, so the report says how much of the machine they took."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


# ---- the lecture scenario ----------------------------------------------------------------------------
def sample_args(model: str, i: int, tokens: int) -> tuple:
    """One student's /sample inputs: 1 sample, the tab's default knobs (T 0.8, top-k 200, top-p 1), own seed."""
    return (model, False, f"Student {i} asks:", 1, tokens, 0.8, 200, 1.0, i)


# The lecture's actions: (api_name, inputs for student i, is the answer this student's?). Each student has their own
# prompt, so no answer can be served from another student's cache.
def _sample_ok(i, n, out):
    text = out[1]["samples"][0]
    return text.startswith(f"Student {i} asks:") and not any(f"Student {j} asks:" in text for j in range(n) if j != i)


def _prune_ok(i, n, out):
    confs = out[-1].get("configurations", [])
    return len(confs) == 3 and all(c["text"].startswith(f"Student {i} asks:") for c in confs)


ACTIONS = {
    # the Generate button: 1 sample x `tokens` new tokens, the tab's default knobs
    "sample": ("/sample", sample_args, _sample_ok),
    # the next-token distribution drawn next to it (the same button fires both)
    "distribution": ("/sample_distribution", lambda model, i, tokens: (model, False, f"Student {i} asks:", 0.8, 200,
                                                                       1.0),
                     lambda i, n, out: "Why the knobs" in out[1]),
    # Layer pruning with the default configurations (full, even, first half) and `tokens` new tokens
    "prune": ("/prune", lambda model, i, tokens: (model, ["full", "even", "first half"], "0,1", f"Student {i} asks:",
                                                  tokens, 0.8, 200, i, AUSTEN),
              _prune_ok),
}
AUSTEN = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want"
          " of a wife. However little known the feelings or views of such a man may be on his first entering a"
          " neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is"
          " considered the rightful property of some one or other of their daughters.")


@functools.lru_cache(maxsize=None)
def page_load_fns(url) -> tuple:
    """The fn indices of the page's load events (not queued), read once per server from its /config."""
    with urllib.request.urlopen(url + "config", timeout=60) as r:
        deps = json.load(r)["dependencies"]
    return tuple(d["id"] for d in deps if any(t[1] == "load" for t in d["targets"]) and not d.get("queue")
                 and d.get("backend_fn", True))  # a JavaScript-only step has no server function


def connect(url, timeout):
    """A student's open page: a gradio_client Client that waits as long as a browser would (httpx's own default
    gives up after 5 s), which then runs the page's load events in its session, as a browser does on opening the
    page. Gradio builds a session's state on its first event (~50 ms of server time for this app's ~860
    components); a browser pays it when the page opens, long before the lecturer says "press Generate"."""
    from gradio_client import Client

    c = Client(url, verbose=False, httpx_kwargs={"timeout": timeout})
    for fn in page_load_fns(url):
        body = json.dumps({"fn_index": fn, "data": [], "session_hash": c.session_hash, "trigger_id": 0})
        req = urllib.request.Request(url + "gradio_api/run/predict", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
    return c


def sample_once(url, model, i, tokens, timeout, action="sample") -> float:
    """Seconds for one request from a fresh client (send -> full answer)."""
    api, args, ok = ACTIONS[action]
    c = connect(url, timeout)
    t = time.perf_counter()
    out = c.submit(*args(model, i, tokens), api_name=api).result(timeout=timeout)
    if not ok(i, i + 1, out):
        raise SystemExit(f"wrong answer for a single {action} request: {str(out)[:200]!r}")
    return time.perf_counter() - t


def crowd(url, model, n, tokens, timeout, action="sample", server_pid=None) -> dict:
    """n clients open the page first (a few at a time, as a room of browsers would have long before), then all
    send the action's request at the same moment; latency = send -> full answer."""
    api, make_args, is_ok = ACTIONS[action]
    lat, fails, queued, lock = [], [], [0], threading.Lock()
    sent = {}

    def at_send():  # run once, when every client is connected: CPU seconds so far of the clients and the server
        sent.update(t=time.perf_counter(), cpu=cpu_seconds(), server=cpu_seconds(server_pid) if server_pid else 0.0)

    ready = threading.Barrier(n, action=at_send)
    opening = threading.Semaphore(8)

    def student(i):
        try:
            with opening:
                c = connect(url, timeout)
        except Exception as e:  # noqa: BLE001 - counted as a failure
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
            job = c.submit(*make_args(model, i, tokens), api_name=api)
            out = job.result(timeout=timeout)
            dt = time.perf_counter() - t
            ok = is_ok(i, n, out)
            # the batcher's queue position, as the page showed it while this student waited for a free row
            shown = [int(m) for out in job.outputs() for m in re.findall(r"number (\d+) in the queue", str(out[0]))]
            with lock:
                if ok:
                    lat.append(dt)
                else:
                    fails.append("wrong text")
                queued[0] = max([queued[0], *shown])
        except Exception as e:  # noqa: BLE001 - counted as a failure
            with lock:
                fails.append(str(e)[:120])

    threads = [threading.Thread(target=student, args=(i,)) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout + 120)
    # CPU seconds from the moment all requests were sent to the last answer: server vs the clients (same cores)
    cpu = {"clients": cpu_seconds() - sent.get("cpu", 0.0),
           "server": cpu_seconds(server_pid) - sent.get("server", 0.0) if server_pid else float("nan"),
           "seconds": time.perf_counter() - sent.get("t", t0)}
    return {"n": n, "ok": len(lat), "failed": n - len(lat), "fails": fails[:3],
            "p50": pct(lat, .5), "p95": pct(lat, .95), "max": max(lat, default=float("nan")),
            "wall": time.perf_counter() - t0, "queued": queued[0], "cpu": cpu}


def lecture(a):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from machine import cpu_name, gpt2_sized_dir

    model = gpt2_sized_dir("tinygpt-lecture-")
    plan = [("sample", [int(x) for x in a.sizes.split(",")])] if a.sizes.strip() else []  # --sizes "": skip
    plan += [(act, [int(x) for x in a.other_sizes.split(",")]) for act in a.actions.split(",") if act]
    threads = a.threads or "torch's default"
    print(f"CPU: {cpu_name()} · {os.cpu_count()} logical cores · server torch threads: {threads}")
    print(f"GPT-2-124M-sized model (random weights) in {model}; /sample: 1 sample x {a.tokens} new tokens,"
          f" T 0.8, top-k 200; /sample_distribution: the same knobs; /prune: full, even, first half, {a.tokens}"
          " new tokens each, perplexity on a 90-token passage")
    table = {}  # (action, mode) -> (single, rows)
    modes = {"before": {"TINYGPT_BATCHING": "0"}, "after": {"TINYGPT_BATCHING": "1"},
             "after-unpadded": {"TINYGPT_BATCHING": "1", "TINYGPT_BATCH_EXACT": "0"}}
    names = a.modes.split(",")
    for mode in names:
        env = {"TINYGPT_MODEL": model, **modes[mode]}
        flag = env["TINYGPT_BATCHING"]
        if a.threads:
            env["OMP_NUM_THREADS"] = str(a.threads)
        proc, url, cold = start_server(env)
        try:
            print(f"[{mode}] {'batching' if flag == '1' else 'no batching'}: server up in {cold:.1f} s", flush=True)
            for action, sizes in plan:
                # warm-up: first-call costs stay out of the numbers; then the median of 5 lone requests
                sample_once(url, model, 999, a.tokens, a.timeout, action)
                single = statistics.median(sample_once(url, model, 1000 + k, a.tokens, a.timeout, action)
                                           for k in range(5))
                print(f"[{mode}] {action}: single request {single:.2f} s (median of 5)", flush=True)
                rows = []
                for n in sizes:
                    r = crowd(url, model, n, a.tokens, a.timeout, action, proc.pid)
                    cpu = r["cpu"]
                    rows.append(r)
                    print(f"[{mode}] {action} N={n:>3}: ok {r['ok']}, failed {r['failed']}, p50 {r['p50']:.1f} s,"
                          f" p95 {r['p95']:.1f} s, max {r['max']:.1f} s (p95 = {r['p95'] / single:.1f}x single);"
                          f" largest batcher queue position shown {r['queued']}; from send to last answer"
                          f" ({cpu['seconds']:.1f} s) the server used {cpu['server']:.1f} CPU s and the {n} clients"
                          f" {cpu['clients']:.1f} (on the same {os.cpu_count()} cores)", flush=True)
                    for f in r["fails"]:
                        print("    failure:", f)
                table[action, mode] = (single, rows)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    for action, sizes in plan:
        print(f"\n{action}:\n| N | " + " | ".join(f"{m}: p50 / p95 / max (s), p95 ÷ single, failed" for m in names)
              + " |")
        print("|---|" + "---|" * len(names))
        print("| 1 (single) | " + " | ".join(f"{table[action, m][0]:.2f}" for m in names) + " |")
        for k, n in enumerate(sizes):
            cells = []
            for m in names:
                single, rows = table[action, m]
                r = rows[k]
                cells.append(f"{r['p50']:.1f} / {r['p95']:.1f} / {r['max']:.1f}, {r['p95'] / single:.1f}x,"
                             f" {r['failed']}")
            print(f"| {n} | " + " | ".join(cells) + " |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--finetunes", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=None, help="new tokens per request (30; 40 with --lecture)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per request (600; 1800 with --lecture)")
    ap.add_argument("--lecture", action="store_true", help="the lecture scenario (see the module docstring)")
    ap.add_argument("--sizes", default="10,40,100", help="--lecture: concurrent clients per round")
    ap.add_argument("--actions", default="",
                    help="--lecture: other actions to crowd after /sample, comma-separated: distribution, prune")
    ap.add_argument("--other-sizes", default="40", help="--lecture: concurrent clients per round for --actions")
    ap.add_argument("--threads", type=int, default=0, help="--lecture: the server's torch threads (0 = default)")
    ap.add_argument("--modes", default="before,after",
                    help="--lecture: servers to compare: before (TINYGPT_BATCHING=0), after, after-unpadded"
                         " (TINYGPT_BATCH_EXACT=0)")
    ap.add_argument("--course-map", action="store_true",
                    help="the class scenario: students press course-map rows at once (benchmarks/course_map_load.py)")
    ap.add_argument("--students", type=int, default=40, help="--course-map: students in the room")
    ap.add_argument("--live-row", default="train-mask", help="--course-map: the row run live in round (a)")
    ap.add_argument("--recorded-row", default=None, help="--course-map: the recorded row of round (a)")
    ap.add_argument("--off-cap", type=float, default=300.0,
                    help="--course-map: seconds the sharing-off live round may take (runs are served one by one)")
    ap.add_argument("--seed", type=int, default=7, help="--course-map: the students' random rows")
    a = ap.parse_args()
    if a.course_map:
        from course_map_load import course_map

        a.timeout = a.timeout or 900
        a.modes = a.modes if a.modes != "before,after" else "off,on"
        return course_map(a)
    if a.lecture:
        a.tokens, a.timeout = a.tokens or 40, a.timeout or 1800
        return lecture(a)
    a.tokens, a.timeout = a.tokens or 30, a.timeout or 600
    from gradio_client import Client

    proc, url, cold = start_server()
    print(f"server up in {cold:.1f} s at {url}")
    results, lock = [], threading.Lock()
    max_rank = {"sample": 0, "finetune": 0}

    def wait(job, kind):
        """Poll until done, recording the largest queue position this user was shown."""
        while not job.done():
            st = job.status()
            if st.rank is not None:
                with lock:
                    max_rank[kind] = max(max_rank[kind], st.rank + 1)
            time.sleep(0.2)
        return job.result(timeout=a.timeout)

    def sampler(i):
        prompt = f"User {i} asks:"
        c = Client(url, verbose=False)
        t = time.perf_counter()
        try:
            job = c.submit("tiny-shakespeare", False, prompt, 1, a.tokens, 0.8, 50, 1.0, i, api_name="/sample")
            html, js = wait(job, "sample")
            ok = js["samples"][0].startswith(prompt) and all(f"User {j} " not in js["samples"][0]
                                                             for j in range(a.clients) if j != i)
            rec = ("sample", ok, time.perf_counter() - t, "" if ok else "wrong text")
        except Exception as e:  # noqa: BLE001 - counted as a failure
            rec = ("sample", False, time.perf_counter() - t, str(e)[:120])
        with lock:
            results.append(rec)

    def finetuner(i):
        c = Client(url, verbose=False)
        text = (f"Finetune user {i} writes about lighthouse number {i}. The lamp number {i} burns all night. ") * 40
        t = time.perf_counter()
        try:
            job = c.submit("tiny-shakespeare", None, text, False, True, f"Finetune user {i}", i, "Top 2 blocks (fast)",
                           10, 64, 4, 1e-3, 20, api_name="/finetune")
            status, plot, compare, metrics, rows = wait(job, "finetune")
            ok = "Done" in status and f"Finetune user {i}" in compare
            rec = ("finetune", ok, time.perf_counter() - t, "" if ok else status[:120])
        except Exception as e:  # noqa: BLE001
            rec = ("finetune", False, time.perf_counter() - t, str(e)[:120])
        with lock:
            results.append(rec)

    threads = [threading.Thread(target=finetuner, args=(i,)) for i in range(a.finetunes)]
    threads += [threading.Thread(target=sampler, args=(i,)) for i in range(a.clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=a.timeout)
    wall = time.perf_counter() - t0
    proc.terminate()
    proc.wait(timeout=30)
    for kind in ("sample", "finetune"):
        lat = [r[2] for r in results if r[0] == kind and r[1]]
        fails = [r for r in results if r[0] == kind and not r[1]]
        print(f"{kind:>8}: completed {len(lat)}, failed {len(fails)}, p50 {pct(lat, .5):.1f} s, "
              f"p95 {pct(lat, .95):.1f} s, max queue position seen {max_rank[kind]}")
        for f in fails[:5]:
            print("    failure:", f[3])
    print(f"wall time {wall:.1f} s for {a.clients} sampling users + {a.finetunes} fine-tunes")


if __name__ == "__main__":
    main()
