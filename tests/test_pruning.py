"""Layer pruning: named configurations, layer selection equals running the blocks by hand, perplexity is
exp(mean loss), invalid layer lists give clear messages, the tab's handler measures every configuration
without touching the shared model, and `python -m tinygpt sample --layers` prunes the same way."""
import json
import math

import gradio as gr
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli, state_checksum

from tabs import pruning as tab
from tinygpt import evaluate, generate, load_model, ngram_stats, parse_layers, perplexity
from tinygpt.interpret.pruning import (
    AUSTEN,
    SHAKESPEARE,
    default_reference,
    logit_lens,
    named_layers,
    run_configuration,
)

SHORT_REF = "It is a truth universally acknowledged, that a single man in possession of a good fortune."


def by_hand(model, idx, layers):
    """The forward pass written out: embeddings, the chosen blocks in order, final LayerNorm, LM head."""
    t = model.transformer
    x = t.wte(idx) + t.wpe(torch.arange(idx.size(1)))  # (B, T, C)
    for i in layers:
        x = t.h[i](x)
    return model.lm_head(t.ln_f(x))  # (B, T, V)



def test_named_configurations():
    assert named_layers("full", 4) == [0, 1, 2, 3]
    assert named_layers("even", 4) == [0, 2] and named_layers("odd", 4) == [1, 3]
    assert named_layers("first half", 4) == [0, 1] and named_layers("last half", 4) == [2, 3]
    assert named_layers("even", 12) == [0, 2, 4, 6, 8, 10] and named_layers("first half", 12) == list(range(6))
    assert named_layers("first half", 5) == [0, 1] and named_layers("last half", 5) == [3, 4]
    assert named_layers("custom", 4, "3, 0,3") == [3, 0, 3]  # any order, repeats allowed
    with pytest.raises(ValueError, match="only 1 block"):
        named_layers("odd", 1)
    with pytest.raises(ValueError, match="Unknown configuration"):
        named_layers("middle", 4)
    assert default_reference("tiny-shakespeare") == SHAKESPEARE and default_reference("gpt2") == AUSTEN
    assert 150 <= len(AUSTEN.split()) <= 300 and 150 <= len(SHAKESPEARE.split()) <= 300


@pytest.mark.parametrize("text,msg", [("", "at least one block"), (" , ", "at least one block"),
                                      ("a,b", "whole numbers"), ("1.5", "whole numbers"), ("0;2", "whole numbers"),
                                      ("0,4", "between 0 and 3"), ("-1", "between 0 and 3")])
def test_invalid_layer_lists(text, msg):
    with pytest.raises(ValueError, match=msg):
        parse_layers(text, 4)


def test_layer_selection_equals_blocks_by_hand(models, tiny_dir, tok):
    model, _ = models.get(tiny_dir)
    idx = torch.tensor([tok.encode("The quick brown fox jumps over the lazy dog")])
    with torch.no_grad():
        for layers in ([0, 2], [1, 3], [3, 0, 3], [0, 1, 2, 3]):
            assert torch.allclose(model(idx, layers=layers)[0], by_hand(model, idx, layers), atol=1e-5)
        assert not torch.allclose(model(idx, layers=[0, 2])[0], model(idx)[0], atol=1e-4)


def test_perplexity_is_exp_of_mean_loss(models, tiny_dir, tok):
    model, _ = models.get(tiny_dir)
    ids = tok.encode(AUSTEN)
    ctx = min(model.config.block_size, 128)
    for layers in (None, [0, 2]):
        res = perplexity(model, tok, AUSTEN, layers)
        total, count = 0.0, 0
        with torch.no_grad():
            for s in range(0, len(ids) - 1, ctx):  # consecutive windows; every token after the first predicted once
                y = torch.tensor([ids[s + 1:s + 1 + ctx]])
                x = torch.tensor([ids[s:s + y.size(1)]])
                logits = by_hand(model, x, layers or range(4))
                total += F.cross_entropy(logits[0], y[0], reduction="sum").item()
                count += y.numel()
        assert res["tokens"] == len(ids) - 1 == count and res["context"] == ctx
        assert res["loss"] == pytest.approx(total / count, rel=1e-5)
        assert res["perplexity"] == pytest.approx(math.exp(res["loss"]), rel=1e-9)
    short = tok.encode(SHORT_REF)  # one window: the same number as train.evaluate
    ev = evaluate(model, torch.tensor(short), len(short) - 1, layers=[1, 3])
    res = perplexity(model, tok, SHORT_REF, [1, 3], context=len(short) - 1)
    assert res["loss"] == pytest.approx(ev["loss"], rel=1e-5) and res["perplexity"] == pytest.approx(ev["perplexity"])
    with pytest.raises(ValueError, match="two tokens"):
        perplexity(model, tok, "", None)


