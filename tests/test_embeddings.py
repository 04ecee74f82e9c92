"""Embedding explorer: norms, cosines, neighbours and contextual similarities equal direct computations, the
tab's handlers answer with tables/figures and clear errors, the shared model is untouched, and
`python -m tinygpt embed --json` prints ids, pieces, norms and the cosine matrix."""
import json

import gradio as gr
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli, state_checksum

from tabs import embeddings as tab
from tinygpt import load_model
from tinygpt.interpret.embeddings import (
    contextual_similarity,
    cosine_matrix,
    nearest_neighbours,
    pca_2d,
    vocab_norms,
    word_vectors,
)


def test_word_vectors_norms_and_cosines_match_direct(models, tiny_dir, tok):
    model, _ = models.get(tiny_dir)
    wte = model.transformer.wte.weight
    words = ["dog", "city", "uvuvwevwe", "xqzt"]
    for pool in ("mean", "first"):
        rows = word_vectors(model, tok, words, pool)
        for w, r in zip(words, rows):
            assert r["ids"] == tok.encode(w) and r["pieces"] == [tok.piece(i) for i in r["ids"]]
            direct = wte[r["ids"]].mean(0) if pool == "mean" else wte[r["ids"][0]]
            assert torch.allclose(r["vector"], direct)
            assert r["norm"] == pytest.approx(float(torch.sqrt((direct ** 2).sum())), rel=1e-5)
            assert r["token_norms"] == pytest.approx([float(wte[i].norm()) for i in r["ids"]], rel=1e-5)
        cos = cosine_matrix(torch.stack([r["vector"] for r in rows]))
        for i in range(len(words)):
            for j in range(len(words)):
                a, b = rows[i]["vector"], rows[j]["vector"]
                assert float(cos[i, j]) == pytest.approx(float(a @ b / (a.norm() * b.norm())), abs=1e-5)
    assert len(tok.encode("uvuvwevwe")) > 1  # the pools differ only for multi-token words
    one = [word_vectors(model, tok, ["dog"], p)[0]["vector"] for p in ("mean", "first")]
    assert torch.equal(one[0], one[1])
    assert word_vectors(model, tok, ["dog"], space=True)[0]["ids"] == tok.encode(" dog")
    with pytest.raises(ValueError, match="pool"):
        word_vectors(model, tok, ["dog"], "max")
    with pytest.raises(ValueError, match="at least one word"):
        word_vectors(model, tok, [" ", ""])


def test_vocab_norms_neighbours_and_pca(models, tiny_dir, tok):
    model, _ = models.get(tiny_dir)
    wte = model.transformer.wte.weight
    assert torch.allclose(vocab_norms(model), wte.norm(dim=-1))
    res = nearest_neighbours(model, tok, "dog", k=5)
    q = wte[tok.encode("dog")].mean(0)
    direct = F.cosine_similarity(wte, q[None], dim=-1)
    direct[tok.encode("dog")] = -2  # the word's own token is not its neighbour
    top = torch.topk(direct, 5)
    assert [n["id"] for n in res["neighbours"]] == top.indices.tolist()
    assert [n["cosine"] for n in res["neighbours"]] == pytest.approx(top.values.tolist(), abs=1e-5)
    p1, p2 = pca_2d(model, [10, 20]), pca_2d(model, [10, 20])
    assert torch.equal(p1["xy"], p2["xy"]) and p1["xy"].shape == (3000, 2)  # fixed, seeded sample
    inside = int(p1["ids"][7])
    p3 = pca_2d(model, [inside])
    assert torch.allclose(p3["chosen_xy"][0], p1["xy"][7], atol=1e-5)  # chosen tokens use the same axes
    assert 0 <= p1["explained"][1] <= p1["explained"][0] <= 1


def test_contextual_similarity_matches_hidden_states(models, tiny_dir, tok):
    model, _ = models.get(tiny_dir)
    sents = ["I switched the TV to another channel", "The boat went down the river channel today"]
    res = contextual_similarity(model, tok, sents, "channel")
    L = model.config.n_layer
    assert res["cos"].shape == (L + 2, 2, 2) and len(res["layers"]) == L + 2
    assert res["mean_cos"][0] == pytest.approx(1.0, abs=1e-6)  # the static row is the same everywhere
    states = []
    for s, pos in zip(sents, res["positions"]):
        ids = tok.encode(s)
        assert ids[pos[0]] == tok.encode(" channel")[0]
        with torch.no_grad():  # the residual stream written out: embeddings, then each block
            x = model.transformer.wte(torch.tensor([ids])) + model.transformer.wpe(torch.arange(len(ids)))
            hidden = [x] + [x := blk(x) for blk in model.transformer.h]
        states.append([h[0, pos].mean(0) for h in hidden])
    for layer in range(L + 1):
        a, b = states[0][layer], states[1][layer]
        assert float(res["cos"][layer + 1, 0, 1]) == pytest.approx(float(F.cosine_similarity(a, b, dim=0)), abs=1e-5)
    with pytest.raises(ValueError, match="does not contain"):
        contextual_similarity(model, tok, ["a dog", "a cat"], "channel")
    with pytest.raises(ValueError, match="two sentences"):
        contextual_similarity(model, tok, ["a channel"], "channel")


