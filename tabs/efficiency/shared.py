"""What the Efficiency tab's sections share: the tab's own Stop (never another tab's run), how its measurements
are queued, colours, and the sequence lengths typed into a box.

The KV-cache timing, the attention benchmark and the profile run through the room's run hub (tabs/kit/runs.py,
via tabs/kit/stream.py) in its "measure" lane: one slot, so one measurement times at a time (two would slow each
other and both report wrong times) and none waits behind a 10-minute training run in the long lane; identical
requests from the room are computed once, each is budgeted before it starts, and it stops when its last follower
leaves. Their Gradio events therefore take every request at once (ROOM): the hub, not Gradio's queue, admits them
and shows each waiting page its place.
"""
from __future__ import annotations

import time

from ..kit.common import UserError
from ..kit.stream import Stopper

MEASURE = dict(concurrency_id="measure", concurrency_limit=1)  # one heavy measurement at a time, others queue
ROOM = dict(concurrency_limit=None)  # handlers that go through the room's hub: it admits them (lane "measure")
LANE = "measure"  # the hub's lane of the measurements (one slot)
TICK_S = 0.5  # a measurement that has nothing to report still updates its page this often
COLORS = {"standard": "#e8590c", "tiled": "#1c7ed6", "sdpa": "#2b8a3e", "MHA": "#e8590c", "MQA": "#2b8a3e"}
STOP = Stopper("efficiency", message="Stopping…")  # one flag for the tab: its Stop buttons end its running measurement
fresh_stop = STOP.fresh  # (sessions, request) -> this run's flag
on_stop = STOP  # (sessions, request) -> "Stopping…": every Stop button of the tab


def parse_lengths(text, name: str = "Sequence lengths") -> list[int]:
    parts = [t for t in str(text or "").replace(" ", "").split(",") if t]
    try:
        values = [int(float(t)) for t in parts]
    except ValueError:
        raise UserError(f"{name} must be whole numbers separated by commas, like 64,128,256.") from None
    if not values:
        raise UserError(f"Give at least one value for {name.lower()}, like 64,128,256.")
    return values


def default_lengths(block_size: int) -> str:
    """Four lengths up to the context: block/8, block/4, block/2, block."""
    return ",".join(str(max(2, block_size // d)) for d in (8, 4, 2, 1))


def mib(n) -> float:
    return n / 2 ** 20


def ticking(callback, should_stop, every_s: float = TICK_S):
    """should_stop for a measurement that may report nothing for a long time (one child process, one long forward
    pass): each call also sends {"kind": "tick", "elapsed": s} at most every `every_s` seconds. The page then
    shows the time so far, and a handler whose request was cancelled (the page closed, gradio_client's cancel)
    reaches its next yield soon and is closed there: that ends the run when nobody else follows it."""
    t0 = last = time.perf_counter()

    def check() -> bool:
        nonlocal last
        now = time.perf_counter()
        if now - last >= every_s:
            last = now
            callback({"kind": "tick", "elapsed": now - t0})
        return should_stop()
    return check
