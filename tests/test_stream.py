"""The kit's one training stream (tabs/kit/stream.py) without a model: every event recorded, page updates
throttled, the time left measured, Stop per tab and per session, a closed page stopping its workers, errors."""
import threading
import time

import pytest

from tabs.kit.sessions import SessionStore
from tabs.kit.stream import Clock, Stopper, stream


class Req:  # stands in for gr.Request: only the session hash matters
    def __init__(self, h="tester"):
        self.session_hash = h


def counting_job(n, pause=0.0, running=None):
    """A job emitting steps 1..n (pause seconds apart), stopping when asked; returns how far it got.
    running: an Event set while the job runs."""
    running = running or threading.Event()

    def job(callback, should_stop):
        running.set()
        try:
            for step in range(1, n + 1):
                if should_stop():
                    return {"steps": step - 1, "stopped": True}
                time.sleep(pause)
                callback({"step": step})
            return {"steps": n, "stopped": False}
        finally:
            running.clear()
    return job


def drive(gen):
    """(updates, return value) of a `yield from`-style generator."""
    updates = []
    try:
        while True:
            updates.append(next(gen))
    except StopIteration as e:
        return updates, e.value


def test_every_event_recorded_updates_throttled_results_returned():
    seen, ticks = [], []
    gen = stream({"a": counting_job(200), "b": counting_job(150)}, threading.Event(),
                 lambda name, ev: seen.append((name, ev["step"])), lambda clock: len(seen), every_s=10)
    updates, results = drive(gen)
    assert [s for n, s in seen if n == "a"] == list(range(1, 201)) and len([n for n, _ in seen if n == "b"]) == 150
    assert len(updates) == 1  # the first batch shows at once; the rest arrive within the next 10 s: not redrawn
    assert results == {"a": {"steps": 200, "stopped": False}, "b": {"steps": 150, "stopped": False}}
    updates, _ = drive(stream({"a": counting_job(6, pause=0.05)}, threading.Event(), lambda *a: None,
                              lambda clock: ticks.append(clock.elapsed), every_s=0.0))
    assert len(updates) == 6 and ticks == sorted(ticks)


def test_clock_measures_the_time_left_and_moves_the_bar():
    bar = []
    clock = Clock(lambda value, desc: bar.append((value, desc)))
    clock.t0 -= 10.0  # 10 s for 25 of 100 steps: 30 s left
    assert clock.tick(25, 100, "training") == "about 30 s left"
    assert bar[-1] == ((25, 100), "training, ~30 s left")
    clock.tick(2.5, 10.0, "1/3 SFT", counted=False)
    assert bar[-1][0] == 0.25 and bar[-1][1].startswith("1/3 SFT, ~")
    assert Clock().tick(0, 10, "x").startswith("about ")  # no progress yet: no division by zero


def test_stop_is_per_tab_and_a_new_run_starts_unstopped():
    sessions = SessionStore()
    train, finetune = Stopper("train"), Stopper("finetune", message="Stopping…")
    a, b = train.fresh(sessions, Req()), finetune.fresh(sessions, Req())
    other_user = train.fresh(sessions, Req("other"))
    assert finetune(sessions, Req()) == "Stopping…"
    assert b.is_set() and not a.is_set() and not other_user.is_set()
    assert not finetune.fresh(sessions, Req()).is_set()
    sessions.drop(Req())  # the page closed: every run of that session stops
    assert a.is_set() and not other_user.is_set()


def test_stop_ends_the_stream_early():
    sessions, stopper = SessionStore(), Stopper("train")
    flag = stopper.fresh(sessions, Req())
    gen = stream({"a": counting_job(10_000, pause=0.001)}, flag, lambda *a: None, lambda clock: "update", every_s=0)
    next(gen)
    stopper(sessions, Req())
    _, results = drive(gen)
    assert results["a"]["stopped"] and results["a"]["steps"] < 10_000


def test_closing_the_page_stops_the_worker():
    flag, running = threading.Event(), threading.Event()
    outer_result = []

    def handler():  # a tab's handler: the stream through `yield from`
        outer_result.append((yield from stream({"a": counting_job(10_000, 0.001, running)}, flag, lambda *a: None,
                                               lambda clock: "update", every_s=0)))

    gen = handler()
    next(gen)
    assert running.is_set()
    gen.close()  # what Gradio does when the client goes away
    assert flag.is_set() and not running.is_set() and outer_result == []  # the worker was stopped and joined


def test_an_error_in_a_job_is_raised_after_stopping_the_others():
    def broken(callback, should_stop):
        callback({"step": 1})
        raise ValueError("bad settings")

    flag = threading.Event()
    with pytest.raises(ValueError, match="bad settings"):
        drive(stream({"ok": counting_job(10_000, 0.001), "broken": broken}, flag, lambda *a: None,
                     lambda clock: "update"))
    assert flag.is_set()


def test_followers_of_one_run_share_each_drawing_and_the_final_frame():
    """20 pages following one run through the hub: each frame is drawn (and its figure encoded) by one of them and
    sent to the others, so the room draws about as often as one page would, not 20 times as often; every page gets
    every event, the same final outputs, and the final frame (once) is drawn once and served from the results."""
    from matplotlib.figure import Figure

    from tabs.kit.exports import figure_of
    from tabs.kit.stream import once

    sessions = SessionStore()
    draws, finals, lock = [], [], threading.Lock()
    go = threading.Event()

    def job(callback, should_stop):
        go.wait(5)
        for step in range(1, 31):
            time.sleep(0.1)  # 3 s in all: a page alone redraws many times meanwhile
            callback({"step": step, "steps_total": 30})
        return {"last": 30}

    def page(i, out):
        seen = []

        def view(clock):  # cheap, so that no page is slowed by drawing (tabs/kit/stream.DRAW_RATIO)
            with lock:
                draws.append(i)
            return (f"step {seen[-1]['step']}", None)

        def final():
            with lock:
                finals.append(i)
            fig = Figure()
            fig.add_subplot().plot([e["step"] for e in seen])
            return (f"done at {seen[-1]['step']}", fig)

        def handler():
            res = yield from stream({"j": job}, threading.Event(), lambda n, ev: seen.append(ev), view,
                                    every_s=0.0, sessions=sessions, request=Req(f"p{i}"), key="shared-key",
                                    label="test")
            yield once(res, "done", final)

        updates, _ = drive(handler())
        out[i] = (updates, [e["step"] for e in seen])

    out = {}
    pages = [threading.Thread(target=page, args=(i, out)) for i in range(20)]
    for t in pages:
        t.start()
    time.sleep(0.3)  # every page attached before the run goes
    go.set()
    for t in pages:
        t.join(30)
    assert len(out) == 20 and all(steps == list(range(1, 31)) for _, steps in out.values())
    assert sessions.room.computations == {"shared-key": 1}
    assert len(draws) <= 31  # at most one drawing per new event for the whole room (unshared: 600 here)
    assert len(finals) == 1
    last = [u[-1] for u, _ in out.values()]
    assert all(x is last[0] for x in last) and last[0][0] == "done at 30"
    assert len(figure_of(last[0][1]).axes[0].lines[0].get_xdata()) == 30  # the figure stays exportable
    assert all(not isinstance(x, Figure) for u, _ in out.values() for upd in u for x in upd)  # encoded once, shared