def test_handlers_give_tables_figures_and_leave_model_untouched(models, tiny_dir, tok):
    model, _ = models.get(tiny_dir)
    before = state_checksum(model)
    out = tab.on_embeddings(models, tiny_dir, tab.DEFAULT_COMMON, tab.DEFAULT_RARE, "mean", False)
    _, card, words, tokens, heat, vocab, summary, explain = out
    assert list(words["word"]) == ["dog", "city", "book", "love", "science",
                                   "xqzt", "blorpt", "thraldor", "uvuvwevwe", "zzzzz"]
    direct = word_vectors(model, tok, ["xqzt"])[0]
    row = words[words["word"] == "xqzt"].iloc[0]
    assert row["token ids"] == ", ".join(map(str, direct["ids"])) and row.iloc[-1] == round(direct["norm"], 4)
    assert len(tokens) == sum(len(tok.encode(w)) for w in tab.parse_words(tab.DEFAULT_COMMON, "c")
                              + tab.parse_words(tab.DEFAULT_RARE, "r"))
    assert len(heat.axes) >= 2 and len(vocab.axes) == 2
    a = tab.analyse(model, tok, ["dog", "city", "book", "love", "science"],
                    ["xqzt", "blorpt", "thraldor", "uvuvwevwe", "zzzzz"])
    assert f"{a['groups']['common']['mean_norm']:.4f}" in explain
    assert f"{a['groups']['rare']['mean_cos']:.3f}" in explain and "common" in summary
    nn = tab.on_neighbours(models, tiny_dir, "dog", 7, "mean", False)
    assert len(nn) == 7 and list(nn.columns) == ["rank", "piece", "id", "cosine"]
    fig, md = tab.on_contextual(models, tiny_dir, "channel", tab.DEFAULT_SENTENCES)
    assert fig.axes and "block 3" in md and "Static vs contextual" in md
    assert state_checksum(model) == before
    assert not any(p.requires_grad for p in model.parameters())


def test_handler_errors_are_plain_sentences(models, tiny_dir):
    with pytest.raises(gr.Error, match="common word"):
        tab.on_embeddings(models, tiny_dir, " , ,", "xqzt", "mean", False)
    with pytest.raises(gr.Error, match="At most"):
        tab.on_embeddings(models, tiny_dir, ",".join(["dog"] * 30), "xqzt", "mean", False)
    with pytest.raises(gr.Error, match="'mean' or 'first'"):
        tab.on_embeddings(models, tiny_dir, "dog", "xqzt", "max", False)
    with pytest.raises(gr.Error, match="Unknown model"):
        tab.on_embeddings(models, "nope", "dog", "xqzt", "mean", False)
    with pytest.raises(gr.Error, match="does not contain"):
        tab.on_contextual(models, tiny_dir, "channel", "a dog\na cat")
    with pytest.raises(gr.Error, match="Type a word"):
        tab.on_neighbours(models, tiny_dir, "  ", 5, "mean", False)


def test_tab_builds_with_api_name(models, tiny_dir):
    with gr.Blocks() as demo:
        tab.build(models, tiny_dir)
    assert "embeddings" in {d.api_name for d in demo.fns.values()}


def test_cli_embed_json(tiny_dir, tok):
    r = run_cli("embed", "--model", tiny_dir, "--words", "dog,city,xqzt", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["pool"] == "mean" and d["model"] == tiny_dir
    assert [w["word"] for w in d["words"]] == ["dog", "city", "xqzt"]
    model, _ = load_model(tiny_dir)
    wte = model.transformer.wte.weight
    for w in d["words"]:
        assert set(w) == {"word", "ids", "pieces", "norm"}
        assert w["ids"] == tok.encode(w["word"]) and w["pieces"] == [tok.piece(i) for i in w["ids"]]
        assert w["norm"] == pytest.approx(float(wte[w["ids"]].mean(0).norm()), rel=1e-5)
    cos = torch.tensor(d["cosine"])
    assert cos.shape == (3, 3) and torch.allclose(cos, cos.T) and torch.allclose(cos.diagonal(), torch.ones(3))
    first = json.loads(run_cli("embed", "--model", tiny_dir, "--words", "xqzt", "--pool", "first", "--space",
                               "--json").stdout)
    ids = tok.encode(" xqzt")
    assert first["words"][0]["ids"] == ids
    assert first["words"][0]["norm"] == pytest.approx(float(wte[ids[0]].norm()), rel=1e-5)
    for args, msg in (((",,",), "at least one word"), (("dog", "--pool", "max"), "invalid choice")):
        bad = run_cli("embed", "--model", tiny_dir, "--words", *args)
        assert bad.returncode == 2 and bad.stderr.startswith("error:") and msg in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
