"""Scaling-laws tab: a sweep of small GPTs (shipped, drawn instantly; re-runnable live) with L(N) = a·N^-alpha + c,
Chinchilla-style IsoFLOP curves for three compute budgets, N_opt ∝ C^a, the published exponents next to ours,
and an Explain section on what a toy scale can and cannot show. This module holds the form, its checks and the
live re-run; the drawings are figures.py's and the Explain section explain.py's (their names are re-exported here).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from functools import partial

import gradio as gr

from tinygpt.beyond.scaling import (
    SweepConfig,
    analyse_sweep,
    format_budgets,
    format_shapes,
    model_config,
    parse_budgets,
    parse_shapes,
    plan_sweep,
)
from tinygpt.beyond.sweep_process import scaling_sweep_in_process
from tinygpt.budget import BudgetError, check, limits_from_env, machine_speed
from tinygpt.budget.estimates import estimate_scaling
from tinygpt.budget.terms import Work, windows
from tinygpt.data import CORPORA, load_corpus, make_tokenizer, python_docs
from tinygpt.defaults import SCALING

from ..kit.commands import cli, cli_python
from ..kit.common import UserError, clamp_int, human_flops, parse_float, user_errors
from ..kit.registry import register
from ..kit.runs import run_key
from ..kit.sessions import SessionStore
from ..kit.stream import Stopper, once, stream
from .explain import HOFFMANN, KAPLAN, attention_share, carry_over, explain, fit_scatter, slope_se  # noqa: F401
from .figures import BUDGET_COLORS, sweep_figure, tables_md  # noqa: F401 - re-exported (tests, the recorder)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_SWEEP = os.path.join(ROOT, "assets", "scaling", "default_sweep.json")
SWEEP_WORKERS = 2  # child processes sharing a sweep's runs (one torch thread each on 2 cores: see sweep_process)
# A re-run is budgeted before it starts (tinygpt.budget: refused when its estimate passes a run's limits), and one
# whose measured time passes this cap stops there with the runs finished so far. None: the budget's time per run
# (10 minutes, or TINYGPT_RUN_MINUTES).
TIME_CAP_S: float | None = None
SCALING_CORPUS = "tiny-shakespeare"  # SCALING's text=None: Tiny Shakespeare (offline: the Python docs)
MAX_SHAPES, MAX_LAYERS, MAX_EMBD, MAX_BUDGETS = 10, 6, 256, 5
STOP = Stopper("scaling")


def load_sweep(path: str) -> dict | None:
    """The shipped sweep (None when the file is missing or unreadable: the tab then asks for a run)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# ---- re-running ---------------------------------------------------------------------------------------------
def check_sweep_settings(shapes, steps, budgets, lr, batch, context, min_steps, max_steps) -> tuple:
    """(SweepConfig, notes). Raises UserError with one sentence."""
    notes: list = []
    shp = parse_shapes(shapes)
    if len(shp) > MAX_SHAPES:
        raise UserError(f"At most {MAX_SHAPES} model sizes per sweep (got {len(shp)}).")
    for L, H, d in shp:
        if L > MAX_LAYERS or d > MAX_EMBD:
            raise UserError(f"Model {L}x{H}x{d} is too big for a live sweep: at most {MAX_LAYERS} layers and d_model "
                            f"{MAX_EMBD}.")
    bud = parse_budgets(budgets)
    if len(bud) > MAX_BUDGETS:
        raise UserError(f"At most {MAX_BUDGETS} compute budgets (got {len(bud)}).")
    cfg = SweepConfig(shapes=shp, steps=clamp_int(steps, 10, 5000, "Steps", notes), budgets=bud,
                      lr=parse_float(lr, "Learning rate", 1e-5, 0.1),
                      batch_size=clamp_int(batch, 1, 64, "Batch size", notes),
                      context=clamp_int(context, 8, 128, "Context", notes),
                      min_steps=clamp_int(min_steps, 1, 5000, "Shortest budget run", notes),
                      max_steps=clamp_int(max_steps, 1, 10000, "Longest budget run", notes))
    return cfg, notes


def get_text(corpus) -> tuple[str, str]:
    key = CORPORA.get(corpus, corpus)
    try:
        return load_corpus(key), key
    except ConnectionError as e:
        return python_docs(), f"python-docs ({e} The offline Python-docs corpus was used instead.)"


def cap_s() -> float:
    """The measured cap of a running sweep, in seconds: TIME_CAP_S, else the budget's time per run."""
    return float(TIME_CAP_S) if TIME_CAP_S is not None else limits_from_env().run_seconds


