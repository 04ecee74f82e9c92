"""The training-like tabs in a room (issues 19 and 21): Train, Fine-tune, DPO, RLHF, PPO only, Scaling laws and GQA
uptraining run their heavy work in the room's run hub (tabs/kit/runs.py), so

(a) a run is a function of its key: two lone runs with the same settings give the same curves and samples;
(b) students who start the same settings at once follow one computation (room.computations[key] == 1) and get what
    a lone run gives; a student who comes after it finished is served without computing;
(c) every run is budgeted before it starts: the sliders' maxima are refused in one sentence with both figures and
    the limit (or fit, where they truly do) and the tabs' defaults fit;
(d) closing the page (the handler's generator) stops the job within a couple of steps, and the hub is left empty.

Handlers are called as plain functions with a fresh SessionStore and fake requests; the machine's speed is the
2-vCPU Space's (injected), so what fits does not depend on how busy this machine is."""
import re
import threading
import time
import types

import gradio as gr
import pytest
from conftest import drain
from matplotlib.figure import Figure

import tinygpt.budget as budget
from tabs import alignment, finetune, scaling
from tabs import train as train_tab
from tabs.efficiency import gqa
from tabs.kit.runs import RunHub
from tabs.kit.exports import figure_of
from tabs.kit.sessions import SessionStore
from tinygpt import GPT, GPTConfig
from tinygpt.beyond import rlhf as R
from tinygpt.defaults import GQA, RLHF, SCALING, TRAIN_TAB

NOP = dict(progress=lambda *a, **k: None)
SPACE = budget.Speed(flops_per_s=6.5e10, step_overhead_s=0.005, loss_s_per_logit=5e-9, score_s_per_logit=2e-9)
TINY_RLHF = R.RLHFConfig(n_layer=1, n_head=2, n_embd=32, sft_sentences=300, rm_pairs=30, rm_batch=8,
                         prompts_per_step=1, samples_per_prompt=4, eval_samples=8, max_new_tokens=8)
ESSAY = ("The river bends twice before it reaches the old mill. Every spring the water rises and the miller "
         "opens the sluice gates so the wheel can turn. ") * 40
DOCS = "Python docs (offline, built-in)"
ACTIONS = ("train", "finetune", "dpo", "rlhf", "rlhf_ppo", "scaling", "gqa_uptrain")


def req(name):
    return types.SimpleNamespace(session_hash=name)


def lone_store():
    return SessionStore(room=RunHub(sharing=False))


@pytest.fixture(autouse=True)
def space(monkeypatch):
    """The Space's speed and the default limits (2 GB and 10 minutes a run), whatever this machine and env say."""
    for name in (budget.ENV_RUN_MEMORY, budget.ENV_RUN_MINUTES, budget.ENV_APP_MEMORY):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(alignment, "RC", TINY_RLHF)
    old = budget._speed
    budget.set_speed(SPACE)
    yield
    budget.set_speed(old)


# ---- each action's form (tiny, fixed seeds); long=True: long enough to close the page in the middle --------------
def train_form(long=False, **changes):
    f = dict(corpus=DOCS, file=None, tokenizer="characters", n_layer=1, n_head=2, n_embd=32, context=16,
             embd_pdrop=0, attn_pdrop=0, resid_pdrop=0, steps=3000 if long else 12, batch=4, lr=1e-3, a_causal=True,
             a_ln=True, a_scale=True, b_causal=False, b_ln=True, b_scale=True, sample_len=12, seed=1)
    return {**f, **changes}


