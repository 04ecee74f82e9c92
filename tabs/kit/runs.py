"""A room's heavy runs (train, fine-tune, DPO, RLHF, scaling, GQA uptraining, measurements), shared and scheduled.

* **Identical runs are computed once.** Every run has a key made of everything that decides its result (the
  action, every setting, the model's weights, the uploaded text, the seed, the code version: `run_key`). A request
  whose key is running attaches to that run: it replays the run's events from the start and then follows it live,
  so it sees the same progress, curves and final result. A finished result is kept (least recently used first
  out, within a byte budget) and served at once.
* **Lanes by expected length.** A run expected to take at most `short_s` seconds waits in the short lane, a longer
  one in the long lane, each with its own slots: a 10-second run is never stuck behind a 10-minute one. While a
  run waits, its followers see their position and an estimated start time computed from the running runs'
  measured progress (elapsed ÷ fraction done), not from a constant. A caller may name its lane instead: the
  Efficiency tab's timings use the "measure" lane (one slot), so two measurements never time each other and none
  waits behind a training run.
* **One heavy run per visitor.** A visitor with a run queued or going cannot start a different one.
* **The work ends with its audience.** When the last follower leaves (page closed, request cancelled, Stop), the
  run is stopped at its next step (a queued one is dropped); its memory is handed back to the operating system.
* **Every run is budgeted before it starts** (tinygpt.budget): a new run whose estimate passes one run's limits is
  refused in one sentence; a queued run starts only when the memory of the runs in progress leaves room for it
  (the budget's ledger holds each running run's estimate).

A run's key and its size are tabs/kit/runkeys.py's. Nothing here imports gradio: tabs/kit/stream.py turns a
Ticket's events into page updates.
"""
from __future__ import annotations

import ctypes
import gc
import heapq
import itertools
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from .runkeys import code_version, result_bytes, run_key, weights_fingerprint  # noqa: F401 (re-exported)

SHORT_S = 60.0  # runs expected to take at most this long wait in the short lane
# slots per lane: short and long runs by their expected length, and the measurements (timings, one at a time)
LANES = {"short": 1, "long": 1, "measure": 1}
LANE_NAMES = {"short": "short-runs", "long": "long-runs", "measure": "measurements"}
# followers are woken for new events at most this often (they also look every poll): a job that emits an event per
# 2-ms step would otherwise wake every follower 500 times a second, each wake-up taking the GIL from the job
NOTIFY_S = 0.05
KEEP_BYTES = 2 * 1024 ** 3  # finished results kept for the room (their models included), all together


class RunRefused(ValueError):
    """A run that cannot start now (one per visitor); the message is one sentence for the page."""


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them otherwise: a finished 2 GB run
    would leave the server's resident memory 2 GB higher for good)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): the allocator keeps its own policy
        pass


class ShouldStop:
    """A job's should_stop (callable, as everywhere): true once its run is stopped. `abandoned()` also tells whether
    nobody follows the run any more (the page closed, the request cancelled): then the job may skip its
    after-training work (samples, evaluations), since nobody will see it, and hand its memory back sooner."""

    def __init__(self, run: "Run"):
        self.run = run

    def __call__(self) -> bool:
        return self.run.stop.is_set()

    def abandoned(self) -> bool:
        return self.run.stop.is_set() and self.run.followers == 0


def abandoned(should_stop) -> bool:
    """Has the run of this should_stop been left by everyone? (False for a plain callable: run_jobs, the CLI.)"""
    check = getattr(should_stop, "abandoned", None)
    return bool(check()) if check is not None else False


def step_fraction(name: str, ev) -> float | None:
    """How far a job is, from its event: step / steps_total (the training loop's events), else None."""
    if isinstance(ev, dict) and ev.get("steps_total"):
        return min(1.0, float(ev.get("step") or 0) / float(ev["steps_total"]))
    return None


