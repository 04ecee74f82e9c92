"""Alignment tabs' handlers without a browser: DPO (two betas side by side, samples before/after, bad pairs files,
the time cap) and RLHF (the three stages, PPO again with another KL coefficient, Stop, refusals)."""
import gradio as gr
import pytest
from conftest import drain

from tabs import alignment
from tabs.alignment import RLHF_STOP as stop_session
from tabs.kit.exports import figure_of
from tabs.kit.sessions import SessionStore
from tinygpt.beyond import rlhf as R

NO_PROGRESS = dict(progress=lambda *a, **k: None)


class Req:  # stands in for gr.Request: only the session hash matters
    def __init__(self, h="tester"):
        self.session_hash = h


def dpo_form(tiny_dir, **changes):
    f = dict(model_name=tiny_dir, source=alignment.SYNTHETIC, n_synthetic=20, file=None, beta_a=0.1, beta_b=0.5,
             steps=3, batch=4, lr=1e-3, trainable="All weights", prompt="ROMEO:\nThou art most", seed=1)
    f.update(changes)
    return f


def run_dpo(models, tiny_dir, sessions=None, **changes):
    return drain(alignment.on_dpo(models, sessions or SessionStore(), **dpo_form(tiny_dir, **changes), request=Req(),
                                  **NO_PROGRESS))


def test_dpo_two_betas_side_by_side(models, tiny_dir):
    status, fig, samples, explain = run_dpo(models, tiny_dir)
    assert status.startswith("Done")
    assert "Before (reference)" in samples and "After DPO, β=0.1" in samples and "After DPO, β=0.5" in samples
    assert "ln 2" in explain and "Effect of β" in explain and "kind" in explain
    assert "| A | 0.1 | 0.693 →" in explain and "| B | 0.5 | 0.693 →" in explain  # both start at ln 2
    assert len(figure_of(fig).axes) == 4  # a shared run's final frame is encoded once: its Figure is kept


