"""Mixture-of-Experts, measured: expert load (sums to 1, matches the router's counts), the dense width with equal
active parameters (exact against count_parameters and a built model), `train --n-experts` on the command line,
and the Train-from-scratch tab's MoE runs, presets and token colouring."""
import json

import gradio as gr
import pytest
import torch
from conftest import drain, run_cli

from tabs import train as train_tab
from tabs.kit.exports import figure_of
from tabs.kit.sessions import SessionStore
from tinygpt import GPT, CharTokenizer, GPTConfig, TrainConfig, count_parameters, train
from tinygpt.data import split_tokens
from tinygpt.evaluate import window_starts
from tinygpt.moe import (
    dense_equivalent,
    dense_n_inner,
    expert_load,
    match_active_params,
    token_experts,
    with_expert_load,
)

TEXT = "the quick brown fox jumps over the lazy dog. " * 60


def moe_model(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**dict(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=16, n_experts=4,
                                   moe_top_k=1), **kw}))


@pytest.mark.parametrize("top_k", [1, 2])
def test_expert_load_sums_to_one_and_matches_router_counts(top_k):
    m = moe_model(moe_top_k=top_k)
    data = torch.randint(0, 40, (300,), generator=torch.Generator().manual_seed(1))
    load = expert_load(m, data, context=16)
    # the same windows, routed one by one: the counts must agree exactly
    ref = torch.zeros(2, 4, dtype=torch.long)
    tokens = 0
    for s in window_starts(len(data), 16):
        x = data[s:s + min(16, len(data) - 1 - s)][None]
        ref += torch.stack([r["counts"] for r in m.moe_routing(x)])
        tokens += x.numel()
    assert load["counts"] == ref.tolist() and load["tokens"] == tokens == 299
    for row, counts in zip(load["per_layer"], ref.tolist()):
        assert sum(row) == pytest.approx(1.0)
        assert row == pytest.approx([c / (top_k * tokens) for c in counts])
    assert load["average"] == pytest.approx([sum(col) / 2 for col in zip(*load["per_layer"])])
    assert sum(sum(r) for r in ref.tolist()) == 2 * top_k * tokens  # each token makes top_k assignments per layer
    assert m.training  # the model's mode is restored


def test_expert_load_needs_an_moe_and_a_fitting_context():
    with pytest.raises(ValueError, match="no Mixture-of-Experts"):
        expert_load(moe_model(n_experts=0), torch.arange(30) % 40, 16)
    with pytest.raises(ValueError, match="block size"):
        expert_load(moe_model(), torch.arange(30) % 40, 32)


@pytest.mark.parametrize("kw", [dict(), dict(bias=False), dict(mlp="gated"), dict(moe_top_k=2),
                                dict(n_experts=8, n_inner=48), dict(n_experts=3, mlp="gated", bias=False),
                                dict(n_embd=64, n_head=4, n_layer=3)])
def test_dense_equivalent_matches_active_parameters(kw):
    cfg = GPTConfig(**{**dict(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=32, n_experts=4), **kw})
    dense = dense_equivalent(cfg)
    assert dense.n_experts == 0 and dense.n_inner == dense_n_inner(cfg)
    active = count_parameters(cfg)["active"]
    total = count_parameters(dense)["total"]
    assert total == GPT(dense).num_params()  # the count is the built model's
    # the nearest whole width: one column more or fewer would be further from the target
    for other in (dense.n_inner - 1, dense.n_inner + 1):
        assert abs(count_parameters(cfg.replace(n_experts=0, n_inner=other))["total"] - active) >= abs(total - active)
    gated = cfg.mlp == "gated"  # a column: a row of c_fc (+ c_gate) with its bias, a column of c_proj
    per_column = cfg.n_layer * ((3 if gated else 2) * cfg.n_embd + (2 if gated else 1) * cfg.bias)
    assert abs(total - active) <= per_column / 2


def test_dense_equivalent_is_exact_when_a_width_fits():
    # no biases, GELU, top-1: per block d*E router weights = E/2 extra columns of 2d -> exact for even E
    cfg = GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64, n_experts=4, bias=False)
    dense = dense_equivalent(cfg)
    assert dense.n_inner == 4 * 64 + 2
    assert count_parameters(dense)["total"] == count_parameters(cfg)["active"]
    # the MoE (d 64, biases on): the nearest width is 258, 2 parameters off in 2 layers
    cfg = cfg.replace(bias=True)
    assert dense_n_inner(cfg) == 258
    assert count_parameters(dense_equivalent(cfg))["total"] - count_parameters(cfg)["active"] == 2 * 2
    with pytest.raises(ValueError, match="Mixture-of-Experts"):
        dense_n_inner(cfg.replace(n_experts=0))