@dataclass(eq=False)
class Run:
    key: str | None
    jobs: dict  # {name: fn(callback, should_stop) -> result}
    user: str | None
    label: str
    seconds: float  # the estimate before it starts
    lane: str
    estimate: object = None  # its tinygpt.budget.Estimate (memory held in the ledger while it runs), or None
    keep_bytes: int = 0  # what its finished result holds in memory (models), for the LRU budget
    progress_of: Callable = step_fraction
    state: str = "queued"  # queued -> running -> done | failed | stopped
    events: list = field(default_factory=list)  # [(name, event)] in order
    results: dict | None = None
    error: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    followers: int = 0
    started: float | None = None
    fractions: dict = field(default_factory=dict)  # job name -> fraction done
    cond: threading.Condition = field(default_factory=threading.Condition)
    hold: object = None  # the ledger's reservation while it runs
    # the page update drawn last for this run's followers (tabs/kit/stream.Frame): 40 followers of one run send one
    # drawing instead of drawing 40
    frame: object = None
    drawing: threading.Lock = field(default_factory=threading.Lock)  # held by the follower drawing the next frame
    notified: float = 0.0  # when the followers were last woken for new events (see NOTIFY_S)

    @property
    def fraction(self) -> float:
        return sum(self.fractions.values()) / max(len(self.jobs), 1) if self.fractions else 0.0

    def remaining_s(self, now: float | None = None) -> float:
        """Seconds left: measured (elapsed ÷ fraction done) once it has progressed, else the estimate."""
        if self.started is None:
            return self.seconds
        elapsed = (now or time.perf_counter()) - self.started
        f = self.fraction
        if f >= 0.02:
            return max(elapsed / f - elapsed, 0.0)
        return max(self.seconds - elapsed, 0.0)