def start(action, sessions, request, models, tiny_dir, long=False, **changes):
    """The handler's generator for `action` (rlhf_ppo: after this session's whole pipeline)."""
    if action == "train":
        return train_tab.on_train(sessions, **train_form(long, **changes), request=request, **NOP)
    if action == "finetune":
        f = dict(model_name=tiny_dir, file=None, text=ESSAY, lossy=False, drop_boilerplate=True, prompt="The river",
                 seed=3, trainable="Top 2 blocks (fast)", steps=2000 if long else 8, context=32, batch_size=4,
                 lr=1e-3, max_new_tokens=10)
        return finetune.on_finetune(models, sessions, **{**f, **changes}, request=request, **NOP)
    if action == "dpo":
        f = dict(model_name=tiny_dir, source=alignment.SYNTHETIC, n_synthetic=20, file=None, beta_a=0.1, beta_b=0.5,
                 steps=500 if long else 3, batch=4, lr=1e-3, trainable="All weights", prompt="ROMEO:\nThou art most",
                 seed=1)
        return alignment.on_dpo(models, sessions, **{**f, **changes}, request=request, **NOP)
    if action == "rlhf":
        args = (1000, 300, 200, 0.2, 1) if long else (10, 5, 2, 0.2, 1)
        return alignment.on_rlhf(sessions, *args, request=request, **NOP)
    if action == "rlhf_ppo":
        drain(alignment.on_rlhf(sessions, 10, 5, 2, 0.2, 1, request=request, **NOP))
        return alignment.on_rlhf_ppo(sessions, 200 if long else 3, 0.0, 1, request=request, **NOP)
    if action == "scaling":
        # long: 5 sizes, so each of the tab's two child processes has at least 10,000 steps (81 s predicted at the
        # Space's speed, the long-runs lane); 3 sizes would be 55 s with the runs shared out
        shapes = "1x1x8, 1x2x16, 1x2x24" + (", 1x2x32, 1x2x40" if long else "")
        f = dict(corpus=DOCS, shapes=shapes, steps=5000 if long else 10, budgets="1e7, 3e7",
                 lr=1e-2, batch=4, context=16, min_steps=3, max_steps=400)
        return scaling.on_rerun(sessions, **{**f, **changes}, request=request, **NOP)
    if action == "gqa_uptrain":
        f = dict(name=tiny_dir, groups=1, steps=500 if long else 3, lr=1e-3)
        return gqa.on_uptrain(models, sessions, **{**f, **changes}, request=request, **NOP)
    raise KeyError(action)


# ---- comparing outputs: figures by their data, text without the wall-clock times -------------------------------
def fig_data(fig: Figure) -> list:
    return [[line.get_xydata().tolist() for line in ax.lines] for ax in fig.axes]


def untimed(text: str) -> str:
    """The text without what the clock decides: "in 3 s", "12 s of training", a run table's seconds column."""
    text = re.sub(r"\d[\d,.]*\s?s\b", "N s", text)
    return re.sub(r"\| [\d,]+ \|$", "| N |", text, flags=re.M)  # the scaling table's last column: seconds


def norm(outputs) -> tuple:
    """Figures by their data (a shared run sends encoded frames: exports.figure_of finds their Figure)."""
    return tuple(fig_data(figure_of(o)) if figure_of(o) is not None else untimed(o) if isinstance(o, str) else o
                 for o in outputs)


_LONE: dict = {}


def lone_run(action, models, tiny_dir) -> tuple:
    """A lone run's final outputs, normalised (once per action for the module)."""
    if action not in _LONE:
        _LONE[action] = norm(drain(start(action, lone_store(), req("lone"), models, tiny_dir)))
    return _LONE[action]


# ---- (a) determinism ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", ACTIONS)
def test_two_lone_runs_give_the_same_curves_and_samples(action, models, tiny_dir):
    first = lone_run(action, models, tiny_dir)
    second = norm(drain(start(action, lone_store(), req("lone-2"), models, tiny_dir)))
    assert first[0].startswith("Done") and "stopped" not in first[0]
    assert first == second


