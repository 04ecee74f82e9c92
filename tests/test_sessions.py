"""What the server keeps per visitor is released: a page that closes leaves nothing behind in Gradio's per-session
state (SessionState, the queue's per-session entries) nor in our SessionStore, API sessions are released by the
idle sweep, and the server's memory stays flat over 100 fresh sessions (the quick version of
benchmarks/bench_sessions.py, which runs 1,000)."""
import asyncio
import os
import sys
import time


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import bench_sessions as bench  # noqa: E402
from tabs.kit.runs import release_memory  # noqa: E402

N = 100  # fresh sessions in the measured round
BYTES_PER_SESSION = bench.GOAL_BYTES_PER_SESSION  # 100 kB: 100 MB for the benchmark's 1,000


def held(demo) -> dict:
    """What Gradio and the app hold per session right now."""
    q = demo._queue
    return {"gradio sessions": len(demo.state_holder.session_data),
            "event-id sets": len(q.pending_event_ids_session), "message queues": len(q.pending_messages_per_session),
            "closed, waiting": len(demo.released_sessions.closed), "pages": len(demo.released_sessions.pages)}


def settled(demo, timeout=60.0) -> dict:
    """Wait until the unload events of the closed pages ran and nothing is held (or timeout) -> held()."""
    end = time.time() + timeout
    while time.time() < end:
        now = held(demo)
        if not any(now.values()):
            return now
        time.sleep(0.25)
    return held(demo)


def run_on_loop(demo, fn):
    """Run fn() on the server's event loop (where Gradio's routes use the same dicts) and wait for it."""
    async def call():
        return fn()

    return asyncio.run_coroutine_threadsafe(call(), demo.released_sessions.loop).result(10)


def test_closed_pages_leave_nothing_and_memory_stays_flat(app, tiny_dir):
    demo, url = app
    page = bench.Page(url)
    # warm-up as the benchmark does (50 sessions): thread pools and allocator arenas grow during the first visits
    assert bench.crowd(page, 50, 0, 4, 2, model=tiny_dir) == 50
    assert settled(demo) == dict.fromkeys(held(demo), 0)
    # the clients run in this process too: what they freed is handed back before each reading, so RSS counts what
    # is kept (tabs.kit.runs.release_memory: gc + malloc_trim)
    released = demo.released_sessions.released

    def round_growth(start: int) -> int:
        """RSS growth over N fresh sessions, opened and closed; every page's SessionState is released."""
        release_memory()
        before = bench.rss_bytes(os.getpid())
        assert bench.crowd(page, N, start, 4, 2, model=tiny_dir) == N
        assert settled(demo) == dict.fromkeys(held(demo), 0)
        release_memory()
        grown = bench.rss_bytes(os.getpid()) - before
        print(f"{N} fresh sessions: RSS {grown / 2 ** 20:+.1f} MiB ({grown / N / 1024:.1f} KiB per session)")
        return grown

    grown = round_growth(1000)
    assert demo.released_sessions.released - released == N  # each page's SessionState, released on close
    if grown > N * BYTES_PER_SESSION:
        # one allocator arena growing by a few MiB is not per-session memory (CI once measured +9.7 MiB, 98.9 KiB a
        # session, over 100): a second round tells them apart, since memory kept per session grows in both rounds
        grown = min(grown, round_growth(2000))
    assert grown <= N * BYTES_PER_SESSION  # before: ~2.2 MiB per session


def test_api_sessions_are_released_by_the_idle_sweep(app, tiny_dir):
    """/gradio_api/call/... makes a session per call and never opens the heartbeat: the sweep releases it once
    idle for api_idle_s, while a page (it ran the load event) is kept until idle_s."""
    from test_api_matrix import call, endpoints, start_values

    demo, url = app
    rel = demo.released_sessions
    fn = endpoints(demo)["sample"]
    assert call(url, fn._id, start_values(demo, fn, tiny_dir), session="apisession1")[0] == "ok"
    page = bench.Page(url)
    assert bench.visit(page, 7, 2, close=False, model=tiny_dir)  # a page left open
    sessions = set(demo.state_holder.session_data)
    assert "apisession1" in sessions and len(sessions) == 2 and len(rel.pages) == 1
    api_idle_s = rel.api_idle_s
    try:
        rel.api_idle_s = 0.0
        run_on_loop(demo, rel.sweep)
        assert set(demo.state_holder.session_data) == set(rel.pages) == sessions - {"apisession1"}
        run_on_loop(demo, lambda: rel.sweep(now=time.time() + rel.idle_s + 1))  # an hour later
        assert held(demo)["gradio sessions"] == 0 and not rel.pages
    finally:
        rel.api_idle_s = api_idle_s