class Results(dict):
    """A finished run's {job name: result}, the same object for every follower of the run; `frames` keeps the final
    page updates drawn from it (tabs.kit.stream.once), so each is drawn once for the whole room."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frames: dict = {}
        self.lock = threading.Lock()


class Ticket:
    """One follower of a run. `follow(stop)` yields ("queued", info), ("events", [(name, event), ...]) and at the
    end ("done", results); a failed run raises its error. Closing the generator (or `close()`) leaves the run."""

    def __init__(self, hub: "RunHub", run: Run, shared: bool):
        self.hub, self.run, self.shared = hub, run, shared  # shared: attached to a run someone else started
        self._closed = False

    def follow(self, stop: threading.Event | None = None, poll_s: float = 0.25, idle_s: float | None = None):
        """idle_s: also yield ("idle", None) when nothing else was yielded for this long while the run is queued or
        going (the page's handler then reaches a yield, where Gradio can close it when its request is cancelled)."""
        run, seen, last_info = self.run, 0, None
        last_yield = time.perf_counter()
        try:
            while True:
                with run.cond:
                    if run.state == "queued":
                        run.cond.wait(poll_s)
                    elif len(run.events) == seen and run.state == "running":
                        run.cond.wait(poll_s)
                    state, batch = run.state, run.events[seen:]
                seen += len(batch)
                if stop is not None and stop.is_set() and state in ("queued", "running"):
                    self._stop_pressed()
                    stop = None  # asked once; a lone follower now waits for the run's (stopped) result
                if idle_s is not None and not batch and state in ("queued", "running") \
                        and time.perf_counter() - last_yield >= idle_s:
                    last_yield = time.perf_counter()
                    yield "idle", None
                if state == "queued":
                    info = self.hub.wait_info(run)
                    if info != last_info:
                        last_info, last_yield = info, time.perf_counter()
                        yield "queued", info
                    continue
                if batch:
                    last_yield = time.perf_counter()
                    yield "events", batch
                if state in ("done", "stopped"):
                    yield "done", run.results
                    return
                if state == "failed":
                    raise run.error
        finally:
            self.close()

    def _stop_pressed(self) -> None:
        """Stop from this follower: the run stops when nobody else follows it; otherwise this follower leaves."""
        with self.hub.lock:
            others = self.run.followers - (0 if self._closed else 1)
        if others <= 0:
            self.run.stop.set()
            self.hub.dequeue(self.run)
        else:
            self.close()
            raise RunRefused(f"You left the shared run; it goes on for {others} other "
                             f"{'person' if others == 1 else 'people'} who started the same settings.")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.hub.leave(self.run)


class RunHub:
    """The room's runs: shared by key, scheduled in lanes, kept when finished (LRU within `keep_bytes`)."""

    def __init__(self, short_s: float = SHORT_S, slots: dict | None = None, keep_bytes: int = KEEP_BYTES,
                 sharing: bool | None = None, ledger=None, limits=None):
        from tinygpt import budget

        self.short_s = short_s
        self.slots = dict(slots or LANES)
        self.keep_bytes = keep_bytes
        # sharing None: on unless TINYGPT_SHARING=0 (the class benchmark's "before": every request computes alone)
        self.sharing = os.environ.get("TINYGPT_SHARING", "1") != "0" if sharing is None else bool(sharing)
        self.ledger = ledger if ledger is not None else budget.LEDGER  # memory of the runs in progress
        self._limits = limits  # None: tinygpt.budget.limits_from_env() each time (the env can raise them)
        self.lock = threading.RLock()
        self.active: dict = {}  # key -> Run (queued or running)
        self.queues: dict = {lane: [] for lane in self.slots}
        self.running: dict = {lane: [] for lane in self.slots}
        self.finished: OrderedDict = OrderedDict()  # key -> Run (done), least recently used first
        self.computations: dict = {}  # key -> how many times it was computed (the class benchmark reads it)
        self._ids = itertools.count()

    # ---- opening a run ------------------------------------------------------------------------------------
    def limits(self):
        from tinygpt import budget

        return self._limits or budget.limits_from_env()

    def open(self, key: str | None, jobs: dict, *, user: str | None = None, seconds: float | None = None,
             label: str = "run", keep_bytes: int = 0, progress_of: Callable = step_fraction,
             estimate=None, lane: str | None = None) -> Ticket:
        """A ticket for the run with this key: a finished one (served at once), a running or queued one (attach),
        or a new one (queued in its lane). key None: never shared. Raises RunRefused when `user` already has a
        different run queued or going, and tinygpt.budget.BudgetError when a new run's estimate passes one run's
        limits (joining a run that is already going costs nothing and is never refused).
        seconds: the expected duration (default: the estimate's). lane: one of the hub's lanes (default: short or
        long by `seconds`)."""
        from tinygpt import budget

        if seconds is None:
            seconds = estimate.seconds if estimate is not None else 0.0
        with self.lock:
            if key is not None and self.sharing:
                done = self.finished.get(key)
                if done is not None:
                    self.finished.move_to_end(key)
                    done.followers += 1
                    return Ticket(self, done, shared=True)
                live = self.active.get(key)
                if live is not None:
                    live.followers += 1
                    return Ticket(self, live, shared=True)
            if user is not None:
                mine = [r for lane in (*self.queues.values(), *self.running.values()) for r in lane
                        if r.user == user]
                if mine:
                    r = mine[0]
                    where = (f"{r.fraction:.0%} done" if r.state == "running" else "waiting to start")
                    raise RunRefused(f"You already have a run going ({r.label}, {where}): wait for it to finish or"
                                     " press its Stop first.")
            if estimate is not None:
                budget.check(estimate, self.limits())  # one run's limits; the app total is kept by _pump
            if lane is None:
                lane = "short" if seconds <= self.short_s else "long"
            elif lane not in self.slots:
                raise ValueError(f"Unknown lane {lane!r}: this hub has {', '.join(self.slots)}.")
            run = Run(key if key is not None else f"private:{next(self._ids)}", jobs, user, label, float(seconds),
                      lane, estimate=estimate, keep_bytes=int(keep_bytes), progress_of=progress_of, followers=1)
            if key is not None:
                self.active[run.key] = run
            self.queues[lane].append(run)
            self._pump()
            return Ticket(self, run, shared=False)

    # ---- scheduling ---------------------------------------------------------------------------------------
    def _pump(self) -> None:
        """Start queued runs while their lane has a free slot and the runs in progress leave memory for them (call
        with the lock held). A run whose memory does not fit waits at the head of its lane for one to finish."""
        limits = self.limits()
        for lane, queue in self.queues.items():
            while queue and len(self.running[lane]) < self.slots[lane]:
                run = queue[0]
                need = run.estimate.memory_bytes if run.estimate is not None else 0
                busy = any(self.running[ln] for ln in self.running)
                if busy and self.ledger.in_use() + need > limits.app_memory_bytes:
                    break  # waits for memory; a run alone is always started (it fits one run's limits)
                queue.pop(0)
                run.hold = self.ledger.reserve(run.estimate, limits) if run.estimate is not None else None
                if run.hold is not None:
                    run.hold.__enter__()
                self.running[lane].append(run)
                with run.cond:
                    run.state, run.started = "running", time.perf_counter()
                    run.cond.notify_all()
                threading.Thread(target=self._execute, args=(run,), daemon=True,
                                 name=f"run-{run.label}").start()

    def _execute(self, run: Run) -> None:
        self.computations[run.key] = self.computations.get(run.key, 0) + 1
        # one line per computation in the server's log: operators (and benchmarks/load_test.py) count them
        print(f"[room] computing {run.label} ({run.lane} lane, key {run.key[:12]})", flush=True)
        results, errors = {}, {}

        def emit(name, ev):
            with run.cond:
                run.events.append((name, ev))
                f = run.progress_of(name, ev)
                if f is not None:
                    run.fractions[name] = f
                now = time.perf_counter()
                if now - run.notified >= NOTIFY_S:
                    run.notified = now
                    run.cond.notify_all()

        def worker(name, fn):
            try:
                results[name] = fn(lambda ev: emit(name, ev), ShouldStop(run))
            except BaseException as e:  # noqa: BLE001 - handed to the followers
                errors[name] = e
                run.stop.set()

        try:
            threads = [threading.Thread(target=worker, args=(n, f), daemon=True) for n, f in run.jobs.items()]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            if run.hold is not None:  # its memory goes back to the ledger however the run ended
                run.hold.__exit__(None, None, None)
                run.hold = None
        with self.lock:
            self.running[run.lane].remove(run)
            self.active.pop(run.key, None)
            with run.cond:
                if errors:
                    run.state, run.error = "failed", next(iter(errors.values()))
                else:
                    run.results = Results(results)
                    run.state = "stopped" if run.stop.is_set() else "done"
                run.cond.notify_all()
            if run.state == "done" and not run.key.startswith("private:") and self.sharing and run.followers > 0:
                run.keep_bytes = run.keep_bytes or result_bytes(run.results)
                self._keep(run)
            run.jobs = {}
            self._pump()
        print(f"[room] {run.state} {run.label} in {time.perf_counter() - run.started:.1f} s (key {run.key[:12]},"
              f" {run.followers} following)", flush=True)
        release_memory()

    def _keep(self, run: Run) -> None:
        self.finished[run.key] = run
        self.finished.move_to_end(run.key)
        while len(self.finished) > 1 and sum(r.keep_bytes for r in self.finished.values()) > self.keep_bytes:
            self.finished.popitem(last=False)
        if run.keep_bytes > self.keep_bytes:  # too big to keep at all
            self.finished.pop(run.key, None)

    def leave(self, run: Run) -> None:
        """A follower left: with nobody left, a queued run is dropped and a running one stopped."""
        with self.lock:
            run.followers = max(0, run.followers - 1)
            if run.followers == 0 and run.state in ("queued", "running"):
                run.stop.set()
                self.dequeue(run)

    def dequeue(self, run: Run) -> None:
        with self.lock:
            q = self.queues.get(run.lane, [])
            if run in q:
                q.remove(run)
                self.active.pop(run.key, None)
                with run.cond:
                    run.state, run.results = "stopped", {}
                    run.cond.notify_all()

    # ---- what a waiting follower is told --------------------------------------------------------------------
    def wait_info(self, run: Run) -> dict:
        """{position (1 = next), lane, start_in_s (estimated from the running runs' measured progress), ahead}."""
        with self.lock:
            queue = self.queues.get(run.lane, [])
            if run not in queue:
                return {"position": 0, "lane": run.lane, "start_in_s": 0.0, "ahead": 0}
            pos = queue.index(run)
            now = time.perf_counter()
            free = [r.remaining_s(now) for r in self.running[run.lane]]
            free += [0.0] * (self.slots[run.lane] - len(free))
            heapq.heapify(free)
            for r in queue[:pos]:  # the runs ahead take the first free slots, one after another
                heapq.heappush(free, heapq.heappop(free) + r.seconds)
            return {"position": pos + 1, "lane": run.lane, "start_in_s": round(free[0], 1), "ahead": pos}

    def load(self) -> dict:
        with self.lock:
            return {lane: {"running": len(self.running[lane]), "queued": len(self.queues[lane])}
                    for lane in self.slots}


def wait_text(info: dict) -> str:
    """"Queued: 2nd in the short-runs lane, starts in about 40 s." for the page."""
    n = info["position"]
    nth = {1: "next", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")
    lane = LANE_NAMES.get(info["lane"], info["lane"])
    eta = info["start_in_s"]
    when = f"in about {eta:.0f} s" if eta < 120 else f"in about {eta / 60:.0f} min"
    return f"Queued: {nth} in the {lane} lane, starts {when} (measured from the runs ahead)."