def test_match_active_params_gives_the_dense_run_the_moe_runs_active_parameters():
    moe = GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64, n_experts=4, bias=False)
    cfgs = {"A": moe.replace(n_experts=0), "B": moe}
    note = match_active_params(cfgs)
    assert cfgs["A"].n_inner == dense_n_inner(moe) and cfgs["B"] is moe  # in place, the dense run only
    assert count_parameters(cfgs["A"])["total"] == count_parameters(moe)["active"]
    assert f"Run A's feed-forward width is {4 * 64 + 2} (not 256)" in note and "run B uses per token" in note
    two_dense = {"A": moe.replace(n_experts=0), "B": moe.replace(n_experts=0)}
    assert "nothing was matched" in match_active_params(two_dense) and two_dense["A"].n_inner is None


def test_with_expert_load_adds_load_on_evaluation_steps():
    tok = CharTokenizer.from_text(TEXT)
    data = torch.tensor(tok.encode(TEXT))
    tr, va = split_tokens(data, 0.1)
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16, n_experts=4))
    events = []
    train(m, tr, va, TrainConfig(steps=6, batch_size=4, context=16, eval_interval=3),
          callback=with_expert_load(events.append, m, va, 16, max_windows=4))
    loads = [e["expert_load"] for e in events if "expert_load" in e]
    assert [e["step"] for e in events if "expert_load" in e] == [1, 3, 6]
    assert all(len(load) == 2 and all(sum(row) == pytest.approx(1.0) for row in load) for load in loads)
    assert loads[-1] == expert_load(m, va, 16, max_windows=4)["per_layer"]  # the same fixed windows
    dense = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    cb = events.append
    assert with_expert_load(cb, dense, va, 16) is cb  # a dense model: the callback unchanged


def test_token_experts_are_the_router_choices():
    m = moe_model()
    ids = list(range(20))  # longer than the block: the first 16 are routed
    r = token_experts(m, ids)
    assert r["ids"] == ids[:16]
    routing = m.moe_routing(torch.tensor([ids[:16]]))
    assert r["choice"] == [x["choice"][0].tolist() for x in routing]
    probs = routing[0]["probs"][0]
    assert r["gate"][0] == pytest.approx(probs.max(-1).values.tolist())


