"""Train-from-scratch tab: two runs side by side; the unmasked one cheats (near-zero loss) and its text breaks."""
import gradio as gr
import pytest
import torch

from tabs import train as train_tab
from tabs.sessions import SessionStore
from tinygpt import GPTConfig
from conftest import drain


def test_mask_vs_no_mask_on_random_text(tmp_path):
    """On random letters nothing can be predicted (loss ~ ln 16), unless the future is visible: then it is copied."""
    g = torch.Generator().manual_seed(0)
    f = tmp_path / "random.txt"
    f.write_text("".join("abcdefghijklmnop"[i] for i in torch.randint(0, 16, (20000,), generator=g).tolist()))
    out = drain(train_tab.on_train(SessionStore(), train_tab.UPLOAD, str(f), "characters", 1, 2, 32, 16,
                                   0, 0, 0, 200, 16, 1e-2, True, True, True, False, True, True, 60, 1,
                                   progress=lambda *a, **k: None))
    status, fig, samples, explain = out
    assert "Done" in status and "no causal mask" in samples
    assert "Without the causal mask" in explain
    rows = [ln for ln in explain.splitlines() if ln.startswith("| A") or ln.startswith("| B")]
    loss = {r.split("|")[1].strip(): float(r.split("|")[3]) for r in rows}
    assert loss["A"] > 2.6  # ln 16 = 2.77: random text cannot be predicted from the past
    assert loss["B"] < 0.5 * loss["A"]  # the tell-tale: copying the visible answer


def test_bad_knobs():
    with pytest.raises(gr.Error, match="divisible"):
        drain(train_tab.on_train(SessionStore(), "Python docs (offline, built-in)", None, "characters", 2, 3, 32, 32,
                                 0, 0, 0, 10, 4, 1e-3, True, True, True, False, True, True, 10, 1,
                                 progress=lambda *a, **k: None))
    with pytest.raises(gr.Error, match="upload"):
        drain(train_tab.on_train(SessionStore(), train_tab.UPLOAD, None, "characters", 2, 2, 32, 32,
                                 0, 0, 0, 10, 4, 1e-3, True, True, True, False, True, True, 10, 1,
                                 progress=lambda *a, **k: None))


def test_describe_run():
    assert train_tab.describe_run(GPTConfig.from_preset("tiny")) == "full model"
    assert train_tab.describe_run(GPTConfig.from_preset("tiny", causal=False, layernorm=False)) == \
        "no causal mask, no LayerNorm"
