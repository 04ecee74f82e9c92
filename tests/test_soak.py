"""The 2-minute soak (benchmarks/soak.py, issue 19): six students on a served app for two minutes, mixing page visits,
sampling, pruning, small trains, uploads, cancels, bad inputs and the sliders' maxima. Nothing fails, every kind of
action is served, and the server's memory stays far below the Space's limit (the 30-minute, 40-student run and its
memory slope are the benchmark's)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_two_minute_soak_serves_everything_without_a_failure():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import soak

    lines = []
    res = soak.soak(minutes=2, students=6, every=20, seed=0, log=lambda *a: lines.append(" ".join(map(str, a))))
    print("\n".join(lines))
    assert res["failures"] == [], res["failures"][:5]
    assert all(res["served"][a] >= 1 for a in soak.ACTIONS), res["served"]
    assert res["requests"] >= 60
    assert res["peak_bytes"] <= 12e9
    assert len(res["rss"]) >= 6  # a reading every 20 s
