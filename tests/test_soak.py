"""The soak benchmark's 2-minute version (benchmarks/soak.py): a room of students doing a mix of visits, samples,
pruning, small trains, uploads, cancels, bad inputs and the sliders' maxima against a served app, offline."""
import os
import sys

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import soak  # noqa: E402


def test_two_minute_soak_has_no_failures_and_bounded_memory():
    res = soak.soak(minutes=2, students=6, every=20, seed=3)
    assert res["failures"] == []
    assert all(n >= 1 for n in res["served"].values()), res["served"]  # every kind of action was served
    assert res["peak_bytes"] <= 12e9
    # no growth without bound: the last reading is within 500 MB of the first after the warm-up third
    readings = [b for _, b in res["rss"]]
    assert readings[-1] - readings[len(readings) // 3] <= 500e6, [round(b / 2 ** 20) for b in readings]
