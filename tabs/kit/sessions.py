"""Per-user state that is too big for gr.State: fine-tuned/trained models, stop flags, files to download; what
Gradio itself keeps per visitor (GradioSessions); and run_jobs, which runs a user's long jobs in worker threads.

Keyed by Gradio's session hash, so users never see each other's models. Entries are dropped when the browser
tab closes (demo.unload), when they are older than `ttl_s`, or when more than `max_sessions` are held
(oldest first): a public CPU Space must not fill its memory with abandoned models.
"""
from __future__ import annotations

import asyncio
import os
import queue
import shutil
import tempfile
import threading
import time
import weakref


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


# ---- what Gradio keeps per visitor ------------------------------------------------------------------------
IDLE_S = float(os.environ.get("TINYGPT_SESSION_IDLE_S") or 3600)  # a page's session unused this long is released
API_IDLE_S = min(120.0, IDLE_S)  # a session that never opened the page (API calls) is released sooner
SWEEP_S = min(30.0, API_IDLE_S / 4)  # how often the idle sweep looks


class GradioSessions:
    """Releases what Gradio 6 keeps for each visitor once the page is closed or the session idles.

    Gradio keeps, per session hash, a SessionState (state_holder.session_data): a copy of the config of every
    component of the page (about 1.4 MB for this app's ~860 components; ~2.2 MB of RSS), the components a
    handler updated for this visitor and the gr.State values; and the queue's message queue and event-id set.
    Gradio never drops a SessionState itself (only its gr.State values, an hour after the page closed, and the
    oldest sessions beyond launch(state_session_capacity), 10,000 by default): the server grew by ~2.2 MB per
    visitor. Here a session is released
    * when its page closes (demo.unload -> `await close(hash)`, on the server's event loop), unless one of its
      events is still queued or running: a streaming event reads the SessionState again at every update, so
      that session is released by the next sweep after its events ended;
    * by the idle sweep (every `sweep_s` seconds) once unused for `idle_s` (TINYGPT_SESSION_IDLE_S, default one
      hour), or for `api_idle_s` (two minutes) when the session never ran the page's load event: API calls
      (`/gradio_api/call/...` makes a new session per call) never open the page's heartbeat, so never trigger
      unload, and keep nothing a later call needs (our own per-user data is SessionStore's, not Gradio's).
    Releasing runs on the event loop, where Gradio's routes use the same dicts (the sweep's thread schedules it
    there). A visitor whose session was released and who comes back gets a fresh one (start-up values)."""

    def __init__(self, demo, idle_s: float = IDLE_S, api_idle_s: float = API_IDLE_S, sweep_s: float = SWEEP_S):
        self._demo = weakref.ref(demo)
        self.idle_s, self.api_idle_s, self.sweep_s = idle_s, api_idle_s, sweep_s
        self.closed: dict[str, float] = {}  # session hash -> when its page closed (released once nothing runs)
        self.pages: set[str] = set()  # sessions that ran the page's load event (a browser page)
        self.released = 0
        self.loop = None  # the server's event loop, learnt from the first close()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._watch(demo)

    def _watch(self, demo) -> None:
        """Learn the server's event loop from the first event the demo processes (and start the sweep then), and
        which sessions are pages (they ran a load event)."""
        original = demo.process_api

        async def process_api(*args, **kwargs):
            if self.loop is None:
                self.loop = asyncio.get_running_loop()
                self._start()
            fn, session_hash = kwargs.get("block_fn"), kwargs.get("session_hash")
            if session_hash and any(t[1] == "load" for t in getattr(fn, "targets", None) or ()):
                self.pages.add(session_hash)
            return await original(*args, **kwargs)

        demo.process_api = process_api  # an instance attribute: Gradio calls self.process_api

    async def close(self, session_hash: str | None) -> bool:
        """The page of `session_hash` closed (call from an async unload handler): release it now, or at the
        next sweep if one of its events still runs. Also sweeps the other closed and idle sessions."""
        if not session_hash:
            return False
        with self._lock:
            self.closed[session_hash] = time.time()
        done = self.release(session_hash)
        self.sweep()
        return done

    def busy(self, session_hash: str) -> bool:
        """Is an event of this session queued or running?"""
        q = getattr(self._demo(), "_queue", None)
        return bool(q is not None and q.pending_event_ids_session.get(session_hash))

    def release(self, session_hash: str) -> bool:
        """Drop Gradio's per-session data of `session_hash` unless an event of it still runs -> released?
        Call on the server's event loop (or before launch)."""
        demo = self._demo()
        if demo is None or self.busy(session_hash):
            return False
        holder = getattr(demo, "state_holder", None)  # set by launch()
        state = None
        if holder is not None:
            with holder.lock:
                state = holder.session_data.pop(session_hash, None)
                holder.time_last_used.pop(session_hash, None)
        q = getattr(demo, "_queue", None)
        if q is not None:
            q.pending_event_ids_session.pop(session_hash, None)
            q.pending_messages_per_session.pop(session_hash, None)
        with self._lock:
            self.closed.pop(session_hash, None)
        self.pages.discard(session_hash)
        if state is None:
            return False
        for component, value, _ in list(state.state_components):
            component.delete_callback(value)  # a gr.State's own clean-up, as Gradio calls it on expiry
        self.released += 1
        return True

    def sweep(self, now: float | None = None) -> int:
        """Release closed sessions whose events ended and sessions unused for idle_s -> how many.
        Call on the server's event loop."""
        holder = getattr(self._demo(), "state_holder", None)
        if holder is None:
            return 0
        now = time.time() if now is None else now
        with self._lock:
            closed = list(self.closed)
        with holder.lock:
            used = list(holder.time_last_used.items())
        idle = [h for h, t in used if now - t.timestamp() > (self.idle_s if h in self.pages else self.api_idle_s)]
        return sum(self.release(h) for h in dict.fromkeys(closed + idle))

    def _start(self) -> None:
        """The idle sweep's daemon thread (one per demo; it ends with the demo)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=_sweep_forever, args=(weakref.ref(self),), daemon=True,
                                            name="tinygpt-session-sweep")
        self._thread.start()


def _sweep_forever(ref) -> None:
    """Every sweep_s seconds, run the sweep on the server's event loop (nothing to do before a loop is known)."""
    while True:
        me = ref()
        if me is None or me._demo() is None:
            return
        pause, loop = me.sweep_s, me.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(me.sweep)
            except RuntimeError:  # the loop closed meanwhile
                pass
        del me
        time.sleep(pause)


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