def test_run_configuration_is_seeded_and_measured(models, tiny_dir, tok):
    model, _ = models.get(tiny_dir)
    a = run_configuration(model, tok, "Hello", [0, 2], 12, 0.9, 50, None, 3, SHORT_REF)
    b = run_configuration(model, tok, "Hello", [0, 2], 12, 0.9, 50, None, 3, SHORT_REF)
    assert a["new_ids"] == b["new_ids"] and len(a["new_ids"]) == 12 and a["text"].startswith("Hello")
    x = torch.tensor([tok.encode("Hello")])
    ref = generate(model, x, 12, 0.9, 50, None, torch.Generator().manual_seed(3), layers=[0, 2])
    assert a["new_ids"] == ref[0, 1:].tolist()  # the same seed gives the same draws as plain generate
    stats = ngram_stats(a["new_ids"], tok.eot_token)
    assert all(a[k] == stats[k] for k in stats)
    assert a["perplexity"] == pytest.approx(perplexity(model, tok, SHORT_REF, [0, 2])["perplexity"])
    assert a["ms_per_token"] > 0


def test_logit_lens(models, tiny_dir, tok):
    model, _ = models.get(tiny_dir)
    prompt = "The capital of France is"
    lens = logit_lens(model, tok, prompt)
    rows = lens["rows"]
    assert [r["stage"] for r in rows] == ["embeddings", "block 0", "block 1", "block 2", "block 3"]
    with torch.no_grad():
        probs = F.softmax(model(torch.tensor([tok.encode(prompt)]))[0][0, -1], -1)
        assert lens["answer_id"] == int(probs.argmax()) and rows[-1]["top_id"] == lens["answer_id"]
        assert rows[-1]["answer_prob"] == pytest.approx(float(probs.max()), rel=1e-4)
        mid = F.softmax(by_hand(model, torch.tensor([tok.encode(prompt)]), [0, 1])[0, -1], -1)
    assert rows[2]["top_id"] == int(mid.argmax())
    assert rows[2]["answer_prob"] == pytest.approx(float(mid[lens["answer_id"]]), rel=1e-4)
    assert all(1 <= r["answer_rank"] for r in rows) and rows[-1]["answer_rank"] == 1


def test_prune_handler_measures_and_leaves_model_untouched(models, tiny_dir, tok):
    model, _ = models.get(tiny_dir)
    before = state_checksum(model)
    outs = list(tab.on_prune(models, tiny_dir, ["even", "first half", "custom"], "3,1", "Hello world", 6, 0.8,
                             200, 7, SHORT_REF))
    assert len(outs) == 1 + 4  # a first frame, then one per configuration (full added as the baseline)
    _, html, table, ppl_fig, lens_df, lens_fig, explain, js = outs[-1]
    assert list(table["configuration"]) == ["full [0,1,2,3]", "even [0,2]", "first half [0,1]", "custom [3,1]"]
    for label, layers in zip(table["configuration"], ([0, 1, 2, 3], [0, 2], [0, 1], [3, 1])):
        assert label in html
        row = table[table["configuration"] == label].iloc[0]
        assert row["perplexity"] == round(perplexity(model, tok, SHORT_REF, layers)["perplexity"], 2)
    assert ppl_fig.axes and lens_fig.axes and len(lens_df) == 5
    assert "×" in explain and "Logit lens" in explain
    assert [c["layers"] for c in js["configurations"]][1] == [0, 2]
    assert "The full model was added as the baseline." in js["notes"]
    assert state_checksum(model) == before  # pruning never edits the cached base model
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("configs,custom,ref,msg", [
    (["custom"], "9", SHORT_REF, "between 0 and 3"),
    (["custom"], "", SHORT_REF, "at least one block"),
    (["custom"], "one,two", SHORT_REF, "whole numbers"),
    ([], "", SHORT_REF, "at least one configuration"),
    (["even"], "", "   ", "reference passage"),
])
def test_prune_handler_errors(models, tiny_dir, configs, custom, ref, msg):
    with pytest.raises(gr.Error, match=msg):
        list(tab.on_prune(models, tiny_dir, configs, custom, "Hello", 5, 0.8, 200, 1, ref))


def test_model_change_swaps_only_default_texts(models, tiny_dir):
    _, _, prompt, ref = tab.on_model(models, tiny_dir, tab.PROMPTS["shakespeare"], SHAKESPEARE)
    assert prompt == tab.PROMPTS["gpt2"] and ref == AUSTEN  # a checkpoint dir is not a Shakespeare model
    _, _, prompt, ref = tab.on_model(models, tiny_dir, "my prompt", "my passage")
    assert (prompt, ref) == ("my prompt", "my passage")


def test_tab_builds_with_api_name(models, tiny_dir):
    with gr.Blocks() as demo:
        tab.build(models, tiny_dir)
    assert "prune" in {d.api_name for d in demo.fns.values()}


def test_cli_sample_layers_prunes_the_same_way(tiny_dir, tok):
    r = run_cli("sample", "--model", tiny_dir, "--start", "Hello", "--num-samples", "1", "--max-new-tokens", "8",
                "--temperature", "0", "--layers", "0,2", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["layers"] == [0, 2]
    model, _ = load_model(tiny_dir)
    out = generate(model, torch.tensor([tok.encode("Hello")]), 8, 0.0, layers=[0, 2])
    assert d["samples"][0] == tok.decode(out[0].tolist())
    for layers, msg in (("0,9", "between 0 and 3"), ("a", "whole numbers")):
        bad = run_cli("sample", "--model", tiny_dir, "--start", "Hi", "--max-new-tokens", "2", "--layers", layers)
        assert bad.returncode == 2 and bad.stderr.startswith("error:") and msg in bad.stderr
