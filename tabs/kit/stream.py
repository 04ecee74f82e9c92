"""One training stream for every tab that trains or measures for long (Train, Fine-tune, DPO, RLHF, Scaling laws,
GQA uptraining): the jobs run in worker threads, their events become page updates at most a few times a second,
with a progress bar and the time left measured from the progress so far; Stop ends the run of its own tab only.

    STOP = Stopper("finetune")                         # module level: the tab's Stop
    stop = STOP.fresh(sessions, request)               # in the handler: this run's own flag
    results = yield from stream(jobs, stop, record, view, progress)
    go, status, plot = run_controls(STOP, sessions, "Fine-tune", "ft", "Loss")   # in build(): Run, Stop, status

`yield from` matters: when the page's generator is closed (the user left or cancelled), Python closes stream()
too, and run_jobs then stops the workers.

With `sessions=`, `key=` and `estimate=` the run goes through the room's run hub (tabs/kit/runs.py, held by the
SessionStore): it is budgeted before it starts, shared with everyone who starts the same key (they follow one
computation), waits in a lane by its expected length with its position and start time shown, and stops when its
last follower leaves.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import gradio as gr

from .exports import plot_data
from .runs import wait_text
from .sessions import SessionStore, run_jobs

UPDATE_S = 0.25  # at most one page update per this many seconds: each one redraws the tab's figures
# A run in the hub that reports nothing for this long (a long evaluation, a child process) still sends the page an
# update that changes nothing: a cancelled request's handler is closed only when it yields, and Gradio's /cancel
# (gradio_client's job.cancel()) waits for that.
IDLE_S = 1.0
# An update costs its figures' drawing here and Gradio's postprocess (a PNG per plot) while the handler waits at its
# yield; updates come at most every UPDATE_S and no sooner than DRAW_RATIO times that measured cost, so drawing takes
# at most ~1/DRAW_RATIO of the time (measured: at 4 updates a second a two-run Train took 2.5x as long as its
# training alone, the 2 cores busy drawing), and 40 followers of one run, each drawing its own page, slow down alike.
DRAW_RATIO = 5.0
STOPPING = "Stopping after the current step…"


class Stopper:
    """A tab's Stop: a per-session flag of this tab only (sessions' StopFlags), so Stop in one tab never ends a
    run in another; a new run starts with a fresh flag, so an earlier Stop does not end it."""

    def __init__(self, tab: str, message: str = STOPPING):
        self.tab, self.message = tab, message

    def fresh(self, sessions: SessionStore, request=None) -> threading.Event:
        """A new, unset flag for the run this user starts now; the tab's Stop sets it."""
        return sessions.get(request)["stop"].fresh(self.tab)

    def __call__(self, sessions: SessionStore, request: gr.Request = None) -> str:
        """The Stop button: this user's run in this tab ends at its next check."""
        sessions.get(request)["stop"].set(self.tab)
        return self.message

    def wire(self, button: gr.Button, sessions: SessionStore, status) -> gr.Button:
        """Make `button` this tab's Stop (not queued: it must act while the run holds the queue); its message goes
        to `status`."""
        def on_stop(request: gr.Request = None) -> str:
            return self(sessions, request)

        button.click(on_stop, None, status, api_visibility="private", queue=False)
        return button


def run_controls(stopper: Stopper, sessions: SessionStore, run_label: str, prefix: str, plot_label: str,
                 *more: str) -> tuple:
    """A training tab's controls: a row [run_label] [more...] [Stop], then the status line (#prefix-status) and the
    curves (#prefix-plot). Stop is wired to `stopper`. Returns (run button, the `more` buttons..., status, plot)."""
    with gr.Row():
        run = gr.Button(run_label, variant="primary")
        buttons = [gr.Button(label) for label in more]
        stop = gr.Button("Stop")
    status = gr.Markdown(elem_id=f"{prefix}-status")
    plot = gr.Plot(label=plot_label, elem_id=f"{prefix}-plot")
    stopper.wire(stop, sessions, status)
    return (run, *buttons, status, plot)


class Clock:
    """The run's time, and the time left measured from its progress so far."""

    def __init__(self, progress: Callable | None = None):
        self.t0 = time.perf_counter()
        self.progress = progress

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self, done: float, total: float) -> float:
        """Seconds left at the rate measured so far (done of total units in `elapsed` seconds)."""
        return self.elapsed / max(done, 1) * max(total - done, 0)

    def tick(self, done: float, total: float, what: str, counted: bool = True) -> str:
        """Move the page's progress bar to done/total ("what, ~N s left") -> "about N s left" for the status.
        counted: done and total are steps (the bar shows them); else units of work (the bar shows a fraction)."""
        left = self.left(done, total)
        if self.progress is not None:
            self.progress((done, total) if counted else min(done / max(total, 1e-9), 1.0),
                          desc=f"{what}, ~{left:.0f} s left")
        return f"about {left:.0f} s left"


def encoded(out):
    """The outputs with every matplotlib figure turned into what gr.Plot sends (exports.plot_data): the same frame
    can then go to many pages without drawing or encoding it again."""
    from matplotlib.figure import Figure

    def one(x):
        return plot_data(x) if isinstance(x, Figure) else x

    return tuple(one(x) for x in out) if isinstance(out, tuple) else one(out)


@dataclass(frozen=True)
class Frame:
    """A page update drawn for all the followers of a run."""
    events: int  # how many of the run's events it was drawn from
    outputs: object  # the view's outputs, figures encoded (encoded())
    tick: tuple | None  # the drawer's last progress-bar call (args, kwargs), replayed on the other pages
    at: float  # when it was drawn (perf_counter)
    cost: float  # seconds its drawing took