def test_dpo_one_beta_and_uploaded_pairs(models, tiny_dir, tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text("\n".join('{"prompt": "Q%d", "chosen": " yes", "rejected": " no"}' % i for i in range(5)))
    status, _, samples, explain = run_dpo(models, tiny_dir, source=alignment.UPLOAD, file=str(f), beta_b=0, prompt="")
    assert status.startswith("Done") and "β=0.5" not in samples
    assert "training pairs (too few pairs to hold some out)" in explain and "Effect of β" not in explain


@pytest.mark.parametrize("changes,msg", [
    (dict(source="Upload a JSONL file", file=None), "Upload a .jsonl file"),
    (dict(beta_a=0), "β must be above 0"),
    (dict(beta_a="abc"), "must be a number"),
    (dict(lr=5), "at most 1.0"),
])
def test_dpo_bad_settings(models, tiny_dir, changes, msg):
    with pytest.raises(gr.Error, match=msg):
        run_dpo(models, tiny_dir, **changes)


def test_dpo_malformed_pairs_file_names_the_line(models, tiny_dir, tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": "", "rejected": "c"}\n')
    with pytest.raises(gr.Error, match="Line 2 .*'chosen' is empty"):
        run_dpo(models, tiny_dir, source=alignment.UPLOAD, file=str(f))


def test_dpo_time_cap(models, tiny_dir, monkeypatch):
    """The cap is the budget's (tinygpt.budget): refused before it starts, in one sentence with the figures."""
    monkeypatch.setenv("TINYGPT_RUN_MINUTES", "0.0001")
    with pytest.raises(gr.Error, match="This run needs about .* but a run on this server may use at most"):
        run_dpo(models, tiny_dir)


# ---- RLHF ------------------------------------------------------------------------------------------------
TINY = R.RLHFConfig(n_layer=1, n_head=2, n_embd=32, sft_sentences=300, rm_pairs=30, rm_batch=8, prompts_per_step=1,
                    samples_per_prompt=4, eval_samples=8, max_new_tokens=8)


@pytest.fixture
def tiny_rlhf(monkeypatch):
    monkeypatch.setattr(alignment, "RC", TINY)


def test_rlhf_stages_then_ppo_again(tiny_rlhf):
    sessions, req = SessionStore(), Req("rl")
    with pytest.raises(gr.Error, match="Run the whole pipeline first"):
        drain(alignment.on_rlhf_ppo(sessions, 2, 0.0, 1, request=req, **NO_PROGRESS))
    status, fig, samples, explain = drain(alignment.on_rlhf(sessions, 10, 5, 2, 0.2, 1, request=req, **NO_PROGRESS))
    assert status.startswith("Done") and len(figure_of(fig).axes) >= 4
    assert "SFT · reward" in samples and "PPO (KL coef 0.2)" in samples
    assert "1. SFT" in explain and "2. reward model" in explain and "3. PPO, KL coef 0.2" in explain
    state = sessions.get(req)["rlhf"]
    assert state["sft"]["steps"] == 10 and state["reward_model"]["steps"] == 5 and state["ppo_runs"][0]["steps"] == 2
    status, _, samples, explain = drain(alignment.on_rlhf_ppo(sessions, 3, 0.0, 1, request=req, **NO_PROGRESS))
    assert status.startswith("Done") and "PPO (KL coef 0.2)" in samples and "PPO (KL coef 0)" in samples
    assert "3. PPO, KL coef 0.2" in explain and "3. PPO, KL coef 0 (3 steps)" in explain
    assert [r["kl_coef"] for r in sessions.get(req)["rlhf"]["ppo_runs"]] == [0.2, 0.0]


def test_rlhf_stop(tiny_rlhf, monkeypatch):
    monkeypatch.setenv("TINYGPT_RUN_MINUTES", "600")  # long enough to press Stop in, whatever this machine's speed
    sessions, req = SessionStore(), Req("stopper")
    gen = alignment.on_rlhf(sessions, 800, 100, 50, 0.2, 1, request=req, **NO_PROGRESS)
    next(gen)
    for i, out in enumerate(gen):
        if i == 0:  # the first update after the start (a loaded machine may send only a few before the end)
            stop_session(sessions, req)
    assert "stopped early" in out[0]
    assert sessions.get(req)["rlhf"]["sft"]["steps"] < 800


@pytest.mark.parametrize("args,msg", [((2000, 500, 300, 0.2, 1), "may use at most 2 GB and 1 second"),
                                      ((10, 5, 2, -1, 1), "at least 0"),
                                      ((10, 5, 2, "x", 1), "must be a number")])
def test_rlhf_refusals(tiny_rlhf, args, msg, monkeypatch):
    monkeypatch.setenv("TINYGPT_RUN_MINUTES", "0.01")  # the tiny pipeline's 2000 + 500 + 300 steps pass 0.6 s
    with pytest.raises(gr.Error, match=msg):
        drain(alignment.on_rlhf(SessionStore(), *args, request=Req(), **NO_PROGRESS))


def test_rlhf_estimate_fits_the_cap_at_defaults():
    from tinygpt.budget import Limits, Speed, check, estimate_rlhf

    space = Speed(flops_per_s=6.5e10, step_overhead_s=0.005, loss_s_per_logit=5e-9, score_s_per_logit=2e-9)
    check(estimate_rlhf(R.RLHFConfig(), speed=space), Limits())  # a 2-vCPU Space: 2 GB and 10 minutes a run


def test_api_names_and_a_dpo_call(models, tiny_dir):
    """Through gradio_client: the endpoints exist; a short DPO run answers; bad input is one plain sentence."""
    from conftest import serve
    from gradio_client import Client

    from app import build_demo

    demo = build_demo(models, default_model=tiny_dir)
    try:
        client = Client(serve(demo), verbose=False)
        names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
        assert {"/dpo", "/rlhf", "/rlhf_ppo"} <= names
        args = list(dpo_form(tiny_dir, steps=2, beta_b=0).values())
        status, plot, samples, explain = client.predict(*args, api_name="/dpo")
        assert status.startswith("Done") and "After DPO, β=0.1" in samples
        with pytest.raises(Exception, match="β must be above 0"):
            client.predict(*list(dpo_form(tiny_dir, beta_a=0).values()), api_name="/dpo")
        with pytest.raises(Exception, match="Run the whole pipeline first"):
            client.predict(2, 0.0, 1, api_name="/rlhf_ppo")
    finally:
        demo.close()