# ---- (b) sharing -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", ACTIONS)
def test_a_room_computes_identical_runs_once(action, models, tiny_dir):
    """Two students start the same settings at once (both arrive while the run waits for its lane, so both follow it
    from before its first step): one computation, and both see the queue, then what a lone run gives."""
    sessions = SessionStore()
    room = sessions.room
    gens = [start(action, sessions, req(f"{action}-{i}"), models, tiny_dir) for i in (1, 2)]
    before = dict(room.computations)  # rlhf_ppo: the pipelines the two students ran first (shared too)
    gate = threading.Event()
    blockers = [room.open(None, {"b": lambda cb, should_stop: gate.wait(120) or {}}, seconds=s, label="blocker")
                for s in (1.0, 10_000.0)]  # both lanes busy
    outs: dict = {0: [], 1: []}
    students = [threading.Thread(target=lambda i=i: outs[i].extend(gens[i])) for i in (0, 1)]
    for t in students:
        t.start()
    t0 = time.perf_counter()
    while not (outs[0] and outs[1]) and time.perf_counter() - t0 < 60:  # both see the queue
        time.sleep(0.02)
    assert [r.followers for r in room.active.values()] == [2]  # the second student joined the first one's run
    gate.set()
    for t in students:
        t.join()
    for b in blockers:
        b.close()
    new = {k: n for k, n in room.computations.items() if k not in before and not k.startswith("private:")}
    assert list(new.values()) == [1]
    (key,) = new
    assert key.startswith(action + ":")
    for i in (0, 1):
        assert "Queued: next in the" in outs[i][0][0]  # the tab's own outputs while it waited
    lone = lone_run(action, models, tiny_dir)
    assert norm(outs[0][-1]) == norm(outs[1][-1]) == lone
    third = drain(start(action, sessions, req(f"{action}-3"), models, tiny_dir))  # after it finished
    assert room.computations[key] == 1 and norm(third) == lone
    assert not room.active and room.load() == {lane: {"running": 0, "queued": 0} for lane in ("short", "long",
                                                                                             "measure")}


def test_followers_keep_the_shared_models_read_only(models, tiny_dir):
    """Fine-tune: everyone who followed the run can download the one fine-tuned model; Train: everyone holds the
    same trained models (the routing and the session's results come from them)."""
    sessions = SessionStore()
    for name in ("ft-a", "ft-b"):
        drain(start("finetune", sessions, req(name), models, tiny_dir))
    a, b = (sessions.get(req(n))["finetuned"][0] for n in ("ft-a", "ft-b"))
    assert a is b and not a.training
    assert finetune.on_download(sessions, req("ft-b"))[0].endswith("model.safetensors")
    for name in ("tr-a", "tr-b"):
        drain(start("train", sessions, req(name), models, tiny_dir))
    ta, tb = (sessions.get(req(n)) for n in ("tr-a", "tr-b"))
    assert ta["trained"]["A"][0] is tb["trained"]["A"][0] and ta["train_results"] == tb["train_results"]


def test_ppo_only_is_keyed_by_the_pipeline_it_continues(models, tiny_dir):
    """Two students whose pipelines differ (another seed) do not share their PPO-only re-runs."""
    sessions = SessionStore()
    for name, seed in (("p1", 1), ("p2", 2)):
        drain(alignment.on_rlhf(sessions, 10, 5, 2, 0.2, seed, request=req(name), **NOP))
        drain(alignment.on_rlhf_ppo(sessions, 2, 0.0, 1, request=req(name), **NOP))
    ppo = [k for k in sessions.room.computations if k.startswith("rlhf_ppo:")]
    assert len(ppo) == 2 and all(sessions.room.computations[k] == 1 for k in ppo)


def test_a_short_run_does_not_wait_behind_a_long_sweep(models, tiny_dir):
    """No server-wide queue: a Train click starts while a scaling sweep (the long-runs lane) is going."""
    sessions = SessionStore()
    sweep = start("scaling", sessions, req("sweeper"), models, tiny_dir, long=True)
    next(sweep)
    (long_run,) = sessions.room.running["long"]
    outs = list(start("train", sessions, req("trainer"), models, tiny_dir))
    assert outs[-1][0].startswith("Done") and not any("Queued" in o[0] for o in outs)
    assert long_run.state == "running"
    sweep.close()


def test_a_queued_run_shows_its_place_in_the_tab(models, tiny_dir):
    sessions = SessionStore()
    first = start("train", sessions, req("q1"), models, tiny_dir, long=True)
    next(first)
    second = start("train", sessions, req("q2"), models, tiny_dir, long=True, seed=2)  # another run, same lane
    status, fig, samples, explain = next(second)
    assert status.startswith("Training two 1-layer models") and "Queued: next in the" in status
    assert isinstance(fig, Figure) and "waiting" in samples and explain == ""
    second.close()
    first.close()


# ---- (c) the budget ------------------------------------------------------------------------------------------------
class Captured(Exception):
    pass


class Capture(RunHub):
    """A hub that records the run a handler asks for and starts nothing."""

    def open(self, key, jobs, **kw):
        self.key, self.estimate = key, kw.get("estimate")
        raise Captured


