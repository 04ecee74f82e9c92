"""A scaling sweep in a child Python process, streaming its events back: what a server (the Scaling-laws tab) uses.

Why a process: PyTorch's CPU ops on the small tensors of a toy sweep run ~3x slower in a thread that is not the
process's main thread (libgomp wakes its helper threads for every parallel region there instead of keeping them
spinning; measured on 2 cores: a layer norm of (16, 64, 16) 63 µs in a worker thread, 24 µs in the main thread),
and a server runs every job in a worker thread. In its own process the sweep trains in that process's main thread:
the course map's lecture sweep took 75-81 s in a server thread and 30-38 s in a main thread (same machine, one run).

Protocol (one JSON object per line): the parent writes the text to a temporary file and starts
`python -m tinygpt.beyond.sweep_process CONFIG_JSON TEXT_PATH CORPUS_NAME [THREADS [I/N]]` (one child per share
of the runs, I/N as scaling_sweep's shard); each child prints
{"event": {...}} for every finished run and at most every EVENT_S seconds for training steps, then
{"result": {...}} (scaling_sweep's result) or {"error": "..."}. A line "stop" on the child's stdin ends the sweep
after the current step (the runs finished so far are analysed, as with scaling_sweep's should_stop).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from typing import Callable, Optional

EVENT_S = 0.1  # the child sends a step event at most this often (every finished run is sent)


def scaling_sweep_in_process(cfg, text: str, callback: Optional[Callable[[dict], None]] = None,
                             should_stop: Optional[Callable[[], bool]] = None, corpus_name: Optional[str] = None,
                             threads: Optional[int] = None, workers: int = 1) -> dict:
    """scaling_sweep(cfg, text, callback, should_stop, corpus_name) trained in child processes -> its result.

    workers: how many children share the runs (child i trains the runs whose index is i modulo workers, as
    scaling_sweep's shard), each with `threads` torch threads (default: this process's threads ÷ workers). Runs this
    small barely use a second thread, so on 2 cores two one-thread children finish the course map's lecture sweep
    about 1.4-2x sooner than one child with two threads (AMD EPYC, 2 cores, one run: 27.6 and 28.8 s against 39.4
    and 61.1 s), with the same runs and losses up to float rounding (another thread count sums in another order).
    callback gets the children's events as they come (every run, steps thinned to one per EVENT_S per child; with
    workers > 1 two runs' steps interleave); should_stop is checked at every event and tells every child to stop.
    Raises RuntimeError with a child's last error lines when one fails."""
    import queue

    import torch

    workers = max(1, int(workers))
    if threads is None and workers > 1:
        threads = max(1, torch.get_num_threads() // workers)
    fd, path = tempfile.mkstemp(prefix="tinygpt-sweep-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    procs: list = []
    try:
        for w in range(workers):
            # asdict's tuples (shapes, budgets) become JSON lists; the child turns them back
            args = [sys.executable, "-m", "tinygpt.beyond.sweep_process", json.dumps(asdict(cfg)), path,
                    corpus_name or "given text", str(int(threads or 0)), f"{w}/{workers}"]
            procs.append(subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, env=env, cwd=root))
        lines: queue.Queue = queue.Queue()
        errors: list = [[] for _ in procs]
        for w, proc in enumerate(procs):  # readers never block a child; the lines meet in one queue, in order
            threading.Thread(target=lambda p=proc, w=w: [lines.put((w, line)) for line in p.stdout] + [
                lines.put((w, None))], daemon=True).start()
            threading.Thread(target=lambda p=proc, w=w: errors[w].extend(p.stderr), daemon=True).start()
        parts: dict = {}
        open_streams, stopped = workers, False
        while open_streams:
            w, line = lines.get()
            if line is None:
                open_streams -= 1
                continue
            try:
                msg = json.loads(line)
            except ValueError:  # a library's stray print: not one of ours
                continue
            if not isinstance(msg, dict):
                continue
            if "event" in msg and callback is not None:
                callback(msg["event"])
            elif "result" in msg:
                parts[w] = msg["result"]
            elif "error" in msg:
                raise RuntimeError(msg["error"])
            if not stopped and should_stop is not None and should_stop():
                stopped = True
                for proc in procs:
                    _tell_stop(proc)
        for w, proc in enumerate(procs):
            proc.wait()
            if w not in parts:
                tail = "".join(errors[w][-5:]).strip()
                raise RuntimeError(f"The sweep's process ended without a result (exit code {proc.returncode}): "
                                   f"{tail}")
        if workers == 1:
            return parts[0]
        from .scaling import merge_sweeps
        return merge_sweeps([parts[w] for w in range(workers)])
    finally:
        for proc in procs:
            if proc.poll() is None:  # the caller left (an error, a closed generator): the children go too
                proc.kill()
                proc.wait()
        os.unlink(path)


def _tell_stop(proc) -> None:
    try:
        proc.stdin.write("stop\n")
        proc.stdin.flush()
    except (BrokenPipeError, ValueError, OSError):  # that child has already finished
        pass


def _main(argv: list) -> None:
    """The child: train the sweep in this main thread, print events and the result as JSON lines."""
    import torch

    from .scaling import SweepConfig, scaling_sweep

    cfg_dict, path, name = json.loads(argv[0]), argv[1], argv[2]
    if len(argv) > 3 and int(argv[3]) > 0:
        torch.set_num_threads(int(argv[3]))
    shard = tuple(int(x) for x in argv[4].split("/")) if len(argv) > 4 else (0, 1)
    cfg = SweepConfig(**{k: (tuple(map(tuple, v)) if k == "shapes" else tuple(v) if k == "budgets" else v)
                         for k, v in cfg_dict.items()})
    with open(path, encoding="utf-8") as f:
        text = f.read()
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()  # "stop" or EOF
    last = [0.0]
    lock = threading.Lock()

    def send(obj) -> None:
        with lock:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    def callback(ev: dict) -> None:
        now = time.perf_counter()
        if ev.get("kind") != "step" or now - last[0] >= EVENT_S or ev.get("step") == ev.get("steps_total"):
            last[0] = now
            send({"event": ev})
    try:
        send({"result": scaling_sweep(cfg, text, callback, stop.is_set, corpus_name=name, shard=shard)})
    except Exception as e:  # noqa: BLE001 - the parent raises it
        send({"error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    _main(sys.argv[1:])