def run_costs(cfg: SweepConfig, vocab: int, plan: list, corpus_tokens: int) -> list:
    """Each run's predicted seconds (the budget's time model: its training steps and its two evaluations at this
    machine's measured speed): a step of a big model counts for more than one of a small model in the progress."""
    speed = machine_speed()
    n_windows = windows(corpus_tokens - int(0.9 * corpus_tokens), cfg.context, max(1, cfg.eval_windows // 8) * 8)
    costs = []
    for r in plan:
        c = model_config(r["shape"], vocab, cfg.context)
        work = Work().train(c, cfg.batch_size, cfg.context, n=r["steps"]).forward(c, n_windows, cfg.context, n=2)
        costs.append(max(work.seconds(speed), 1e-9))
    return costs


@user_errors
def on_estimate(corpus, shapes, steps, budgets, lr, batch, context, min_steps, max_steps) -> str:
    """The plan (runs, steps, FLOPs) and its predicted time on this machine (the budget's estimate: what decides
    whether a re-run starts), without training."""
    cfg, notes = check_sweep_settings(shapes, steps, budgets, lr, batch, context, min_steps, max_steps)
    text, name = get_text(corpus)
    vocab = make_tokenizer(cfg.tokenizer, text).vocab_size
    plan = plan_sweep(cfg, vocab)
    est = estimate_scaling(cfg, vocab, corpus_tokens=len(text), workers=min(SWEEP_WORKERS, len(plan)))
    try:
        check(est, limits_from_env())
        verdict = f"within the budget of a run ({est.memory} of memory), under the {cap_words()} cap."
    except BudgetError as e:
        verdict = f"**refused** if you re-run it: {e}"
    return (f"{len(plan)} runs, {sum(r['steps'] for r in plan):,} steps, {human_flops(sum(r['flops'] for r in plan))} "
            f"in total: predicted **{est.seconds / 60:.1f} min** from this machine's measured speed, {verdict} "
            "A prediction only: a machine that gets busier runs slower. Once the sweep runs, the time left is "
            "measured from its own progress, and a sweep that reaches the cap stops there with the runs finished so "
            f"far. {' '.join(notes)}")


def cap_words() -> str:
    """The cap as words: "10-minute" (or "30-second" for a cap under a minute)."""
    cap = cap_s()
    return f"{cap / 60:g}-minute" if cap >= 60 else f"{cap:g}-second"


def capped(should_stop, cap_s: float, flag: list):
    """The sweep's should_stop: the run's own (Stop), or its measured time passing the cap from now (then `flag`
    records it)."""
    t0 = time.perf_counter()

    def stop_now() -> bool:
        if should_stop is not None and should_stop():
            return True
        if time.perf_counter() - t0 > cap_s:
            flag[:] = [True]
            return True
        return False
    return stop_now


def sweep_job(cfg: SweepConfig, text: str, name: str, planned: int):
    """The sweep as the hub's job: it stops at its first step or at the measured cap (cap_s(), from when it
    starts), and then says so in its result's note -> scaling_sweep's result (+ capped). It trains in
    SWEEP_WORKERS child processes (tinygpt.beyond.sweep_process: small tensors train ~2x faster in a process's main
    thread than in the server's worker thread, and two one-thread processes beat one with two threads on them)."""
    def job(callback, should_stop):
        callback({"kind": "phase"})
        hit, cap, t0 = [], cap_s(), time.perf_counter()
        result = scaling_sweep_in_process(cfg, text, callback, capped(should_stop, cap, hit), corpus_name=name,
                                          workers=min(SWEEP_WORKERS, planned))
        if hit:
            result = {**result, "capped": True,
                      "note": f"Stopped at the {cap_words()} cap after {time.perf_counter() - t0:.0f} s: "
                              f"{len(result['runs'])} of {planned} runs finished (the fits use those)."}
        return result
    return job


def sweep_progress(plan: list, ev: dict, done: dict) -> None:
    """Note in `done` ({run index: fraction trained}) how far the run of a step or run event is: the sweep's runs
    train two at a time, so their events interleave and no single event says how far the sweep is."""
    i = ev["run"]
    frac = ev.get("step", 0) / max(plan[i]["steps"], 1) if ev["kind"] == "step" else 1.0
    done[i] = max(done.get(i, 0.0), min(frac, 1.0))


@user_errors
def on_rerun(sessions: SessionStore, corpus, shapes, steps, budgets, lr, batch, context, min_steps, max_steps,
             request: gr.Request = None, progress=gr.Progress()):
    """Stream (status, figure, tables, explanation) while the sweep trains. Keyed by the sweep's settings and the
    corpus (a student who starts the same follows the one computation); budgeted before it starts
    (tinygpt.budget.estimate_scaling: refused when it does not fit a run's limits); once it runs, the time left is
    measured from its own progress, and a sweep whose measured time passes the cap stops there with the runs
    finished so far."""
    cfg, notes = check_sweep_settings(shapes, steps, budgets, lr, batch, context, min_steps, max_steps)
    text, name = get_text(corpus)
    vocab = make_tokenizer(cfg.tokenizer, text).vocab_size
    plan = plan_sweep(cfg, vocab)
    estimate = estimate_scaling(cfg, vocab, corpus_tokens=len(text), workers=min(SWEEP_WORKERS, len(plan)))
    est = estimate.seconds
    key = run_key("scaling", {**asdict(cfg), "corpus": name}, text=text)
    stop = STOP.fresh(sessions, request)
    total = sum(r["steps"] for r in plan)
    # progress in predicted seconds: a step of a big model counts for more than one of a small model, so the time
    # left measured from it (elapsed × the work left ÷ the work done) does not assume every step costs the same
    cost = run_costs(cfg, vocab, plan, len(text))
    all_work = sum(cost)
    note = " ".join(notes)
    runs: list = []
    seen: dict = {}  # run index -> fraction trained, from the events this page has replayed
    predicted = (f"predicted before starting: about {est / 60:.1f} min, this machine's measured speed; the time left "
                 f"is measured from the sweep's own progress once it runs, and it stops at the {cap_words()} cap "
                 "whatever happens")
    head = f"Training {len(plan)} runs ({total:,} steps), {predicted}."

    def work_done(done: dict) -> float:
        return sum(f * cost[i] for i, f in done.items())

    hub_seen: dict = {}  # the same for the room's run hub (progress_of runs in the hub, record in each page)

    def progress_of(_, ev):
        if ev.get("kind") not in ("step", "run"):
            return None
        sweep_progress(plan, ev, hub_seen)
        return min(1.0, work_done(hub_seen) / all_work)

    def record(_, ev):
        if ev["kind"] == "run":
            runs.append(ev["result"])
        if ev["kind"] in ("step", "run"):
            sweep_progress(plan, ev, seen)

    def view(clock):
        if not seen:
            return f"{head} {note}", sweep_figure(None), tables_md(None), ""
        done = sum(round(f * plan[i]["steps"]) for i, f in seen.items())
        eta = clock.tick(work_done(seen), all_work, f"{len(runs)}/{len(plan)} runs done", counted=False)
        left = clock.left(work_done(seen), all_work)
        over = (f" At this pace it would pass the {cap_words()} cap: it will stop there with the runs "
                "finished so far." if clock.elapsed + left > cap_s() else "")
        in_order = sorted(runs, key=lambda r: r.get("index", 0))
        partial_result = {"runs": in_order, **analyse_sweep(in_order)}
        return (f"{len(runs)} of {len(plan)} runs done · {done:,}/{total:,} steps · {clock.elapsed:.0f} s, {eta} "
                f"(measured); predicted before starting: {est / 60:.1f} min.{over} {note}",
                sweep_figure(partial_result), tables_md(partial_result), "")

    def waiting(text):
        return f"{text} {head} {note}", sweep_figure(None), tables_md(None), ""

    out = yield from stream({"sweep": sweep_job(cfg, text, name, len(plan))}, stop, record, view, progress,
                            sessions=sessions, request=request, key=key, estimate=estimate, label="Scaling sweep",
                            waiting=waiting, progress_of=progress_of)
    result = out.get("sweep") if out else None
    if not result:
        yield f"Stopped before it started. {note}", sweep_figure(None), tables_md(None), ""
        return
    sessions.get(request)["scaling"] = result
    secs = result["seconds"]
    if result.get("capped"):
        head = (f"Stopped at the {cap_words()} cap: {len(result['runs'])} of {len(plan)} runs finished "
                f"in {secs:.0f} s (predicted: {est:.0f} s); the plots and fits below use the finished runs.")
    else:
        head = (f"Done{' (stopped early)' if result['stopped'] else ''}: {len(result['runs'])} runs in {secs:.0f} s "
                f"(predicted: {est:.0f} s).")
    yield once(out, "done", lambda: (f"{head} {note}", sweep_figure(result), tables_md(result), explain(result)))


def build(sessions: SessionStore, sweep_path: str = DEFAULT_SWEEP):
    shipped = load_sweep(sweep_path)
    d = SCALING  # the form's start-up values (the shipped sweep was made with them: tests/test_tab_defaults.py)
    shapes0, budgets0 = format_shapes(d["shapes"]), format_budgets(d["budgets"])
    with gr.Tab("Scaling laws", id="scaling"):
        gr.Markdown("How does loss fall with model size, and what is the best size for a compute budget? A sweep of "
                    "small character-level GPTs on Tiny Shakespeare: **L(N) = a·N^-α + c** from models that all see "
                    "the same tokens, and Chinchilla-style **IsoFLOP** curves: for each budget C every size N trains "
                    "on D = C/(6N) tokens. The plots show a sweep made earlier with the command below; re-run it "
                    "live (every re-run is budgeted before it starts: one that would need more memory or time than a "
                    "run may take on this server is refused, with both figures).")
        status = gr.Markdown(f"Showing the shipped sweep ({len(shipped['runs'])} runs), made with "
                             f"`{shipped.get('command', '')}`. {shipped.get('note', '')}" if shipped else
                             "No shipped sweep found: press Re-run.", elem_id="sc-status")
        plot = gr.Plot(sweep_figure(shipped), label="Scaling plots", elem_id="sc-plot")
        with gr.Accordion("Explain", open=True):
            explain_md = gr.Markdown(explain(shipped), elem_id="sc-explain")
        with gr.Accordion("Runs and optima", open=False):
            tables = gr.Markdown(tables_md(shipped), elem_id="sc-tables")
        with gr.Accordion("Re-run the sweep", open=False, elem_id="scaling-section-rerun") as rerun_section:
            with gr.Row():
                corpus = gr.Radio(list(CORPORA), value=next(k for k, v in CORPORA.items() if v == SCALING_CORPUS),
                                  label="Corpus")
                shapes = gr.Textbox(shapes0, label="Model sizes (layers x heads x d_model)", elem_id="sc-shapes")
                budgets = gr.Textbox(budgets0, label="Compute budgets C (FLOPs)", elem_id="sc-budgets")
            with gr.Row():
                steps = gr.Number(d["steps"], label="Size-sweep steps per model", precision=0, elem_id="sc-steps")
                lr = gr.Number(d["lr"], label="Learning rate")
                batch = gr.Number(d["batch_size"], label="Batch size", precision=0)
                context = gr.Number(d["context"], label="Context", precision=0)
                min_steps = gr.Number(d["min_steps"], label="Shortest budget run (steps)", precision=0,
                                      elem_id="sc-min-steps")
                max_steps = gr.Number(d["max_steps"], label="Longest budget run (steps)", precision=0,
                                      elem_id="sc-max-steps")
            with gr.Row():
                est = gr.Button("Estimate time")
                go = gr.Button("Re-run the sweep", variant="primary")
                stop = gr.Button("Stop")
            est_md = gr.Markdown(elem_id="sc-estimate")
        inputs = [corpus, shapes, steps, budgets, lr, batch, context, min_steps, max_steps]
        est.click(on_estimate, inputs, est_md, api_name="scaling_estimate", concurrency_id="scaling_estimate",
                  concurrency_limit=1)
        # its own queue without a limit: the room's run hub schedules the sweeps (and shares identical ones)
        go.click(partial(on_rerun, sessions), inputs, [status, plot, tables, explain_md], api_name="scaling",
                 concurrency_id="scaling", concurrency_limit=None)
        STOP.wire(stop, sessions, status)
        # a link's section=rerun (the course map's row) opens the form with its settings
        register("scaling", fields=dict(zip(SHARE_FIELDS, inputs)), command=command, run=go,
                 sections={"rerun": rerun_section})


SHARE_FIELDS = ("corpus", "shapes", "steps", "budgets", "lr", "batch_size", "context", "min_steps", "max_steps")


def command(v: dict) -> str:
    """The sweep as `python -m tinygpt scaling` (the corpus as a text file first, like the Train tab)."""
    cfg, _ = check_sweep_settings(*[v[k] for k in SHARE_FIELDS[1:]])
    key = CORPORA.get(v["corpus"], v["corpus"])
    code = (f"from tinygpt.data import load_corpus; "
            f"open({key + '.txt'!r}, 'w', encoding='utf-8').write(load_corpus({key!r}))")
    return "\n".join(["# the corpus as a text file", cli_python(code), cli(
        "scaling", text=f"{key}.txt", shapes=format_shapes(cfg.shapes, ","), steps=cfg.steps,
        budgets=format_budgets(cfg.budgets, ","), lr=cfg.lr, batch_size=cfg.batch_size, context=cfg.context,
        min_steps=cfg.min_steps, max_steps=cfg.max_steps, json=True)])
