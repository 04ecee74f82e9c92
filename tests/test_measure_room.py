"""The Efficiency tab's measurements in the room (tabs/efficiency/shared.py): the KV-cache timing, the profile and
the attention benchmark go through the run hub's one-slot "measure" lane: identical requests are computed once,
one measurement times at a time and none waits behind a long training run, each is budgeted before it starts
(refused in one sentence), and a request that goes away ends its run (the benchmark's child process included)."""
import os
import threading
import time
from types import SimpleNamespace

import gradio as gr
import pytest
from conftest import drain

from tabs import efficiency as eff
from tabs.kit.runs import RunHub
from tabs.kit.sessions import SessionStore
from tabs.efficiency.shared import ticking


def children(pid: int = None) -> list[int]:
    """The live child processes of `pid` (default: this process), from /proc (Linux)."""
    pid = pid or os.getpid()
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def wait_for(cond, timeout=10.0, every=0.05):
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        if cond():
            return True
        time.sleep(every)
    return cond()


def idle(hub: RunHub) -> bool:
    return all(v == {"running": 0, "queued": 0} for v in hub.load().values())


def job(steps=10, sleep=0.02, log=None, name=""):
    def run(callback, should_stop):
        if log is not None:
            log.append(("start", name, time.perf_counter()))
        for s in range(steps):
            if should_stop():
                break
            time.sleep(sleep)
            callback({"step": s + 1, "steps_total": steps})
        if log is not None:
            log.append(("end", name, time.perf_counter()))
        return name
    return run


def test_measurements_run_one_at_a_time_and_never_behind_a_long_run():
    hub, log = RunHub(), []
    long = hub.open("train", {"A": job(steps=200, log=log, name="train")}, user="t", seconds=600)
    assert long.run.lane == "long"
    m1 = hub.open("m1", {"A": job(steps=10, log=log, name="m1")}, user="a", seconds=5, lane="measure")
    m2 = hub.open("m2", {"A": job(steps=10, log=log, name="m2")}, user="b", seconds=5, lane="measure")
    assert m1.run.state == "running" and m2.run.state == "queued"  # the training run does not hold them back
    assert hub.wait_info(m2.run)["lane"] == "measure"
    for t in (m1, m2):
        list(t.follow())
    ends = {n: t for k, n, t in log if k == "end"}
    starts = {n: t for k, n, t in log if k == "start"}
    assert starts["m2"] >= ends["m1"]  # never two timings at once
    assert long.run.state == "running"
    long.close()
    assert wait_for(lambda: idle(hub))
    with pytest.raises(ValueError, match="lane"):
        hub.open("x", {"A": job()}, user="c", seconds=1, lane="fast")


def test_wait_text_names_the_measurements_lane():
    from tabs.kit.runs import wait_text

    assert "measurements lane" in wait_text({"position": 1, "lane": "measure", "start_in_s": 3.0, "ahead": 0})


def test_ticking_reports_while_nothing_else_happens():
    seen = []
    check = ticking(seen.append, lambda: False, every_s=0.05)
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        assert check() is False
        time.sleep(0.01)
    assert 3 <= len(seen) <= 7 and all(e["kind"] == "tick" for e in seen)


def _in_threads(fn, users):
    out, errors = {}, {}

    def go(u):
        try:
            out[u] = fn(SimpleNamespace(session_hash=u))
        except Exception as e:  # noqa: BLE001
            errors[u] = e

    threads = [threading.Thread(target=go, args=(u,)) for u in users]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join(120)
    assert not errors, errors
    return out


def test_identical_profiles_are_computed_once(models, tiny_dir):
    sessions = SessionStore()
    out = _in_threads(lambda req: drain(eff.on_profile(models, sessions, tiny_dir, False, 1, "8,16", 2, req)),
                      ["s1", "s2", "s3"])
    assert list(sessions.room.computations.values()) == [1]
    rows = [o[1] for o in out.values()]
    assert rows[0] == rows[1] == rows[2] and {r[0] for r in rows[0]} == {8, 16}
    # a different setting is its own run
    drain(eff.on_profile(models, sessions, tiny_dir, False, 1, "8", 2, SimpleNamespace(session_hash="s1")))
    assert len(sessions.room.computations) == 2


def test_identical_kv_timings_are_computed_once(models, tiny_dir):
    sessions = SessionStore()
    out = _in_threads(lambda req: drain(eff.on_kv_cache(models, sessions, tiny_dir, False, "Hello", 24, req)),
                      ["a", "b"])
    assert list(sessions.room.computations.values()) == [1]
    assert out["a"][1] == out["b"][1] and "the same tokens" in out["a"][1]


def test_measurements_are_budgeted_before_they_start(models, tiny_dir, monkeypatch):
    monkeypatch.setenv("TINYGPT_RUN_MEMORY_GB", "0.000001")  # 1 kB per run: every measurement is refused
    sessions = SessionStore()
    for gen in (eff.on_profile(models, sessions, tiny_dir, False, 1, "8", 1),
                eff.on_kv_cache(models, sessions, tiny_dir, False, "Hello", 8),
                eff.on_flash_bench(sessions, ["1,024"], ["sdpa"], 64, 1)):
        with pytest.raises(gr.Error) as e:
            drain(gen)
        msg = str(e.value)
        assert "needs about" in msg and "at most 1 kB" in msg and "\n" not in msg
    assert sessions.room.computations == {} and idle(sessions.room)


def test_a_benchmark_whose_page_goes_away_kills_its_child():
    sessions = SessionStore()
    before = set(children())
    gen = eff.on_flash_bench(sessions, ["4,096"], ["standard"], 64, 3)
    assert "Measuring standard at 4,096" in next(gen)[2]
    assert wait_for(lambda: set(children()) - before, timeout=10)  # the case's child process is running
    t = time.perf_counter()
    gen.close()  # what Gradio does when the request is cancelled or the page closes
    assert wait_for(lambda: idle(sessions.room), timeout=10)
    assert wait_for(lambda: not set(children()) - before, timeout=10)
    assert time.perf_counter() - t < 10


def test_a_quiet_run_still_updates_its_page_and_closing_it_stops_the_run():
    """A run that reports nothing for a while (an evaluation, a child process): stream() yields an update that
    skips every output about once a second, so a cancelled request's handler is closed there, promptly."""
    from tabs.kit.stream import IDLE_S, stream

    sessions, ended = SessionStore(), threading.Event()

    def quiet(callback, should_stop):
        callback({"kind": "start"})
        while not should_stop():
            time.sleep(0.02)
        ended.set()

    gen = stream({"A": quiet}, threading.Event(), lambda *_: None, lambda clock: ("plot", "status"),
                 sessions=sessions, request=SimpleNamespace(session_hash="q"), key="quiet", lane="measure")
    assert next(gen) == ("plot", "status")
    t = time.perf_counter()
    update = next(gen)  # nothing happened: an update that changes nothing
    assert IDLE_S * 0.8 <= time.perf_counter() - t <= IDLE_S + 1.5
    assert len(update) == 2 and all(isinstance(x, type(gr.skip())) for x in update)
    gen.close()
    assert ended.wait(5) and wait_for(lambda: idle(sessions.room), 5)
