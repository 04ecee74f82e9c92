"""Sampling and the Attention tab at long lengths go through the budget: tinygpt.budget.estimate_sampling /
estimate_attention are checked before any work, and a request over one run's limits is refused in one sentence
(not through the room's hub: sampling's batcher already shares the work)."""
import gradio as gr
import pytest
from conftest import drain

from tabs import attention as att
from tabs import sampling
from tinygpt import budget
from tinygpt.budget.estimates import estimate_attention, estimate_sampling

LONG = "the cat sat on the mat and looked at the dog " * 20  # ~200 tokens: more than the tiny model's context


def one_sentence(msg: str) -> bool:
    return "\n" not in msg and msg.count(". ") == 0 and "Traceback" not in msg


def test_sampling_is_budgeted_before_any_work(models, tiny_dir, monkeypatch):
    model, tok = models.get(tiny_dir)
    est = estimate_sampling(model.config, 6, 500, model.config.block_size)
    # a limit just under this request's estimate: refused; the same request with 1 sample fits
    monkeypatch.setenv("TINYGPT_RUN_MEMORY_GB", str(est.memory_bytes * 0.99 / 1e9))
    gen = sampling.on_sample(models, tiny_dir, False, LONG, 6, 500, 0.8, 50, 1.0, 1)
    with pytest.raises(gr.Error) as e:
        next(gen)  # refused before the first update: nothing was generated
    msg = e.value.message
    assert msg.startswith("This run needs about") and "fewer samples or fewer new tokens" in msg and one_sentence(msg)
    html, js = drain(sampling.on_sample(models, tiny_dir, False, "Hello", 1, 5, 0.8, 50, 1.0, 1))
    assert js["samples"][0].startswith("Hello")


def test_sampling_time_limit(models, tiny_dir, monkeypatch):
    monkeypatch.setenv("TINYGPT_RUN_MINUTES", "0.0000001")
    with pytest.raises(gr.Error, match="at most .* and 1 second"):
        next(sampling.on_sample(models, tiny_dir, False, "Hello", 1, 5, 0.8, 50, 1.0, 1))


def test_attention_is_budgeted_at_its_cropped_length(models, tiny_dir, monkeypatch):
    model, tok = models.get(tiny_dir)
    full = estimate_attention(model.config, model.config.block_size)  # LONG is cropped to the context
    assert estimate_attention(model.config, 10 ** 6).memory_bytes == full.memory_bytes
    monkeypatch.setenv("TINYGPT_RUN_MEMORY_GB", str(full.memory_bytes * 0.99 / 1e9))
    cache = att.AttentionCache()
    with pytest.raises(gr.Error) as e:
        att.on_attention(cache, models, tiny_dir, LONG)
    msg = e.value.message
    assert msg.startswith("This run needs about") and "shorter prompt" in msg and one_sentence(msg)
    out = att.on_attention(cache, models, tiny_dir, "Hello there")  # a short prompt fits the same limit
    assert "tokens" in out[0]
    monkeypatch.delenv("TINYGPT_RUN_MEMORY_GB")
    assert "64 tokens" in att.on_attention(cache, models, tiny_dir, LONG)[0]


def test_defaults_fit():
    assert budget.limits_from_env({}).run_memory_bytes == 2e9
