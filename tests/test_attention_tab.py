"""Attention and Positions tabs as plain function calls: good input gives figures, heatmaps, tables and numbers
that equal the library's; bad input (empty prompt, too long, layer/head/query out of range, a model without
attention, bad sizes) gives one plain sentence; the Train tab trains each run with its own position encoding and
the /train endpoint still accepts the old list of inputs."""
import base64
import re

import gradio as gr
import numpy as np
import pytest
import torch
from conftest import drain

from tabs import attention as tab
from tabs import positions as ptab
from tabs import train as train_tab
from tabs.kit.sessions import SessionStore
from tinygpt import GPT, GPTConfig, save_checkpoint
from tinygpt.interpret.attention import attention_maps, head_patterns

PROMPT = "The cat sat on the mat. The cat sat on the mat again, and the dog watched the cat."


def weights_of(heat_html: str) -> np.ndarray:
    """The (T, T) weights a heatmap carries for its hover tooltips (uint16 / 65535)."""
    n = int(re.search(r'data-n="(\d+)"', heat_html).group(1))
    raw = base64.b64decode(re.search(r'data-w="([^"]+)"', heat_html).group(1))
    return np.frombuffer(raw, dtype="<u2").reshape(n, n) / 65535


def test_attention_handler(models, tiny_dir, tok):
    cache = tab.AttentionCache()
    out = tab.on_attention(cache, models, tiny_dir, PROMPT, 2, 1, None, tab.VIEWS[0])
    status, grid, heat, bars, mask, table, patterns, query, scale_fig, scale_text, graph = out
    ids = tok.encode(PROMPT)
    T = len(ids)
    assert f"**{T} tokens**" in status
    assert grid.count("<title>layer ") == 16 and "data:image/png;base64," in grid  # one hover tile per head
    assert len(scale_fig.axes) >= 2
    model, _ = models.get(tiny_dir)
    maps = attention_maps(model, [ids])
    w = weights_of(heat)
    assert w.shape == (T, T)
    assert np.abs(w - maps[2][0, 1].numpy()).max() < 1e-4  # the hover data is the model's own weights
    assert "Query %d" % (T - 1) in bars  # the last token by default
    assert len(table) == 4 * 4 and list(table["layer"])[:4] == [0, 0, 0, 0]
    rows = head_patterns(maps)
    assert table["previous token"].tolist() == [round(r["previous"], 3) for r in rows]
    assert query["value"] == T - 1 and len(query["choices"]) == T
    assert "of their weight on *later* tokens" in mask
    assert "Random q, k" in scale_text and "removing the scale multiplies its scores by" in scale_text
    assert "<svg" in graph and f"= (1, {T}, 32)" in graph
    # other views of the same (cached) prompt
    for view in tab.VIEWS:
        heat, bars, mask = tab.on_head(cache, models, tiny_dir, PROMPT, 3, 2, 4, view)
        w = weights_of(heat)
        assert np.allclose(w.sum(1), 1, atol=T * 2e-5)
        future = np.triu(np.ones((T, T), dtype=bool), 1)
        if view == tab.VIEWS[1]:
            assert (w[future] > 0).all()  # mask off: every query sees every key
            assert "dashed" in bars
        else:
            assert (w[future] == 0).all()
        assert "Query 4" in bars
    assert len(cache._data) == 1  # one analysis served all views


def test_attention_model_change_and_code(models, tiny_dir):
    banner, card, layer, head, graph, code, params = tab.on_model(models, tiny_dir)
    assert layer["maximum"] == 3 and head["maximum"] == 3
    assert "def forward" in code and code.count("<tr>") > 40
    model, _ = models.get(tiny_dir)
    n = sum(p.numel() for p in model.transformer.h[0].attn.parameters())
    assert f"**{n:,}**" in params and "✅ equal" in params


def test_attention_long_prompt_is_cropped(models, tiny_dir):
    out = tab.on_attention(tab.AttentionCache(), models, tiny_dir, PROMPT * 10, 0, 0, None, tab.VIEWS[0])
    assert "cropped to its first 64 tokens" in out[0] and "**64 tokens**" in out[0]


class NoAttention:
    """A model cache serving something that is not a GPT."""

    def __init__(self, tok):
        self.tok = tok

    def get(self, name, dtype=None):
        return object(), self.tok


@pytest.mark.parametrize("args,msg", [
    (dict(prompt=""), "prompt"),
    (dict(prompt="   \n"), "prompt"),
    (dict(layer=4), "between 0 and 3"),
    (dict(head=-1), "between 0 and 3"),
    (dict(head=1.5), "whole number"),
    (dict(query=999), None),  # a query of an earlier prompt: the last token is used instead
    (dict(view="sideways"), "view"),
    (dict(name="no-such-model"), "no-such-model"),
])
def test_attention_bad_input(models, tiny_dir, args, msg):
    a = dict(name=tiny_dir, prompt=PROMPT, layer=0, head=0, query=None, view=tab.VIEWS[0])
    a.update(args)
    call = lambda: tab.on_attention(tab.AttentionCache(), models, *a.values())  # noqa: E731
    if msg is None:
        assert "Query" in call()[3]
        return
    with pytest.raises(gr.Error, match=msg) as e:
        call()
    assert "\n" not in str(e.value)


def test_attention_bad_head_view_input(models, tiny_dir, tok):
    cache = tab.AttentionCache()
    with pytest.raises(gr.Error, match="query token must be between 0 and"):
        tab.on_head(cache, models, tiny_dir, PROMPT, 0, 0, 999, tab.VIEWS[0])
    with pytest.raises(gr.Error, match="no attention weights"):
        tab.on_attention(cache, NoAttention(tok), "x", PROMPT, 0, 0, None, tab.VIEWS[0])