def test_cli_train_moe_reports_load_and_parameters(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(TEXT)
    common = ["--text", str(f), "--n-layer", "2", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
              "--batch-size", "4", "--steps", "3", "--eval-interval", "3", "--json"]
    r = run_cli("train", *common, "--n-experts", "4", "--moe-top-k", "1", "--moe-aux-weight", "0.01",
                "--out", str(tmp_path / "moe"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    cfg = GPTConfig(vocab_size=len(set(TEXT)), block_size=16, n_layer=2, n_head=2, n_embd=16, n_experts=4)
    counts = count_parameters(cfg)
    assert out["params_total"] == counts["total"] and out["params_active"] == counts["active"]
    assert out["params_active"] < out["params_total"]
    load = out["expert_load"]
    assert len(load["per_layer"]) == 2 and all(len(row) == 4 for row in load["per_layer"])
    assert all(sum(row) == pytest.approx(1.0, abs=1e-3) for row in load["per_layer"])
    assert sum(load["average"]) == pytest.approx(1.0, abs=1e-3)
    assert out["dense_equal_active_n_inner"] == dense_n_inner(cfg)
    # the dense model with that width: equal parameters, no expert load
    r = run_cli("train", *common, "--n-inner", str(out["dense_equal_active_n_inner"]), "--out", str(tmp_path / "d"))
    dense = json.loads(r.stdout)
    assert dense["params_total"] == dense["params_active"]
    assert abs(dense["params_total"] - out["params_active"]) <= 2 * (2 * 16 + 1)
    assert "expert_load" not in dense
    bad = run_cli("train", *common, "--n-experts", "1", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "n_experts" in bad.stderr and "Traceback" not in bad.stderr


# ---- the Train-from-scratch tab ----------------------------------------------------------------------------
class Req:
    session_hash = "moe-tester"


def form(**changes):
    f = dict(corpus=train_tab.UPLOAD, file=None, tokenizer="characters", n_layer=2, n_head=2, n_embd=16, context=16,
             embd_pdrop=0, attn_pdrop=0, resid_pdrop=0, steps=20, batch=4, lr=3e-3, a_causal=True, a_ln=True,
             a_scale=True, b_causal=True, b_ln=True, b_scale=True, sample_len=10, seed=1)
    f.update(changes)
    return f


@pytest.fixture
def text_file(tmp_path):
    f = tmp_path / "fox.txt"
    f.write_text(TEXT * 3)
    return str(f)


def test_tab_dense_vs_moe_equal_active(text_file):
    sessions = SessionStore()
    preset = dict(zip(train_tab.PRESET_KEYS, train_tab.preset_values("dense vs MoE")))
    status, fig, samples, explain = drain(train_tab.on_train(sessions, **form(file=text_file, **preset),
                                                             request=Req(), progress=lambda *a, **k: None))
    assert "Done" in status and "feed-forward width" in status
    res = sessions.get(Req())["train_results"]
    assert res["B"]["params_total"] > res["B"]["params_active"]
    assert abs(res["A"]["params_total"] - res["B"]["params_active"]) <= 2 * (2 * 16 + 1)
    assert "expert_load" not in res["A"] and len(res["B"]["expert_load"]) == 2
    assert all(sum(row) == pytest.approx(1.0) for row in res["B"]["expert_load"])
    assert "Mixture-of-Experts" in explain and "Equal active parameters" in explain
    assert "MoE 4 experts" in samples
    assert len(figure_of(fig).axes) == 3  # loss, accuracy, and run B's expert load
    html = train_tab.on_route(sessions, "", request=Req())  # B's prompt and sample, one row per layer
    assert html.count("layer 0") == 1 and html.count("layer 1") == 1 and "expert 3" in html
    html = train_tab.on_route(sessions, "the lazy dog", request=Req())
    assert html.count("title='expert") == 2 * len("the lazy dog")


def test_tab_aux_on_and_off(text_file):
    sessions = SessionStore()
    preset = dict(zip(train_tab.PRESET_KEYS, train_tab.preset_values("aux on vs off")))
    _, fig, _, explain = drain(train_tab.on_train(sessions, **form(file=text_file, steps=10, **preset),
                                                  request=Req(), progress=lambda *a, **k: None))
    res = sessions.get(Req())["train_results"]
    assert res["A"]["params_total"] == res["B"]["params_total"]
    assert "without** the load-balancing loss" in explain and "auxiliary loss" in explain
    assert len(figure_of(fig).axes) == 4


def test_tab_moe_bad_input_and_defaults(text_file):
    with pytest.raises(gr.Error, match="experts must be 0"):
        drain(train_tab.on_train(SessionStore(), **form(file=text_file, b_experts=1), request=Req(),
                                 progress=lambda *a, **k: None))
    with pytest.raises(gr.Error, match="Train a run with experts"):
        train_tab.on_route(SessionStore(), "abc", request=Req())
    assert train_tab.on_route(SessionStore(), "", request=Req(), quiet=True) == ""
    # the old call (no MoE arguments) still trains two dense runs
    sessions = SessionStore()
    drain(train_tab.on_train(sessions, **form(file=text_file, steps=2), request=Req(), progress=lambda *a, **k: None))
    assert all(r["params_total"] == r["params_active"] for r in sessions.get(Req())["train_results"].values())
    # a character outside the alphabet: one sentence
    sessions = SessionStore()
    drain(train_tab.on_train(sessions, **form(file=text_file, steps=2, a_experts=2), request=Req(),
                             progress=lambda *a, **k: None))
    with pytest.raises(gr.Error, match="alphabet"):
        train_tab.on_route(sessions, "ZZZ", request=Req())


def test_describe_run_moe():
    cfg = GPTConfig.from_preset("tiny", n_experts=4)
    assert train_tab.describe_run(cfg) == "MoE 4 experts, top-1, aux 0.01"
    assert train_tab.describe_run(cfg.replace(n_experts=0, n_inner=130, causal=False)) == \
        "dense, FFN width 130, no causal mask"
