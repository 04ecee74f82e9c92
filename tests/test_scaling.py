"""Scaling laws: the fit recovers known power laws (exact and noisy), the IsoFLOP analysis recovers Chinchilla's
N_opt ∝ C^(β/(α+β)) from runs drawn from their parametric law, the sweep plan keeps C = 6ND, a tiny sweep runs on
the command line and in the tab, and the shipped sweep is consistent with its own fits."""
import json
import math
import os

import gradio as gr
import numpy as np
import pytest
from conftest import ROOT, drain, run_cli

from tabs import scaling as scaling_tab
from tabs.kit.exports import figure_of
from tabs.kit.sessions import SessionStore
from tabs.kit import stream as stream_kit
from tinygpt.beyond import SweepConfig, analyse_sweep, fit_loglinear, fit_power_law, plan_sweep, scaling_sweep
from tinygpt.beyond.scaling import (
    compute_frontier,
    format_budgets,
    format_shapes,
    isoflop_optimum,
    parse_budgets,
    parse_shapes,
)
from tinygpt.defaults import SCALING, SCALING_LECTURE
from tinygpt.config import GPTConfig
from tinygpt.params import count_parameters

TEXT = "the quick brown fox jumps over the lazy dog. " * 200
TINY = dict(shapes=((1, 1, 8), (1, 2, 16), (1, 2, 24)), steps=10, budgets=(1e7, 3e7), context=16, batch_size=4,
            min_steps=3, max_steps=400, eval_windows=8)


