"""Load test on loopback: N concurrent gradio_client users sampling, plus M fine-tunes queued behind each other.

Starts `python app.py` offline (embedded model) on 127.0.0.1, then runs bounded work only: every client sends
one request, everything has a time limit, and the script stops the server at the end. Reports completed/failed
counts, p50/p95 latency, the largest queue position seen, and checks that nobody received another user's text.

    python benchmarks/load_test.py [--clients 20] [--finetunes 2] [--tokens 30]
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url, time.perf_counter() - t0
        except Exception:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not start")


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--finetunes", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()
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
