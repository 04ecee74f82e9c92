"""Train-from-scratch tab: two runs side by side; the unmasked one cheats (near-zero loss) and its text breaks."""
import gradio as gr
import pytest
import torch
from conftest import drain

from tabs import train as train_tab
from tabs.kit.sessions import SessionStore
from tinygpt import GPTConfig


class Req:  # stands in for gr.Request: only the session hash matters
    session_hash = "tester"


def form(**changes):
    """The tab's form as keyword arguments (tiny model, few steps)."""
    f = dict(corpus="Python docs (offline, built-in)", file=None, tokenizer="characters", n_layer=1, n_head=2,
             n_embd=32, context=16, embd_pdrop=0, attn_pdrop=0, resid_pdrop=0, steps=10, batch=4, lr=1e-3,
             a_causal=True, a_ln=True, a_scale=True, b_causal=False, b_ln=True, b_scale=True, sample_len=10, seed=1)
    f.update(changes)
    return f


def run(sessions, **changes):
    return drain(train_tab.on_train(sessions, **form(**changes), request=Req(), progress=lambda *a, **k: None))


def test_mask_vs_no_mask_on_random_text(tmp_path):
    """On random letters nothing can be predicted (loss ~ ln 16), unless the future is visible: then it is copied."""
    g = torch.Generator().manual_seed(0)
    f = tmp_path / "random.txt"
    f.write_text("".join("abcdefghijklmnop"[i] for i in torch.randint(0, 16, (20000,), generator=g).tolist()))
    sessions = SessionStore()
    status, fig, samples, explain = run(sessions, corpus=train_tab.UPLOAD, file=str(f), steps=200, batch=16,
                                        lr=1e-2, sample_len=60)
    assert "Done" in status and "no causal mask" in samples
    assert "Without the causal mask" in explain
    results = sessions.get(Req())["train_results"]
    assert results["A"]["train_loss"] > 2.6  # ln 16 = 2.77: random text cannot be predicted from the past
    assert results["B"]["train_loss"] < 0.5 * results["A"]["train_loss"]  # the tell-tale: copying the answer
    assert results["A"]["steps"] == results["B"]["steps"] == 200


def test_bad_knobs():
    with pytest.raises(gr.Error, match="divisible"):
        run(SessionStore(), n_layer=2, n_head=3)
    with pytest.raises(gr.Error, match="upload"):
        run(SessionStore(), corpus=train_tab.UPLOAD)


def test_describe_run():
    assert train_tab.describe_run(GPTConfig.from_preset("tiny")) == "full model"
    assert train_tab.describe_run(GPTConfig.from_preset("tiny", causal=False, layernorm=False)) == \
        "no causal mask, no LayerNorm"