def room_frame(run, view, clock: "Clock", seen: int, shown: int, every_s: float = UPDATE_S) -> Frame | None:
    """The page update for a follower of `run` that has recorded `seen` events and shows a frame drawn from `shown`
    events: a new frame is drawn (here, by one follower at a time) when the run's last one is older than the events
    and older than max(every_s, DRAW_RATIO x its drawing time); else the last frame when it is newer than what this
    page shows (its progress bar moved here too); else None: nothing new to show."""
    def reuse(frame):
        if frame is None or frame.events <= shown:
            return None
        if clock.progress is not None and frame.tick is not None:
            clock.progress(*frame.tick[0], **frame.tick[1])
        return frame

    frame = run.frame
    stale = frame is None or (frame.events < seen and
                              time.perf_counter() - frame.at >= max(every_s, DRAW_RATIO * frame.cost))
    if not stale or not run.drawing.acquire(blocking=False):
        return reuse(frame)
    try:
        if run.frame is not frame:  # another follower drew it meanwhile
            return reuse(run.frame)
        ticks, real, t0 = [], clock.progress, time.perf_counter()

        def keep(*args, **kwargs):  # the drawer's progress bar, replayed on the other pages
            ticks.append((args, kwargs))
            if real is not None:
                real(*args, **kwargs)

        clock.progress = keep
        try:
            out = encoded(view(clock))
        finally:
            clock.progress = real
        run.frame = frame = Frame(seen, out, ticks[-1] if ticks else None, time.perf_counter(),
                                  time.perf_counter() - t0)
        return frame
    finally:
        run.drawing.release()


def once(results, name: str, make: Callable):
    """The final page update `make()` drawn from a run's results, drawn once for everyone who follows (or later asks
    for) the same run (the hub's Results keeps it, figures encoded); a plain dict (no hub): drawn here."""
    frames = getattr(results, "frames", None)
    if frames is None:
        return make()
    with results.lock:
        if name not in frames:
            frames[name] = encoded(make())
        return frames[name]


def stream(jobs: dict, stop: threading.Event, record: Callable, view: Callable, progress: Callable | None = None,
           every_s: float = UPDATE_S, *, sessions: SessionStore | None = None, request=None, key: str | None = None,
           estimate=None, label: str = "run", waiting: Callable | None = None, progress_of: Callable | None = None,
           lane: str | None = None):
    """Run `jobs` ({name: fn(callback, should_stop)}) in worker threads; yield the tab's page updates while they
    run and return {name: result} (use `results = yield from stream(...)`).

    record(name, event): called for every event of every job, in order (cheap: append it to a history).
    view(clock) -> the tab's outputs (a tuple): called after new events, at most once every `every_s` seconds, so
        a fast job does not spend its time redrawing figures; clock.tick(done, total, what) gives the ETA text.
    An exception in a job is raised here, after the other jobs were stopped.

    sessions (with request): run through the room's hub, as the user of this request — key: what decides the
    result (tabs.kit.runs.run_key; None = never shared), estimate: its tinygpt.budget.Estimate (refused in one
    sentence when it passes one run's limits), label: the run's name in messages, waiting(text) -> the tab's outputs
    while it waits in a queue (else the progress bar alone shows the position and start time), progress_of(name,
    event) -> the fraction done or None (default: step / steps_total; the hub's start times for the runs waiting
    behind this one come from it), lane: the hub's lane (default: by the estimate's seconds; "measure" for timings,
    one at a time)."""
    clock = Clock(progress)
    ticket = None
    if sessions is not None:
        user = SessionStore.key(request) if request is not None else None
        more = {} if progress_of is None else {"progress_of": progress_of}
        ticket = sessions.room.open(key, jobs, user=user, label=label, estimate=estimate, lane=lane, **more)
        events = ticket.follow(stop, idle_s=IDLE_S)
    else:
        events = run_jobs(jobs, stop)
    last = None
    cost = 0.0  # seconds one page update takes (moving average), see DRAW_RATIO
    shape = None  # the last update's shape: an idle update skips every output (gr.skip()), nothing is redrawn
    seen = shown = 0  # events recorded here; events the page's last (shared) frame was drawn from
    try:
        for kind, payload in events:
            if kind == "idle":
                if shape is not None:
                    yield tuple(gr.skip() for _ in range(shape)) if shape else gr.skip()
                continue
            if kind == "queued":
                text = wait_text(payload)
                if progress is not None:
                    progress(0.0, desc=text)
                if waiting is not None:
                    out = waiting(text)
                    shape = len(out) if isinstance(out, tuple) else 0
                    yield out
                continue
            if kind == "done":
                return payload
            if ticket is not None and ticket.run.started is not None:
                clock.t0 = ticket.run.started  # time left from the run's own progress (also for a late joiner)
            for name, ev in payload:
                record(name, ev)
            seen += len(payload)
            now = time.perf_counter()
            # followers of one run share its frames, but each sends them: the room's updates together stay within
            # ~1/DRAW_RATIO of the time
            crowd = max(1, ticket.run.followers) if ticket is not None else 1
            if last is None or now - last >= max(every_s, DRAW_RATIO * cost * crowd):
                if ticket is None:
                    out = view(clock)
                else:  # one drawing per frame for all the run's followers
                    frame = room_frame(ticket.run, view, clock, seen, shown, every_s)
                    if frame is None:
                        continue  # nothing newer than this page shows yet
                    shown, out = frame.events, frame.outputs
                shape = len(out) if isinstance(out, tuple) else 0
                yield out
                last = time.perf_counter()
                spent = last - now  # drawing here + Gradio's postprocess while we waited at the yield
                cost = spent if cost == 0.0 else 0.7 * cost + 0.3 * spent
    finally:  # closed early (user left / cancelled): run_jobs stops and joins the workers
        events.close()
