"""Attention maps equal transformers' eager `output_attentions`; rows sum to 1 and the causal mask zeroes the future;
pattern scores on hand-made matrices; the scale-removed softmax equals a manual computation from the weights; the
graph's shapes are the shapes of the real tensors (forward hooks); every line of the live attention source has a
comment; the attention parameter count equals numel(); the CLI prints the weights as JSON and trains with every
position encoding."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli

import tinygpt
from tinygpt import GPT, GPTConfig, load_model
from tinygpt.interpret.attention import (
    AttentionCache,
    analyse,
    attention_maps,
    future_weight,
    head_patterns,
    head_weights,
    name_pattern,
    pattern_scores,
    query_key,
    raw_scores,
    scale_removed,
    scale_summary,
    softmax_weights,
)
from tinygpt.interpret.attention_code import (
    COMMENTS,
    attention_parameters,
    attention_source,
    commented_source,
    unused_comments,
)
from tinygpt.interpret.graph import graph_svg, model_graph, shape_text
from tinygpt.params import parameter_breakdown


def tiny(**kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=50, block_size=32, n_layer=2, n_head=4, n_embd=32)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).eval()


def ids(T=12, vocab=50, seed=1):
    return torch.randint(0, vocab, (2, T), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- public names

def test_public_names():
    assert tinygpt.attention_maps is attention_maps
    assert tinygpt.sinusoidal_encoding(4, 6).shape == (4, 6)
    x = torch.randn(3, 8)
    assert torch.allclose(tinygpt.apply_rope(x, torch.arange(3)), tinygpt.apply_rope(x, [0, 1, 2]))


# ---------------------------------------------------------------- maps vs transformers


def test_attention_maps_equal_transformers_eager(hf_dir, tok):
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(hf_dir, attn_implementation="eager").eval()
    model, _ = load_model(hf_dir)
    x = torch.tensor([tok.encode("The quick brown fox jumps over the lazy dog, and the dog sleeps on.")])
    ours = attention_maps(model, x)
    with torch.no_grad():
        theirs = hf(x, output_attentions=True).attentions
    assert len(ours) == len(theirs) == model.config.n_layer
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape == (1, model.config.n_head, x.shape[1], x.shape[1])
        assert (a - b).abs().max().item() < 1e-5
    # a list of ids is one sequence; layers picks the blocks run (block 0 first: its input is the same)
    sub = attention_maps(model, x[0].tolist(), layers=[0, 1])
    assert len(sub) == 2 and torch.equal(sub[0], ours[0]) and torch.equal(sub[1], ours[1])


@pytest.mark.parametrize("kw", [{}, {"pos_encoding": "rope", "n_kv_head": 2}, {"pos_encoding": "sinusoidal"},
                                {"pos_encoding": "none", "mlp": "gated", "norm": "rmsnorm"}, {"causal": False},
                                {"attn_scale": False}])
def test_rows_sum_to_one_causal_zeros_and_qk_reproduces_the_maps(kw):
    model = tiny(**kw)
    x = ids()
    maps = attention_maps(model, x)
    qk = query_key(model, x)
    T = x.shape[1]
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    for i, (att, (q, k)) in enumerate(zip(maps, qk)):
        assert att.shape == (2, 4, T, T)
        assert torch.allclose(att.sum(-1), torch.ones(2, 4, T), atol=1e-6)
        if model.config.causal:
            assert (att[..., future] == 0).all()
        else:
            assert (att[..., future] > 0).all()
        again = softmax_weights(raw_scores(q, k), model.transformer.h[i].attn.scale, model.config.causal)
        assert (again - att).abs().max().item() < 1e-6


def test_bad_inputs():
    model = tiny()
    with pytest.raises(ValueError, match="longer than the model's context"):
        attention_maps(model, torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="whole numbers"):
        attention_maps(model, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="between 0 and 1"):
        attention_maps(model, ids(), layers=[5])
    with pytest.raises(ValueError, match="no attention weights"):
        attention_maps(object(), [1, 2])


# ---------------------------------------------------------------- pattern scores


def test_pattern_scores_on_hand_made_matrices():
    T = 6
    i = torch.arange(T)
    prev = torch.zeros(T, T)
    prev[i[1:], i[:-1]] = 1
    prev[0, 0] = 1
    s = pattern_scores(prev)
    assert s["previous"].item() == 1 and s["self"].item() == 0
    assert s["first"].item() == pytest.approx(1 / (T - 1))  # only query 1, whose previous token is token 0
    assert s["max_weight"].item() == 1 and s["entropy"].item() == 0
    sink = torch.zeros(T, T)
    sink[:, 0] = 1
    s = pattern_scores(sink)
    assert s["first"].item() == 1 and s["previous"].item() == pytest.approx(1 / (T - 1))
    s = pattern_scores(torch.eye(T))
    assert s["self"].item() == 1 and s["first"].item() == 0 and s["previous"].item() == 0
    uniform = torch.tril(torch.ones(T, T)) / (i + 1).unsqueeze(1)
    s = pattern_scores(uniform)
    assert s["entropy"].item() == pytest.approx(sum(math.log(k + 1) for k in range(1, T)) / (T - 1), rel=1e-6)
    assert s["entropy_ratio"].item() == pytest.approx(1.0, rel=1e-6)
    assert s["previous"].item() == pytest.approx(sum(1 / (k + 1) for k in range(1, T)) / (T - 1), rel=1e-6)
    # without the causal mask a uniform row over all T keys is the maximum
    s = pattern_scores(torch.full((T, T), 1 / T), causal=False)
    assert s["entropy_ratio"].item() == pytest.approx(1.0, rel=1e-6)
    # batched (L, nh, T, T) -> rows; names
    rows = head_patterns([torch.stack([prev, sink, torch.eye(T), uniform])[None]])
    assert [r["pattern"] for r in rows] == ["previous token", "first token (sink)", "self", "broad"]
    assert name_pattern(0.3, 0.3, 0.3, 0.5) == "mixed"
    with pytest.raises(ValueError, match="square"):
        pattern_scores(torch.ones(3, 4))


def test_future_weight():
    w = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]])
    assert torch.allclose(future_weight(w), torch.tensor([0.5, 0.7, 0.0]))


# ---------------------------------------------------------------- one prompt analysed, and its cache


class CharTok:  # a character tokenizer over the tiny vocabulary (ids 0..49)
    def encode(self, text):
        return [ord(c) % 50 for c in text]

    def piece(self, i):
        return chr(ord("a") + i % 26)


def test_analyse_views_and_cache():
    model = tiny()
    a = analyse(model, CharTok(), "hello there, attention")
    assert a["T"] == 22 and len(a["maps"]) == 2 and a["maps"][0].shape == (4, 22, 22) and a["notes"] == []
    assert len(a["rows"]) == 2 * 4 and {"entropy_unscaled", "max_weight_unscaled"} <= set(a["rows"][0])
    assert torch.equal(head_weights(model, a, 1, 2), a["maps"][1][2])
    no_mask = head_weights(model, a, 1, 2, "no mask")
    assert torch.allclose(no_mask.sum(-1), torch.ones(22)) and no_mask.triu(1).sum() > 0  # sees later tokens
    assert torch.equal(head_weights(model, a, 1, 2, "no scale").triu(1), torch.zeros(22, 22))  # still causal
    with pytest.raises(ValueError, match="view"):
        head_weights(model, a, 0, 0, "sideways")
    long = analyse(model, CharTok(), "x" * 40)  # longer than the context of 32: cropped, said
    assert long["T"] == 32 and "cropped to its first 32 tokens" in long["notes"][0]
    with pytest.raises(ValueError, match="no tokens"):
        analyse(model, CharTok(), "")
    cache = AttentionCache(size=1)
    first = cache.get(model, CharTok(), "hello")
    assert cache.get(model, CharTok(), "hello") is first  # another layer or view: no new forward pass
    cache.get(model, CharTok(), "other")
    assert cache.get(model, CharTok(), "hello") is not first  # only the newest `size` prompts are kept


# ---------------------------------------------------------------- 1/sqrt(d_k) removed


def test_scale_removed_equals_manual_computation():
    model = tiny()
    x = ids(T=10)
    res = scale_removed(model, x)
    hidden = model.hidden_states(x)
    C, nh, hs = 32, 4, 8
    T = x.shape[1]
    for layer in range(2):
        blk = model.transformer.h[layer]
        h = F.layer_norm(hidden[layer], (C,), blk.ln_1.weight, blk.ln_1.bias, 1e-5)
        W, b = blk.attn.c_attn.weight, blk.attn.c_attn.bias
        q = (h @ W[:C].T + b[:C]).view(2, T, nh, hs).transpose(1, 2)
        k = (h @ W[C:2 * C].T + b[C:2 * C]).view(2, T, nh, hs).transpose(1, 2)
        scores = q @ k.transpose(-1, -2)  # no 1/sqrt(hs)
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        p = torch.softmax(scores, -1)
        ent = -(p * p.clamp_min(1e-30).log()).sum(-1)[..., 1:].mean(-1).mean(0)  # (nh,)
        top = p.max(-1).values[..., 1:].mean(-1).mean(0)
        assert torch.allclose(res["unscaled"]["entropy"][layer], ent, atol=1e-5)
        assert torch.allclose(res["unscaled"]["max_weight"][layer], top, atol=1e-6)
        real = pattern_scores(attention_maps(model, x)[layer])
        assert torch.allclose(res["scaled"]["entropy"][layer], real["entropy"].mean(0), atol=1e-5)
    summ = scale_summary(res)
    assert summ["factor"] == pytest.approx(math.sqrt(hs))
    assert summ["entropy_unscaled"] <= summ["entropy_scaled"]  # larger scores: a peakier softmax
    # a model built without the scale: removing it changes nothing
    res = scale_removed(tiny(attn_scale=False), x)
    assert torch.allclose(res["scaled"]["entropy"], res["unscaled"]["entropy"]) and res["factor"] == 1.0


# ---------------------------------------------------------------- the graph


def observed_shapes(model, x, targets, monkeypatch):
    """tensor tag -> shape of the real tensor, from forward hooks and wrappers around RoPE and SDPA."""
    import tinygpt.model as M

    rec, calls = {}, {"rope": [], "sdpa": []}
    hooks = []
    for name, mod in model.named_modules():
        def out_hook(m, i, o, n=name):
            if isinstance(o, torch.Tensor):
                rec.setdefault(f"module:{n}:out", tuple(o.shape))

        def in_hook(m, i, n=name):
            if i and isinstance(i[0], torch.Tensor):
                rec.setdefault(f"module:{n}:in", tuple(i[0].shape))
        hooks += [mod.register_forward_hook(out_hook), mod.register_forward_pre_hook(in_hook)]
    real_rope, real_sdpa = M.rope_rotate, F.scaled_dot_product_attention

    def rope(t, cos, sin):
        out = real_rope(t, cos, sin)
        calls["rope"].append((tuple(t.shape), tuple(out.shape)))
        return out

    def sdpa(q, k, v, **kw):
        out = real_sdpa(q, k, v, **kw)
        calls["sdpa"].append((tuple(q.shape), tuple(k.shape), tuple(v.shape), tuple(out.shape)))
        return out
    monkeypatch.setattr(M, "rope_rotate", rope)
    monkeypatch.setattr(F, "scaled_dot_product_attention", sdpa)
    try:
        with torch.no_grad():
            logits, loss = model(x, targets)
    finally:
        for h in hooks:
            h.remove()
    c = model.config
    qkv = rec["module:transformer.h.0.attn.c_attn:out"]
    A, kv = c.attn_dim, c.kv_heads * c.head_dim
    assert qkv[-1] == A + 2 * kv
    rec.update({"input": tuple(x.shape), "targets": tuple(targets.shape), "logits": tuple(logits.shape),
                "loss": tuple(loss.shape), "q_flat": qkv[:-1] + (A,), "k_flat": qkv[:-1] + (kv,),
                "v_flat": qkv[:-1] + (kv,),
                "pos_table": tuple(model.position_embedding(torch.arange(x.shape[1])).shape)
                if c.pos_encoding == "sinusoidal" else None})
    q, k, v, heads = calls["sdpa"][0]
    rec.update({"v": v, "heads_out": heads, "scores": tuple(attention_maps(model, x)[0].shape)})
    rec["weights"] = rec["scores"]
    if c.pos_encoding == "rope":  # q and k are observed before the GQA repeat
        (rec["q"], rec["q_rope"]), (rec["k"], rec["k_rope"]) = calls["rope"][0], calls["rope"][1]
    else:
        rec["q"], rec["k"] = q, k
    return rec


@pytest.mark.parametrize("kw", [{}, {"pos_encoding": "rope"}, {"pos_encoding": "sinusoidal", "mlp": "gated"},
                                {"pos_encoding": "none", "n_experts": 2}, {"pos_encoding": "rope", "n_kv_head": 2},
                                {"causal": False, "attn_scale": False, "head_size": 6}])
def test_graph_shapes_are_the_real_shapes(kw, monkeypatch):
    model = tiny(**kw)
    x = ids(T=7)
    targets = ids(T=7, seed=2)
    real = observed_shapes(model, x, targets, monkeypatch)
    g = model_graph(model, batch=2, T=7)
    gqa = model.config.kv_heads != model.config.n_head
    checked = 0
    for e in g["edges"]:
        if gqa and e["tensor"] == "v":  # v is only observable after the repeat to n_head heads
            continue
        assert e["tensor"] in real, e
        assert e["shape"] == real[e["tensor"]], (e, real[e["tensor"]])
        checked += 1
    assert checked >= 20
    ids_ = {n["id"] for n in g["nodes"]}
    assert ("pos" in ids_) == (model.config.pos_encoding in ("learned", "sinusoidal"))
    assert ("rope_q" in ids_) == (model.config.pos_encoding == "rope")
    assert ("mask" in ids_) == model.config.causal and ("scale" in ids_) == model.config.attn_scale
    svg = graph_svg(g)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert all(shape_text(e).split(" = ")[0] in svg for e in g["edges"] if e["dims"])


def test_graph_gpt2_numbers():
    g = model_graph(GPTConfig.from_preset("gpt2"), batch=1, T=12)
    shapes = {e["tensor"]: e["shape"] for e in g["edges"]}
    assert shapes["module:transformer.h.0.attn.c_attn:out"] == (1, 12, 2304)
    assert shapes["q"] == (1, 12, 12, 64) and shapes["weights"] == (1, 12, 12, 12)
    assert shapes["module:transformer.h.0.mlp.c_fc:out"] == (1, 12, 3072) and shapes["logits"] == (1, 12, 50257)
    assert "(B, T, 3C) = (1, 12, 2,304)" in graph_svg(g)
    with pytest.raises(ValueError, match="between 1 and the context"):
        model_graph(GPTConfig.from_preset("tiny"), T=1000)


# ---------------------------------------------------------------- the commented code


def test_every_line_of_the_live_source_has_a_comment():
    import inspect
    import textwrap

    from tinygpt.model import CausalSelfAttention

    assert attention_source() == textwrap.dedent(inspect.getsource(CausalSelfAttention))
    rows = commented_source()
    assert "".join(r["code"] + "\n" for r in rows) == attention_source()
    missing = [r["code"].strip() for r in rows if r["key"] and not r["comment"]]
    assert not missing, f"lines of CausalSelfAttention without a comment in attention_code.COMMENTS: {missing}"
    assert not unused_comments(), "comments whose line is gone from the source"
    assert any("def forward" in r["code"] for r in rows)


def test_comment_coverage_detects_a_stale_page():
    class Toy:
        def forward(self, x):
            """Doc."""
            y = x + 1  # shape (B, T)
            return y
    comments = {"class Toy:": "c", "def forward(self, x):": "f", "<docstring>": "d", "y = x + 1": "add"}
    rows = commented_source(Toy, comments)
    assert [r["comment"] for r in rows if r["key"]] == ["c", "f", "d", "add", None]  # `return y` has none
    assert unused_comments(Toy, {**comments, "gone = 1": "x"}) == ["gone = 1"]
    assert "class CausalSelfAttention(nn.Module):" in COMMENTS


@pytest.mark.parametrize("kw", [{}, {"bias": False}, {"n_kv_head": 2}, {"head_size": 6}, {"qkv_bias": True,
                                                                                            "bias": False}])
def test_attention_parameters_equal_numel(kw):
    model = tiny(**kw)
    p = attention_parameters(model.config)
    assert p["per_layer"] == sum(t.numel() for t in model.transformer.h[0].attn.parameters())
    assert p["total"] == sum(t.numel() for b in model.transformer.h for t in b.attn.parameters())
    rows = parameter_breakdown(model.config)
    assert p["per_layer"] == sum(r["count"] for r in rows if r["name"].startswith("per block: attention"))


def test_attention_parameters_gpt2():
    cfg = GPTConfig.from_preset("gpt2")
    with torch.device("meta"):
        model = GPT(cfg)
    p = attention_parameters(cfg)
    assert p["per_layer"] == 4 * 768 ** 2 + 4 * 768 == 2_362_368
    assert p["per_layer"] == sum(t.numel() for t in model.transformer.h[0].attn.parameters())
    assert p["formula"] == "C·3C + 3C + C·C + C"


# ---------------------------------------------------------------- command line


def test_cli_attention_json(tiny_dir, tok):
    text = "Hello there, attention world"
    r = run_cli("attention", "--model", tiny_dir, "--text", text, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"tokens", "weights"}
    model, _ = load_model(tiny_dir)
    x = tok.encode(text)
    assert out["tokens"] == [tok.piece(i) for i in x]
    w = torch.tensor(out["weights"], dtype=torch.float64)
    assert w.shape == (4, 4, len(x), len(x))
    maps = torch.stack([m[0] for m in attention_maps(model, [x])]).double()
    assert (w - maps).abs().max().item() <= 5e-7 + 1e-12  # rounded to 6 decimals
    assert all(round(v, 6) == v for v in w.flatten().tolist())
    r = run_cli("attention", "--model", tiny_dir, "--text", text, "--layers", "0,1", "--json")
    assert torch.equal(torch.tensor(json.loads(r.stdout)["weights"], dtype=torch.float64), w[:2])
    r = run_cli("attention", "--model", tiny_dir, "--text", text)
    assert r.returncode == 0 and "previous" in r.stdout and "pattern" in r.stdout
    long = text * 20  # more tokens than the context of 64: the first 64 are kept, and the note says so
    r = run_cli("attention", "--model", tiny_dir, "--text", long, "--layers", "0", "--json")
    assert r.returncode == 0 and "kept the first 64" in r.stderr
    assert json.loads(r.stdout)["tokens"] == [tok.piece(i) for i in tok.encode(long)[:64]]
    for bad, msg in ((["--text", " "], "empty"), (["--text", "hi", "--layers", "9"], "between 0 and 3")):
        r = run_cli("attention", "--model", tiny_dir, *bad)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr


def test_cli_train_pos_encoding_round_trips(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("To be, or not to be, that is the question. Whether tis nobler in the mind to suffer. " * 60)
    for pe in ("rope", "none", "sinusoidal"):
        out = tmp_path / pe
        r = run_cli("train", "--text", str(text), "--steps", "3", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
                    "--block-size", "16", "--batch-size", "2", "--eval-interval", "2", "--pos-encoding", pe,
                    "--out", str(out), "--json")
        assert r.returncode == 0, r.stderr
        assert math.isfinite(json.loads(r.stdout)["val_loss"])
        model, tok = load_model(str(out))
        assert model.config.pos_encoding == pe and not hasattr(model.transformer, "wpe")
        x = torch.tensor([tok.encode("To be")])
        sample = tinygpt.generate(model, x, 5, 1.0, None, None, torch.Generator().manual_seed(0))
        assert sample.shape == (1, x.shape[1] + 5)
    r = run_cli("train", "--text", str(text), "--pos-encoding", "alibi", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "pos-encoding" in r.stderr