def test_heatmap_stays_readable_at_256_tokens():
    T = 300
    w = torch.softmax(torch.randn(T, T).masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")), -1)
    html = tab.heat_html(w, [f"t{i}" for i in range(T)], "big", True, 5)
    labels = re.findall(r"<text [^>]*>t\d+ \d+</text>", html)
    assert len(labels) <= 2 * tab.MAX_LABELS  # every n-th token on each axis, never 300 x 300 labels
    assert "every 10th token labelled" in html
    assert np.abs(weights_of(html) - w.numpy()).max() < 1e-4


# ---------------------------------------------------------------- Positions


def test_positions_handler(models, tiny_dir):
    sin, wpe, wpe_text, rope, explain, notes = ptab.on_positions(models, tiny_dir, 64, 32, "8, 32", 16, 10000, 32, 2, 0)
    assert len(sin.axes) >= 2 and wpe is not None and len(rope.axes) >= 4
    assert "learned `wpe`" in wpe_text and "64 positions" in wpe_text
    dev = float(re.search(r"largest deviation from a pure m − n dependence is \*\*([0-9.e+-]+)\*\*", explain).group(1))
    assert dev < 1e-4
    assert "d = 8" in explain and "d = 32" in explain and notes == ""


def test_positions_without_wpe(models, tmp_path, tok):
    torch.manual_seed(0)
    d = tmp_path / "rope"
    save_checkpoint(GPT(GPTConfig.from_preset("tiny", pos_encoding="rope")), tok, str(d))
    _, wpe, text, *_ = ptab.on_positions(models, str(d))
    assert wpe is None and "has no learned `wpe`" in text and "RoPE" in text


@pytest.mark.parametrize("kw,msg", [(dict(dims=""), "at least one size"), (dict(dims="8, x"), "whole numbers"),
                                    (dict(dims="7"), "even"), (dict(dims="2,4,6,8,10,12,14"), "At most"),
                                    (dict(head_dim=9), "even"), (dict(d_map=33), "even"),
                                    (dict(base=0.5), "at least"), (dict(n_positions="many"), "number")])
def test_positions_bad_input(models, tiny_dir, kw, msg):
    with pytest.raises(gr.Error, match=msg):
        ptab.on_positions(models, tiny_dir, **kw)


def test_positions_caps_are_reported(models, tiny_dir):
    *_, notes = ptab.on_positions(models, tiny_dir, 5000, 64, "16", 16, 10000, 32, 99, 0)
    assert "Positions capped at 2,048" in notes and "Pair capped at 7" in notes


# ---------------------------------------------------------------- Train: a position encoding per run


class Req:
    session_hash = "pos-tester"


def test_train_tab_position_encoding_per_run():
    sessions = SessionStore()
    form = dict(corpus="Python docs (offline, built-in)", file=None, tokenizer="characters", n_layer=1, n_head=2,
                n_embd=16, context=16, embd_pdrop=0, attn_pdrop=0, resid_pdrop=0, steps=6, batch=4, lr=1e-3,
                a_causal=True, a_ln=True, a_scale=True, b_causal=True, b_ln=True, b_scale=True, sample_len=10, seed=1,
                a_pos="rope", b_pos="none")
    status, fig, samples, explain = drain(train_tab.on_train(sessions, **form, request=Req(),
                                                             progress=lambda *a, **k: None))
    assert "Done" in status and "RoPE" in samples and "no positional encoding" in samples
    assert "Position encodings" in explain
    models = sessions.get(Req())["trained"]
    assert models["A"][0].config.pos_encoding == "rope" and models["B"][0].config.pos_encoding == "none"
    with pytest.raises(gr.Error, match="Position encoding must be one of"):
        drain(train_tab.on_train(sessions, **{**form, "b_pos": "alibi"}, request=Req(),
                                 progress=lambda *a, **k: None))
    assert train_tab.describe_run(GPTConfig.from_preset("tiny", pos_encoding="rope", causal=False)) == \
        "RoPE, no causal mask"


def test_train_endpoint_accepts_the_old_inputs(models, tiny_dir):
    """A client written before the position-encoding inputs existed (21 values) still gets an answer: gradio_client
    fills the missing trailing inputs with the dropdowns' initial value, 'learned'."""
    from conftest import serve
    from gradio_client import Client

    from app import build_demo

    demo = build_demo(models, default_model=tiny_dir)
    try:
        client = Client(serve(demo), verbose=False)
        old = ["Python docs (offline, built-in)", None, "characters", 1, 2, 16, 16, 0, 0, 0, 10, 2, 1e-3,
               True, True, True, True, True, True, 50, 1]
        status, plot, samples, explain = client.predict(*old, api_name="/train")
        assert "Done" in status and "full model" in samples
        params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/train"]["parameters"]
        # the position encodings (inputs 29 and 30) default to learned; inputs added since then come after them
        assert [p["parameter_default"] for p in params[28:30]] == ["learned", "learned"]
        assert [p["label"] for p in params[28:30]] == ["position encoding", "position encoding"]
        out = client.predict(tiny_dir, PROMPT, 1, 1, None, tab.VIEWS[0], api_name="/attention")
        assert "tokens" in out[0]
        out = client.predict(tiny_dir, 32, 16, "8", 8, 10000, 16, 1, 0, api_name="/positions")
        assert "What the numbers say" in out[4]
    finally:
        demo.close()
