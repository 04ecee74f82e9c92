"""What the Efficiency tab's sections share: the tab's own Stop (never another tab's run), the one queue slot of
heavy measurements, colours, and the sequence lengths typed into a box."""
from __future__ import annotations

from ..kit.common import UserError
from ..kit.stream import Stopper

MEASURE = dict(concurrency_id="measure", concurrency_limit=1)  # one heavy measurement at a time, others queue
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