def estimate_of(action, models, handler) -> budget.Estimate:
    sessions = SessionStore(room=Capture())
    with pytest.raises(Captured):
        drain(handler(sessions))
    assert sessions.room.key.startswith(action + ":")
    return sessions.room.estimate


def fits(est) -> bool:
    try:
        budget.check(est, budget.Limits())
        return True
    except budget.BudgetError:
        return False


def refused_in_one_sentence(handler, est):
    """The real hub refuses it before anything starts: one sentence with the run's figures and the limits."""
    with pytest.raises(gr.Error) as e:
        drain(handler(SessionStore()))
    msg = str(e.value.message)
    assert msg.endswith(".") and ". " not in msg and "\n" not in msg
    assert f"needs about {est.memory} and {est.time}," in msg and "at most 2 GB and 10 minutes" in msg


def fake_pipeline(sessions, request, cfg):
    """A session that has run the pipeline with `cfg` (PPO only reads its models)."""
    torch_model = GPT(GPTConfig(vocab_size=25, block_size=16, n_layer=1, n_head=1, n_embd=8))
    sessions.get(request)["rlhf"] = {"cfg": cfg, "key": "rlhf:x", "sft_model": torch_model, "rm": torch_model,
                                     "tok": None, "ppo_runs": [{"history": [], "kl_coef": 0.2}], "hist": {}}


def maxima_and_defaults(models):
    """{action: (handler at the sliders' maxima, handler at the tab's defaults)}, on the embedded model (the model
    the app falls back to offline) where a model is needed."""
    m, r = "tiny-shakespeare", req("budget")
    T, F, dd = TRAIN_TAB, finetune.DEFAULTS, alignment.DPO_DEFAULTS
    sc = SCALING
    sc_default = dict(corpus=DOCS, shapes=", ".join("x".join(map(str, s)) for s in sc["shapes"]), steps=sc["steps"],
                      budgets=", ".join(f"{b:g}" for b in sc["budgets"]), lr=sc["lr"], batch=sc["batch_size"],
                      context=sc["context"], min_steps=sc["min_steps"], max_steps=sc["max_steps"])
    sc_max = dict(sc_default, shapes=", ".join(f"6x4x{256 - 16 * i}" for i in range(10)), steps=5000, batch=64,
                  context=128, budgets="1e13, 3e13, 1e14, 2e14, 4e14", min_steps=1, max_steps=10000)
    ft = dict(model_name=m, file=None, text=ESSAY * 3, lossy=False, drop_boilerplate=True, prompt="The river")
    dpo = dict(model_name=m, source=alignment.SYNTHETIC, file=None, lr=dd["lr"], prompt=dd["prompt"], seed=dd["seed"])

    def ppo(steps, kl):
        def run(s):
            fake_pipeline(s, r, R.RLHFConfig())
            return alignment.on_rlhf_ppo(s, steps, kl, RLHF["seed"], request=r, **NOP)
        return run

    return {
        "train": (lambda s: train_tab.on_train(s, **train_form(
                      tokenizer="GPT-2 BPE", n_layer=8, n_head=8, n_embd=256, context=256, steps=3000, batch=64,
                      sample_len=1000, a_experts=8, a_top_k=4, b_experts=8, b_top_k=4), request=r, **NOP),
                  lambda s: train_tab.on_train(s, **train_form(
                      n_layer=T["n_layer"], n_head=T["n_head"], n_embd=T["n_embd"], context=T["block_size"],
                      steps=T["steps"], batch=T["batch_size"], lr=T["lr"], sample_len=T["sample_len"],
                      seed=T["seed"]), request=r, **NOP)),
        "finetune": (lambda s: finetune.on_finetune(models, s, **ft, seed=1, trainable="All weights (slow)",
                                                    steps=300, context=512, batch_size=16, lr=1e-3,
                                                    max_new_tokens=200, request=r, **NOP),
                     lambda s: finetune.on_finetune(models, s, **ft, seed=F["seed"], trainable=F["trainable"],
                                                    steps=F["steps"], context=F["context"], batch_size=F["batch_size"],
                                                    lr=F["lr"], max_new_tokens=F["max_new_tokens"], request=r, **NOP)),
        "dpo": (lambda s: alignment.on_dpo(models, s, **dpo, n_synthetic=1000, beta_a=0.1, beta_b=0.5, steps=300,
                                           batch=32, trainable="All weights", request=r, **NOP),
                lambda s: alignment.on_dpo(models, s, **dpo, n_synthetic=dd["n_synthetic"], beta_a=dd["beta_a"],
                                           beta_b=dd["beta_b"], steps=dd["steps"], batch=dd["batch"],
                                           trainable=dd["trainable"], request=r, **NOP)),
        "rlhf": (lambda s: alignment.on_rlhf(s, 1000, 300, 200, 0.2, 1, request=r, **NOP),
                 lambda s: alignment.on_rlhf(s, RLHF["sft_steps"], RLHF["rm_steps"], RLHF["ppo_steps"],
                                             RLHF["kl_coef"], RLHF["seed"], request=r, **NOP)),
        "rlhf_ppo": (ppo(200, 0.0), ppo(RLHF["ppo_steps"], RLHF["kl_coef"])),
        "scaling": (lambda s: scaling.on_rerun(s, **sc_max, request=r, **NOP),
                    lambda s: scaling.on_rerun(s, **sc_default, request=r, **NOP)),
        "gqa_uptrain": (lambda s: gqa.on_uptrain(models, s, m, 1, 200, GQA["uptrain_lr"], request=r, **NOP),
                        lambda s: gqa.on_uptrain(models, s, m, gqa.default_groups(4), GQA["uptrain_steps"],
                                                 GQA["uptrain_lr"], request=r, **NOP)),
    }


