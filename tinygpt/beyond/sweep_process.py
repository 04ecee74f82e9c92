"""A scaling sweep in a child Python process, streaming its events back: what a server (the Scaling-laws tab) uses.

Why a process: PyTorch's CPU ops on the small tensors of a toy sweep run ~3x slower in a thread that is not the
process's main thread (libgomp wakes its helper threads for every parallel region there instead of keeping them
spinning; measured on 2 cores: a layer norm of (16, 64, 16) 63 µs in a worker thread, 24 µs in the main thread),
and a server runs every job in a worker thread. In its own process the sweep trains in that process's main thread:
the course map's lecture sweep took 75-81 s in a server thread and 30-38 s in a main thread (same machine, one run).

Protocol (one JSON object per line): the parent writes the text to a temporary file and starts
`python -m tinygpt.beyond.sweep_process CONFIG_JSON TEXT_PATH CORPUS_NAME`; the child prints
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
                             threads: Optional[int] = None) -> dict:
    """scaling_sweep(cfg, text, callback, should_stop, corpus_name) trained in a child process -> its result.

    callback gets the child's events (every run, steps thinned to one per EVENT_S); should_stop is checked at every
    event and tells the child to stop. threads: the child's torch threads (default: torch's choice there).
    Raises RuntimeError with the child's last error lines when it fails."""
    fd, path = tempfile.mkstemp(prefix="tinygpt-sweep-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    # asdict's tuples (shapes, budgets) become JSON lists; the child turns them back
    args = [sys.executable, "-m", "tinygpt.beyond.sweep_process", json.dumps(asdict(cfg)), path,
            corpus_name or "given text"] + ([str(int(threads))] if threads else [])
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=root)
    errors: list = []
    reader = threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True)  # never blocks the child
    reader.start()
    result, stopped = None, False
    try:
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:  # a library's stray print: not one of ours
                continue
            if not isinstance(msg, dict):
                continue
            if "event" in msg and callback is not None:
                callback(msg["event"])
            elif "result" in msg:
                result = msg["result"]
            elif "error" in msg:
                raise RuntimeError(msg["error"])
            if not stopped and should_stop is not None and should_stop():
                stopped = True
                proc.stdin.write("stop\n")
                proc.stdin.flush()
        proc.wait()
        reader.join(5)
        if result is None:
            tail = "".join(errors[-5:]).strip()
            raise RuntimeError(f"The sweep's process ended without a result (exit code {proc.returncode}): {tail}")
        return result
    finally:
        if proc.poll() is None:  # the caller left (an error, a closed generator): the child goes too
            proc.kill()
            proc.wait()
        os.unlink(path)


def _main(argv: list) -> None:
    """The child: train the sweep in this main thread, print events and the result as JSON lines."""
    import torch

    from .scaling import SweepConfig, scaling_sweep

    cfg_dict, path, name = json.loads(argv[0]), argv[1], argv[2]
    if len(argv) > 3:
        torch.set_num_threads(int(argv[3]))
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
        send({"result": scaling_sweep(cfg, text, callback, stop.is_set, corpus_name=name)})
    except Exception as e:  # noqa: BLE001 - the parent raises it
        send({"error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    _main(sys.argv[1:])
