"""Stop and cancel through gradio_client (issue 19): a job submitted to the served app and cancelled while it runs
ends its work. For train, finetune, dpo and flash_benchmark: submit, wait until it is running, `job.cancel()`, then
(polling, at most ~10 s) the room's hub (`sessions.room`) has no run queued or going, no job thread of ours
("(worker)" threads: the hub's jobs and tabs.kit.sessions.run_jobs') is left, and the benchmark left no child
process. Written against the public api_names, so it holds whether a handler runs through the hub or not."""
import os
import threading
import time

import httpx
import pytest
from gradio_client import Client

from tabs.kit.sessions import SessionStore

ESSAY = ("The lighthouse keeper wrote every evening about the weather, the ships and the gulls. "
         "Some nights the fog was so thick that the lamp seemed to float in the air. ") * 30


def train_args():  # long enough to be cancelled while it runs: 3,000 steps of two 4-layer runs
    return ["Python docs (offline, built-in)", None, "characters", 4, 4, 128, 128, 0, 0, 0, 3000, 16, 1e-3,
            True, True, True, False, True, True, 50, 1]


def finetune_args(model):  # 300 steps of 16 x 64 tokens over GPT-2's vocabulary
    return [model, None, ESSAY, False, True, "The lighthouse", 1, "Top 2 blocks (fast)", 300, 64, 16, 1e-3, 10]


def dpo_args(model):  # 300 steps of 16 pairs, two betas (200 pairs: the reference's pass over them is short)
    return [model, "Synthetic pairs (kind vs unkind word)", 200, None, 0.1, 0.5, 300, 16, 1e-3, "All weights",
            "ROMEO:", 1]


def flash_args():  # standard and tiled attention at 4,096 tokens, 5 timed repeats each: a child process per case
    return [["4,096"], ["standard", "tiled"], 64, 5]


# dpo last: a cancel that hangs (Gradio's /cancel holds the app's lock while it waits for the handler to yield)
# would delay the cancels after it
CASES = {"train": lambda m: train_args(), "finetune": finetune_args, "flash_benchmark": lambda m: flash_args(),
         "dpo": dpo_args}


def children() -> set:
    """This process's live child processes (the server runs in it), from /proc."""
    out = set()
    for t in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            with open(f"/proc/{os.getpid()}/task/{t}/children") as f:
                out |= {int(c) for c in f.read().split()}
        except OSError:
            pass
    return out


def job_threads() -> set:
    """Our job threads: the hub's ("run-<label>", and "(worker)" per job) and run_jobs' ("(worker)")."""
    return {t.ident for t in threading.enumerate() if t.name.endswith("(worker)") or t.name.startswith("run-")}


def hub_busy(room) -> bool:
    return any(v["running"] or v["queued"] for v in room.load().values())


def wait_for(cond, timeout: float, every: float = 0.05) -> bool:
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        if cond():
            return True
        time.sleep(every)
    return bool(cond())


@pytest.fixture(scope="module")
def served(models, tiny_dir):
    from conftest import serve

    from app import build_demo

    from tabs.kit.runs import RunHub
    from tinygpt.budget import GB, Limits

    # the runs here are long on purpose (so they are still going when cancelled); on a busy machine the measured
    # speed would put the train case past the Space's 10 minutes: what is tested is cancelling, not the budget
    sessions = SessionStore(room=RunHub(limits=Limits(run_memory_bytes=8 * GB, run_seconds=3 * 3600)))
    saved = {k: os.environ.get(k) for k in ("TINYGPT_RUN_MINUTES", "TINYGPT_RUN_MEMORY_GB")}
    os.environ.update(TINYGPT_RUN_MINUTES="180", TINYGPT_RUN_MEMORY_GB="8")  # the same for checks that read the env
    demo = build_demo(models, default_model=tiny_dir, sessions=sessions, batchers=None)
    try:
        yield Client(serve(demo), verbose=False), sessions
    finally:
        demo.close()
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@pytest.mark.parametrize("api", list(CASES))
def test_cancel_ends_the_work(served, tiny_dir, api):
    client, sessions = served
    room = sessions.room
    assert wait_for(lambda: not hub_busy(room), 10)  # the previous case is over
    threads, kids = job_threads(), children()
    job = client.submit(*CASES[api](tiny_dir), api_name=f"/{api}")
    # running: it has sent a first update, and its work has started (a job thread, or the run in the hub)
    started = wait_for(lambda: job.outputs() and (job_threads() - threads or hub_busy(room)), 120)
    assert started and not job.done(), \
        f"/{api} did not start, or finished before it could be cancelled: {job.done() and job.exception()}"
    if api == "flash_benchmark":
        assert wait_for(lambda: children() - kids, 30)  # the case's child process is measuring
    try:
        job.cancel()  # Gradio's /cancel answers once the handler reached a yield and was closed
        slow = ""
    except httpx.TimeoutException:  # it did not yield for gradio_client's 5 s: said if the work goes on too
        slow = f"/{api}'s handler did not reach a yield within 5 s of the cancel. "
    # state, not a tight time: polled for up to ~10 s
    assert wait_for(lambda: not hub_busy(room), 10), slow + str(room.load())
    assert wait_for(lambda: not job_threads() - threads, 10), slow + str([t.name for t in threading.enumerate()])
    assert wait_for(lambda: not children() - kids, 10), slow + str(children() - kids)
