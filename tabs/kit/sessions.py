"""Per-user state that is too big for gr.State: fine-tuned/trained models, stop flags, files to download; and
run_jobs, which runs a user's long jobs in worker threads.

Keyed by Gradio's session hash, so users never see each other's models. Entries are dropped when the browser
tab closes (demo.unload), when they are older than `ttl_s`, or when more than `max_sessions` are held
(oldest first): a public CPU Space must not fill its memory with abandoned models.
"""
from __future__ import annotations

import queue
import shutil
import tempfile
import threading
import time


class SessionStore:
    def __init__(self, max_sessions: int = 8, ttl_s: float = 3 * 3600, room=None):
        from .runs import RunHub

        self.max_sessions, self.ttl_s = max_sessions, ttl_s
        self.room = room if room is not None else RunHub()  # the room's heavy runs: shared, budgeted, scheduled
        self._data: dict = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(request) -> str:
        """The session hash of a gr.Request (or "local" when called without a browser, e.g. in tests)."""
        return getattr(request, "session_hash", None) or "local"

    def get(self, request) -> dict:
        """This session's dict (created on first use). Holds e.g. {"stop": StopFlags, "finetuned": (model, tok)}."""
        k = self.key(request)
        with self._lock:
            self._expire()
            entry = self._data.get(k)
            if entry is None:
                entry = self._data[k] = {"stop": StopFlags(), "created": time.time()}
            entry["used"] = time.time()
            return entry

    def drop(self, request) -> None:
        with self._lock:
            entry = self._data.pop(self.key(request), None)
        if entry:
            _release(entry)

    def __len__(self):
        return len(self._data)

    def _expire(self):
        now = time.time()
        for k in [k for k, e in self._data.items() if now - e.get("used", now) > self.ttl_s]:
            _release(self._data.pop(k))
        while len(self._data) >= self.max_sessions:
            oldest = min(self._data, key=lambda k: self._data[k].get("used", 0))
            _release(self._data.pop(oldest))


class StopFlags:
    """A session's stop flags, one per tab: Stop in one tab never ends a run of another tab.

    fresh(tab) gives a new run its own unset flag (an earlier Stop must not end it); set(tab) is that tab's Stop
    button; set() (the session ends) stops every run of the session, and any run started after it."""

    def __init__(self):
        self._flags: dict[str, threading.Event] = {}
        self._ended = False
        self._lock = threading.Lock()

    def fresh(self, tab: str) -> threading.Event:
        flag = threading.Event()
        with self._lock:
            if self._ended:
                flag.set()
            self._flags[tab] = flag
        return flag

    def set(self, tab: str | None = None) -> None:
        with self._lock:
            if tab is None:
                self._ended = True
            flags = list(self._flags.values()) if tab is None else [self._flags[tab]] if tab in self._flags else []
        for flag in flags:
            flag.set()

    def is_set(self) -> bool:
        """Has the session ended (every run stopped)?"""
        return self._ended


def _release(entry: dict) -> None:
    if "stop" in entry:
        entry["stop"].set()  # a run still going for this session stops
    d = entry.get("tmpdir")
    if d:
        shutil.rmtree(d, ignore_errors=True)
    entry.clear()


def session_tmpdir(entry: dict) -> str:
    if not entry.get("tmpdir"):
        entry["tmpdir"] = tempfile.mkdtemp(prefix="tinygpt-session-")
    return entry["tmpdir"]


def run_jobs(jobs: dict, stop: threading.Event, poll_s: float = 0.25):
    """Run {name: fn(callback, should_stop)} in threads; yield ("events", [(name, event), ...]) batches while
    they run, then ("done", {name: result}). An exception in a job is re-raised here, after stopping the rest."""
    q: queue.Queue = queue.Queue()
    results, errors = {}, {}

    def worker(name, fn):
        try:
            results[name] = fn(lambda ev: q.put((name, ev)), stop.is_set)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            errors[name] = e
            stop.set()

    threads = [threading.Thread(target=worker, args=(n, f), daemon=True) for n, f in jobs.items()]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads) or not q.empty():
            batch = []
            try:
                batch.append(q.get(timeout=poll_s))
                while True:
                    batch.append(q.get_nowait())
            except queue.Empty:
                pass
            if batch:
                yield "events", batch
    finally:  # the generator was closed (user left / cancelled): stop the workers
        if any(t.is_alive() for t in threads):
            stop.set()
            for t in threads:
                t.join(timeout=30)
    if errors:
        raise next(iter(errors.values()))
    yield "done", results