# what the sliders' maxima do on the Space: refused, or (with the embedded model, the real RLHF model) they fit
MAXIMA_FIT = {"train": False, "finetune": False, "dpo": True, "rlhf": True, "rlhf_ppo": True, "scaling": False,
              "gqa_uptrain": True}


@pytest.mark.parametrize("action", ACTIONS)
def test_maxima_refused_in_one_sentence_or_fit_and_defaults_fit(action, models, monkeypatch):
    monkeypatch.setattr(alignment, "RC", R.RLHFConfig())  # the tab's real pipeline
    at_max, at_default = maxima_and_defaults(models)[action]
    est = estimate_of(action, models, at_max)
    assert fits(est) == MAXIMA_FIT[action], (est.memory, est.time)
    if not MAXIMA_FIT[action]:
        refused_in_one_sentence(at_max, est)
    assert fits(estimate_of(action, models, at_default))


def test_the_old_caps_are_gone():
    for name in ("DPO_CAP_S", "RLHF_CAP_S", "refuse_if_long", "rlhf_seconds"):
        assert not hasattr(alignment, name)
    assert scaling.TIME_CAP_S is None and scaling.cap_s() == 600  # the measured cap: the budget's 10 minutes


# ---- (d) a closed page ends the work -------------------------------------------------------------------------------
def steps_done(run) -> dict:
    """Per job: how many distinct training steps its events reached (a stopped loop re-reports its last step)."""
    seen: dict = {}
    for name, ev in list(run.events):
        if isinstance(ev, dict) and ev.get("step") and ev.get("kind", "step") == "step":
            seen.setdefault(name, set()).add((ev.get("stage"), ev.get("run"), ev["step"]))
    return {k: len(v) for k, v in seen.items()}


@pytest.mark.parametrize("action", ACTIONS)
def test_closing_the_page_stops_the_job_within_two_steps(action, models, tiny_dir):
    sessions = SessionStore()
    room = sessions.room
    gen = start(action, sessions, req(f"closer-{action}"), models, tiny_dir, long=True)
    run = None
    for _ in gen:
        going = [r for lane in room.running.values() for r in lane]
        if going and sum(steps_done(going[0]).values()) >= 2:
            run = going[0]
            break
    assert run is not None, "the run never got going"
    at_close = steps_done(run)
    gen.close()  # the page was closed / the request cancelled
    t = time.perf_counter()
    while (room.active or any(room.running.values())) and time.perf_counter() - t < 120:
        time.sleep(0.05)
    after = steps_done(run)
    assert max(after[k] - at_close.get(k, 0) for k in after) <= 2, (at_close, after)
    assert run.state == "stopped" and run.hold is None and run.followers == 0
    assert not room.active and room.load() == {lane: {"running": 0, "queued": 0} for lane in ("short", "long",
                                                                                             "measure")}
    assert run.key not in room.finished  # nothing kept
