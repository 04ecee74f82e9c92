"""The training tabs open with tinygpt.defaults' values (TRAIN_TAB, FINETUNE_TAB, DPO_TAB, RLHF, SCALING): every
registered field of Train, Fine-tune, DPO, RLHF and Scaling laws starts at its table's value; the course map's
Train rows set only fields the Train tab has, with values those fields accept."""
import gradio as gr
import pytest

from tabs import alignment, coursemap, finetune, scaling, train
from tabs.kit.sessions import SessionStore
from tinygpt.data import CORPORA
from tinygpt.defaults import DPO_TAB, FINETUNE_TAB, RLHF, SCALING, TRAIN_TAB

LABEL = {v: k for k, v in CORPORA.items()}  # corpus key -> the radio's label


@pytest.fixture(scope="module")
def tabs(models, tiny_dir):
    """The five tabs built into one Blocks -> {tab id: {field key: start-up value}}."""
    sessions = SessionStore()
    with gr.Blocks() as demo:
        with gr.Tabs():
            train.build(sessions)
            finetune.build(models, sessions, tiny_dir)
            scaling.build(sessions)
            alignment.build(models, sessions, tiny_dir)
    return {k: dict(t.defaults) for k, t in demo._tinygpt_share.tabs.items()}  # tabs.kit.registry's, per Blocks


def test_train_starts_at_train_tab(tabs):
    d, t = tabs["train"], TRAIN_TAB
    expected = {
        "corpus": LABEL[t["corpus"]], "tokenizer": "characters" if t["tokenizer"] == "char" else "GPT-2 BPE",
        "n_layer": t["n_layer"], "n_head": t["n_head"], "n_embd": t["n_embd"], "context": t["block_size"],
        "embd_pdrop": t["embd_pdrop"], "attn_pdrop": t["attn_pdrop"], "resid_pdrop": t["resid_pdrop"],
        "steps": t["steps"], "batch_size": t["batch_size"], "lr": t["lr"], "sample_len": t["sample_len"],
        "seed": t["seed"], "a_causal": t["causal"], "a_layernorm": t["layernorm"], "a_attn_scale": t["attn_scale"],
        "b_causal": t["b_causal"], "b_layernorm": t["layernorm"], "b_attn_scale": t["attn_scale"],
        "a_experts": t["n_experts"], "a_top_k": t["moe_top_k"], "a_aux": t["moe_aux_weight"],
        "b_experts": t["n_experts"], "b_top_k": t["moe_top_k"], "b_aux": t["moe_aux_weight"],
        "match_active": t["match_active"], "a_pos_encoding": t["pos_encoding"], "b_pos_encoding": t["pos_encoding"],
        "compare_b": t["compare_b"], "b_own_dropout": t["b_own_dropout"], "b_embd_pdrop": t["b_embd_pdrop"],
        "b_attn_pdrop": t["b_attn_pdrop"], "b_resid_pdrop": t["b_resid_pdrop"]}
    assert d == expected
    assert tuple(d) == train.FIELDS


def test_finetune_starts_at_finetune_tab(tabs):
    d, t = tabs["finetune"], FINETUNE_TAB
    assert {k: v for k, v in d.items() if k not in ("model", "prompt")} == {
        "lossy": t["lossy"], "drop_boilerplate": t["drop_boilerplate"],
        "trainable": next(k for k, v in finetune.TRAINABLE.items() if v == t["trainable"]), "steps": t["steps"],
        "context": t["context"], "batch_size": t["batch_size"], "lr": t["lr"], "seed": t["seed"],
        "max_new_tokens": t["max_new_tokens"]}


def test_dpo_and_rlhf_start_at_their_tables(tabs):
    d, t = tabs["dpo"], DPO_TAB
    assert {k: v for k, v in d.items() if k != "model"} == {
        "source": alignment.SYNTHETIC if t["source"] == "synthetic" else alignment.UPLOAD, "synthetic": t["synthetic"],
        "beta_a": t["beta"], "beta_b": t["beta_b"], "steps": t["steps"], "batch_size": t["batch_size"], "lr": t["lr"],
        "trainable": next(k for k, v in alignment.TRAINABLE.items() if v == t["trainable"]), "prompt": t["prompt"],
        "seed": t["seed"]}
    assert alignment.DPO_DEFAULTS["sample_len"] == t["sample_len"]
    assert tabs["rlhf"] == {k: RLHF[k] for k in ("sft_steps", "rm_steps", "ppo_steps", "kl_coef", "seed")}


def test_scaling_starts_at_scaling(tabs):
    d, t = tabs["scaling"], SCALING
    assert d == {"corpus": LABEL[scaling.SCALING_CORPUS], "shapes": ", ".join("x".join(map(str, s))
                                                                             for s in t["shapes"]),
                 "steps": t["steps"], "budgets": ", ".join(f"{b:g}" for b in t["budgets"]), "lr": t["lr"],
                 "batch_size": t["batch_size"], "context": t["context"], "min_steps": t["min_steps"],
                 "max_steps": t["max_steps"]}
    shipped = scaling.load_sweep(scaling.DEFAULT_SWEEP)  # the plots the tab opens with were made with the table
    assert shipped["config"] == {k: ([list(s) for s in v] if k == "shapes" else list(v) if k == "budgets" else v)
                                 for k, v in t.items() if k not in ("text", "workers")}


def test_course_map_train_rows_are_valid_train_fields(tabs):
    fields = tabs["train"]
    rows = [e for e in coursemap.ENTRIES if e.tab == "train"]
    assert len(rows) >= 7
    for e in rows:
        assert set(e.settings) <= set(fields), e.question
    small = next(e for e in rows if "small GPT" in e.question)
    assert small.settings["compare_b"] is False  # one run: nothing to compare
    drop = next(e for e in rows if "dropout" in e.question)
    assert drop.settings["b_own_dropout"] is True and drop.settings["embd_pdrop"] > 0  # A with dropout, B without
    assert all(fields[f"b_{k}_pdrop"] == 0 for k in ("embd", "attn", "resid"))


def test_old_dropout_keys_still_mean_both_runs():
    """embd/attn/resid_pdrop were both runs' rates: without b_own_dropout they still are (links, API, commands)."""
    v = {k: TRAIN_TAB.get(k) for k in ("n_layer", "n_head", "n_embd", "steps", "batch_size", "lr", "sample_len",
                                       "seed")}
    v.update(corpus=LABEL["python-docs"], tokenizer="characters", context=16, embd_pdrop=0.1, attn_pdrop=0.2,
             resid_pdrop=0.1, a_causal=True, a_layernorm=True, a_attn_scale=True, b_causal=True, b_layernorm=True,
             b_attn_scale=True)
    lines = [ln for ln in train.command(v).splitlines() if not ln.startswith("#")]
    assert len(lines) == 2 and all("--embd-pdrop 0.1 --attn-pdrop 0.2 --resid-pdrop 0.1" in ln for ln in lines)
    own = train.command({**v, "b_own_dropout": True})
    a, b = [ln for ln in own.splitlines() if not ln.startswith("#")]
    assert "--embd-pdrop 0.1" in a and "--embd-pdrop 0 --attn-pdrop 0 --resid-pdrop 0" in b  # B: its own, none
    one = [ln for ln in train.command({**v, "compare_b": False}).splitlines() if not ln.startswith("#")]
    assert len(one) == 1 and "runs/A" in one[0]