def test_fit_recovers_an_exact_power_law():
    N = np.geomspace(1e4, 1e8, 8)
    fit = fit_power_law(N, 50 * N ** -0.35 + 1.2)
    assert fit["a"] == pytest.approx(50, rel=1e-6) and fit["alpha"] == pytest.approx(0.35, rel=1e-6)
    assert fit["c"] == pytest.approx(1.2, rel=1e-6) and fit["r2"] == pytest.approx(1.0, abs=1e-12)
    pure = fit_power_law(N, 3.0 * N ** -0.076, c=0.0)  # Kaplan's form: no offset
    assert pure["alpha"] == pytest.approx(0.076, rel=1e-9) and pure["a"] == pytest.approx(3.0, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_recovers_a_noisy_power_law(seed):
    rng = np.random.default_rng(seed)
    N = np.geomspace(1e3, 1e6, 10)
    L = (20 * N ** -0.3 + 1.5) * (1 + 0.003 * rng.standard_normal(len(N)))  # 0.3% noise, like one seed's losses
    fit = fit_power_law(N, L)
    assert fit["alpha"] == pytest.approx(0.3, abs=0.05)
    assert fit["c"] == pytest.approx(1.5, abs=0.1)
    assert fit["r2"] > 0.99
    # the least-squares optimum: no nearby offset does better
    sse = float(np.sum((L - fit["c"] - fit["a"] * N ** -fit["alpha"]) ** 2))
    for dc in (-0.01, 0.01):
        assert fit_power_law(N, L, c=fit["c"] + dc)["r2"] <= fit["r2"] + 1e-12
    assert sse >= 0


def test_fit_bad_input():
    with pytest.raises(ValueError, match="at least 3"):
        fit_power_law([1, 2], [3, 2])
    with pytest.raises(ValueError, match="above 0"):
        fit_power_law([0, 1, 2], [3, 2, 1])
    with pytest.raises(ValueError, match="equal"):
        fit_power_law([1, 2, 3], [2, 2, 2])
    with pytest.raises(ValueError, match="same length"):
        fit_power_law([1, 2, 3], [2, 1])


def test_loglinear_and_isoflop_optimum():
    C = np.array([1e10, 1e11, 1e12])
    f = fit_loglinear(C, 0.1 * C ** 0.5)
    assert f["exponent"] == pytest.approx(0.5) and f["k"] == pytest.approx(0.1) and f["r2"] == pytest.approx(1)
    n = np.geomspace(1e3, 1e5, 9)
    opt = isoflop_optimum(n, 2.0 + 0.3 * (np.log10(n) - math.log10(12345)) ** 2)  # a parabola in log N
    assert opt["params"] == pytest.approx(12345, rel=1e-6) and opt["val_loss"] == pytest.approx(2.0)
    assert not opt["edge"] and opt["method"] == "parabola"
    edge = isoflop_optimum(n, 3.0 - np.log10(n))  # still falling at the largest size
    assert edge["edge"] and edge["params"] == pytest.approx(1e5)


def chinchilla_loss(N, D, E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28):
    """Hoffmann et al. 2022, eq. 10 with their fitted constants."""
    return E + A / N ** alpha + B / D ** beta


def test_analysis_recovers_chinchilla_from_its_own_law():
    runs = []
    D = 1e9
    for N in np.geomspace(1e6, 1e9, 7):  # the size sweep: D fixed -> a N^-alpha + c with c = E + B / D^beta
        runs.append({"params": N, "tokens": D, "flops": 6 * N * D, "val_loss": chinchilla_loss(N, D),
                     "group": "size", "budget": None})
    budgets = [1e19, 1e20, 1e21]
    for C in budgets:
        for N in np.geomspace(1e7, 1e11, 25):
            runs.append({"params": N, "tokens": C / (6 * N), "flops": C, "val_loss": chinchilla_loss(N, C / (6 * N)),
                         "group": "budget", "budget": C})
    out = analyse_sweep(runs)
    assert out["fit"]["alpha"] == pytest.approx(0.34, rel=1e-4)
    assert out["fit"]["c"] == pytest.approx(1.69 + 410.7 / D ** 0.28, rel=1e-4)
    # closed form: N_opt = G (C/6)^(beta/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta))
    a_true = 0.28 / (0.34 + 0.28)
    G = (0.34 * 406.4 / (0.28 * 410.7)) ** (1 / 0.62)
    assert out["optimum"]["exponent"] == pytest.approx(a_true, abs=0.01)
    for b in out["budgets"]:
        assert b["n_opt"] == pytest.approx(G * (b["flops"] / 6) ** a_true, rel=0.05)
        assert b["d_opt"] == pytest.approx(b["flops"] / (6 * b["n_opt"]))
    assert [b["flops"] for b in out["budgets"]] == budgets
    assert out["optimum"]["loss_exponent"] < 0  # more compute, lower best loss
    frontier = compute_frontier(runs)
    assert all(a["flops"] <= b["flops"] and a["val_loss"] > b["val_loss"] for a, b in zip(frontier, frontier[1:]))


def test_plan_keeps_c_equal_6nd():
    cfg = SweepConfig(shapes=((1, 2, 16), (1, 2, 32), (2, 4, 64), (1, 1, 8)), steps=100, budgets=(3e9, 1e10),
                      context=64, batch_size=16, min_steps=30, max_steps=5000)
    plan = plan_sweep(cfg, 65)
    size = [r for r in plan if r["group"] == "size"]
    assert [r["params"] for r in size] == sorted(r["params"] for r in size)  # sorted by size
    for r in plan:
        N = count_parameters(GPTConfig(vocab_size=65, block_size=64, n_layer=r["shape"][0], n_head=r["shape"][1],
                                       n_embd=r["shape"][2]))["non_embedding"]
        assert r["params"] == N and r["tokens"] == r["steps"] * 1024 and r["flops"] == 6 * N * r["tokens"]
        if r["group"] == "budget":
            assert r["steps"] == round(r["budget"] / (6 * N * 1024))
            assert 30 <= r["steps"] <= 5000
            assert abs(r["flops"] - r["budget"]) <= 6 * N * 1024 / 2  # within half a step of the budget
    with pytest.raises(ValueError, match="needs at least 3"):
        plan_sweep(cfg.__class__(**{**cfg.__dict__, "budgets": (1e13,)}), 65)
    with pytest.raises(ValueError, match="same number"):
        plan_sweep(SweepConfig(shapes=((1, 2, 16), (1, 2, 16))), 65)
    with pytest.raises(ValueError, match="divisible"):
        plan_sweep(SweepConfig(shapes=((1, 3, 16),)), 65)


def test_parse_settings():
    assert parse_shapes("1x2x16, 2X4x64") == ((1, 2, 16), (2, 4, 64))
    assert parse_budgets("1.5e10, 5e10") == (1.5e10, 5e10)
    for bad in ("", "1x2", "axbxc", "1x0x16"):
        with pytest.raises(ValueError, match="layers x heads"):
            parse_shapes(bad)
    for bad in ("", "x", "-1e10", "inf"):
        with pytest.raises(ValueError, match="FLOPs"):
            parse_budgets(bad)
    # the text forms (tab fields, links, the command line) read back to the same settings
    for table in (SCALING, SCALING_LECTURE):
        assert parse_shapes(format_shapes(table["shapes"])) == tuple(table["shapes"])
        assert parse_budgets(format_budgets(table["budgets"], ",")) == tuple(table["budgets"])
    assert format_shapes(((1, 2, 16), (2, 4, 64))) == "1x2x16, 2x4x64"
    assert format_budgets((1.5e10, 5e10)) == "1.5e+10, 5e+10"


def test_lecture_sweep_is_smaller_and_still_has_two_budgets():
    """The course map's re-run (SCALING_LECTURE) plans fewer steps than the shipped sweep and keeps at least
    3 sizes in each of at least 2 budgets (an optimum per budget, and N_opt ∝ C^a needs two)."""
    full = plan_sweep(SweepConfig(), 65)
    lecture = plan_sweep(SweepConfig(shapes=SCALING_LECTURE["shapes"], steps=SCALING_LECTURE["steps"],
                                     budgets=SCALING_LECTURE["budgets"]), 65)
    assert sum(r["steps"] for r in lecture) < 0.6 * sum(r["steps"] for r in full)
    per_budget = {}
    for r in lecture:
        if r["group"] == "budget":
            per_budget[r["budget"]] = per_budget.get(r["budget"], 0) + 1
    assert len(per_budget) >= 2 and min(per_budget.values()) >= 3


def test_tiny_sweep_reports_every_run_and_stops():
    events = []
    out = scaling_sweep(SweepConfig(**TINY), TEXT, events.append)
    assert len(out["runs"]) == out["planned_runs"] and not out["stopped"]
    assert [e["run"] for e in events if e["kind"] == "run"] == list(range(len(out["runs"])))
    assert all(set(r) >= {"params", "tokens", "flops", "val_loss"} for r in out["runs"])
    assert set(out["fit"]) == {"a", "alpha", "c", "r2"} and len(out["budgets"]) == 2
    seen = []
    stopped = scaling_sweep(SweepConfig(**TINY), TEXT, seen.append, should_stop=lambda: len(seen) >= 25)
    assert stopped["stopped"] and 0 < len(stopped["runs"]) < out["planned_runs"]


def test_sweep_in_a_child_process_equals_the_sweep_here():
    """tinygpt.beyond.sweep_process (what the tab runs): the same runs and losses as scaling_sweep in this process
    (same seed, same torch threads), every finished run reported, steps thinned, and Stop honoured."""
    import torch

    from tinygpt.beyond.sweep_process import scaling_sweep_in_process

    threads = torch.get_num_threads()
    here = scaling_sweep(SweepConfig(**TINY), TEXT, corpus_name="t")
    events: list = []
    there = scaling_sweep_in_process(SweepConfig(**TINY), TEXT, events.append, corpus_name="t", threads=threads)
    assert [r["params"] for r in there["runs"]] == [r["params"] for r in here["runs"]]
    for a, b in zip(there["runs"], here["runs"]):
        assert math.isclose(a["val_loss"], b["val_loss"], rel_tol=1e-5), (a, b)
    assert there["planned_runs"] == here["planned_runs"] and not there["stopped"]
    runs = [e for e in events if e["kind"] == "run"]
    assert [e["run"] for e in runs] == list(range(here["planned_runs"]))
    steps = [e for e in events if e["kind"] == "step"]
    assert 0 < len(steps) <= sum(r["steps"] for r in here["runs"])
    # Stop: asked at the first event, the child ends after that step with fewer runs, analysed as usual
    seen: list = []
    stopped = scaling_sweep_in_process(SweepConfig(**TINY), TEXT, seen.append, should_stop=lambda: len(seen) >= 1)
    assert stopped["stopped"] and len(stopped["runs"]) < here["planned_runs"]
    with pytest.raises(RuntimeError, match="too short"):  # the child's error, raised here
        scaling_sweep_in_process(SweepConfig(**TINY), "abc" * 5)


def test_sweep_shared_by_two_child_processes_equals_the_sweep_here():
    """workers=2 (what the tab runs): two children each train every other run with one torch thread; every run is
    reported once, the joined report has every run in plan order with this process's losses (up to float
    rounding: one thread sums in another order than two), the same fits, and Stop reaches both children."""
    from tinygpt.beyond.sweep_process import scaling_sweep_in_process

    here = scaling_sweep(SweepConfig(**TINY), TEXT, corpus_name="t")
    events: list = []
    there = scaling_sweep_in_process(SweepConfig(**TINY), TEXT, events.append, corpus_name="t", workers=2)
    assert [r["index"] for r in there["runs"]] == list(range(here["planned_runs"])) and not there["stopped"]
    assert sorted(e["run"] for e in events if e["kind"] == "run") == list(range(here["planned_runs"]))
    for a, b in zip(there["runs"], here["runs"]):
        assert (a["params"], a["steps"]) == (b["params"], b["steps"])
        assert math.isclose(a["val_loss"], b["val_loss"], rel_tol=1e-3), (a, b)
    assert math.isclose(there["fit"]["alpha"], here["fit"]["alpha"], rel_tol=1e-2)
    assert [o["n_opt"] for o in there["budgets"]] == pytest.approx([o["n_opt"] for o in here["budgets"]], rel=1e-2)
    seen: list = []
    stopped = scaling_sweep_in_process(SweepConfig(**TINY), TEXT, seen.append, should_stop=lambda: len(seen) >= 1,
                                       workers=2)
    assert stopped["stopped"] and len(stopped["runs"]) < here["planned_runs"]


def test_cli_scaling_tiny_sweep(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(TEXT)
    out_file = tmp_path / "sweep.json"
    r = run_cli("scaling", "--text", str(f), "--shapes", "1x1x8,1x2x16,1x2x24", "--steps", "10", "--budgets",
                "1e7,3e7", "--context", "16", "--batch-size", "4", "--min-steps", "3", "--max-steps", "400",
                "--eval-windows", "8", "--out", str(out_file), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {"runs", "fit", "budgets", "budget"} <= set(out)
    assert out["budget"]["action"] == "scaling" and out["budget"]["fits"] is True
    assert "budget" not in json.loads(out_file.read_text())  # the sweep's file holds the sweep
    assert all({"params", "tokens", "flops", "val_loss"} <= set(run) for run in out["runs"])
    assert set(out["fit"]) == {"a", "alpha", "c", "r2"}
    assert len(out["budgets"]) == 2 and all(b["flops"] in (1e7, 3e7) for b in out["budgets"])
    assert out["command"].startswith("python -m tinygpt scaling --shapes 1x1x8,1x2x16,1x2x24 --steps 10")
    assert json.loads(out_file.read_text())["runs"] == out["runs"]
    bad = run_cli("scaling", "--shapes", "1x2", "--json")
    assert bad.returncode == 2 and "layers x heads" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("scaling", "--text", str(f), "--budgets", "1e20", "--json")
    assert bad.returncode == 2 and "needs at least 3" in bad.stderr


def test_shipped_sweep_is_consistent():
    path = os.path.join(ROOT, "assets", "scaling", "default_sweep.json")
    with open(path, encoding="utf-8") as f:
        shipped = json.load(f)
    assert shipped["command"].startswith("python -m tinygpt scaling")
    redo = analyse_sweep(shipped["runs"])
    assert redo["fit"] == pytest.approx(shipped["fit"])
    assert [b["n_opt"] for b in redo["budgets"]] == pytest.approx([b["n_opt"] for b in shipped["budgets"]])
    size = sorted((r for r in shipped["runs"] if r["group"] == "size"), key=lambda r: r["params"])
    assert size[0]["val_loss"] > size[-1]["val_loss"]
    assert len(shipped["budgets"]) == 3


# ---- the tab ----------------------------------------------------------------------------------------------
class Req:
    session_hash = "scaling-tester"


FORM = dict(corpus="Python docs (offline, built-in)", shapes="1x1x8, 1x2x16, 1x2x24", steps=10,
            budgets="1e7, 3e7", lr=1e-2, batch=4, context=16, min_steps=3, max_steps=400)


def test_tab_rerun_estimate_and_cap(monkeypatch):
    sessions = SessionStore()
    status, fig, tables, explain = drain(scaling_tab.on_rerun(sessions, **FORM, request=Req(),
                                                              progress=lambda *a, **k: None))
    result = sessions.get(Req())["scaling"]
    assert status.startswith("Done") and len(result["runs"]) == result["planned_runs"]
    assert len(figure_of(fig).axes) == 4 and "N_opt" in tables and "Kaplan" in explain and "Hoffmann" in explain
    assert "runs" in scaling_tab.on_estimate(**FORM) and "cap" in scaling_tab.on_estimate(**FORM)
    monkeypatch.setenv("TINYGPT_RUN_MINUTES", "0.0001")  # the cap is the budget's: refused before it starts
    assert "**refused** if you re-run it" in scaling_tab.on_estimate(**FORM)
    with pytest.raises(gr.Error, match="This run needs about .* but a run on this server may use at most"):
        drain(scaling_tab.on_rerun(SessionStore(), **FORM, request=Req(), progress=lambda *a, **k: None))


def test_tab_bad_settings():
    for changes, msg in ((dict(shapes="1x2"), "layers x heads"), (dict(budgets="lots"), "FLOPs"),
                         (dict(shapes="9x2x16"), "too big"), (dict(budgets="1e20"), "needs at least 3"),
                         (dict(lr="abc"), "Learning rate")):
        with pytest.raises(gr.Error, match=msg):
            scaling_tab.on_estimate(**{**FORM, **changes})


def test_tab_draws_the_shipped_sweep_and_nothing():
    shipped = scaling_tab.load_sweep(scaling_tab.DEFAULT_SWEEP)
    assert shipped and len(scaling_tab.sweep_figure(shipped).axes) == 4
    text = scaling_tab.explain(shipped)
    assert f"{shipped['fit']['alpha']:.3f}" in text and "0.076" in text and "0.50" in text
    assert len(scaling_tab.sweep_figure(None).axes) == 4 and scaling_tab.explain(None) == ""
    assert scaling_tab.load_sweep("/nonexistent.json") is None


def test_tab_rerun_stops_at_the_cap_with_partial_results(monkeypatch):
    """The prediction said it fits; the measured time passes the cap: the sweep stops there and shows what finished."""
    monkeypatch.setattr(scaling_tab, "TIME_CAP_S", 0.5)  # the budget's estimate fits its 10 minutes
    # a page update as soon as the first steps arrive (the children's start takes over a second), however long the
    # first update took to draw: otherwise the cap's stop may come before the next update is due
    monkeypatch.setattr(stream_kit, "DRAW_RATIO", 0.0)
    sessions = SessionStore()
    outs = list(scaling_tab.on_rerun(sessions, **FORM, request=Req(), progress=lambda *a, **k: None))
    first, (status, fig, tables, _) = outs[0][0], outs[-1]
    assert "predicted" in first.lower() and "measured" in first
    result = sessions.get(Req())["scaling"]
    assert status.startswith("Stopped at the 0.5-second cap") and result["stopped"]
    assert len(result["runs"]) < result["planned_runs"] and f"{len(result['runs'])} of" in status
    assert "cap" in result["note"] and len(figure_of(fig).axes) == 4 and (not result["runs"] or "group" in tables)
    # while it ran, the time left came from the sweep's own progress (the kit's clock); the updates that change
    # nothing (gr.skip(), sent while the sweep's process starts) show no status
    shown = [o[0] for o in outs[1:-1] if isinstance(o[0], str)]
    assert shown and all("(measured)" in text for text in shown)
