"""The app builds, the sampling handlers answer without a browser, and the server serves its page offline."""
import socket
import urllib.request

import gradio as gr
import pytest
from conftest import drain

from tabs import sampling


def test_sample_handler_streams_and_is_seeded(models, tiny_dir):
    args = (models, tiny_dir, False, "Hello there", 2, 12, 0.9, 50, 1.0, 7)
    steps = list(sampling.on_sample(*args))
    assert len(steps) >= 2
    html, js = steps[-1]
    assert len(js["samples"]) == 2 and all(s.startswith("Hello there") for s in js["samples"])
    assert js["fallback"] is False
    assert "Sample 2" in html
    assert drain(sampling.on_sample(*args))[1]["samples"] == js["samples"]


def test_sample_handler_caps_and_errors(models, tiny_dir):
    js = drain(sampling.on_sample(models, tiny_dir, False, "x", 99, 2, 1.0, 0, 1.0, 1))[1]
    assert len(js["samples"]) == sampling.MAX_SAMPLES
    assert any("capped" in n for n in js["notes"])
    for bad in ("", "   \n"):
        with pytest.raises(gr.Error, match="prompt"):
            drain(sampling.on_sample(models, tiny_dir, False, bad, 1, 5, 1.0, 0, 1.0, 1))
    with pytest.raises(gr.Error, match="Temperature"):
        drain(sampling.on_sample(models, tiny_dir, False, "hi", 1, 5, -1, 0, 1.0, 1))
    with pytest.raises(gr.Error, match="number"):
        drain(sampling.on_sample(models, tiny_dir, False, "hi", 1, 5, float("nan"), 0, 1.0, 1))
    with pytest.raises(gr.Error, match="Unknown model"):
        drain(sampling.on_sample(models, "nope", False, "hi", 1, 5, 1.0, 0, 1.0, 1))


def test_distribution_and_explain(models, tiny_dir):
    model, tok = models.get(tiny_dir)
    s = sampling.distribution(model, tok, "The cat", 10.0, 2, None)
    assert s["kept"] == 2 and sum(v > 0 for v in s["after"]) <= 2
    assert abs(sum(s["after"]) - 1.0) < 1e-4  # the two kept tokens are among the raw top 20
    greedy = sampling.distribution(model, tok, "The cat", 0.0, None, None)
    assert greedy["kept"] == 1 and greedy["choices_after"] == pytest.approx(1.0)
    fig, md = sampling.on_dist(models, tiny_dir, False, "The cat", 0.8, 200, 0.9)
    assert fig.axes and "T=10" in md and "top-k=2" in md


def test_build_demo_and_serve_offline(models, tiny_dir):
    from app import build_demo, launch_kwargs

    demo = build_demo(models, default_model=tiny_dir)
    api = {d.api_name for d in demo.fns.values()}
    assert "sample" in api
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_kwargs())
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).read().decode()
        assert "TinyGPT Lab" in page
        from gradio_client import Client
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        html, js = client.predict(tiny_dir, False, "Hello", 1, 5, 0.0, 0, 1.0, 1, api_name="/sample")
        assert js["samples"][0].startswith("Hello")
    finally:
        demo.close()


def test_explain_rows_top_p_against_top_k(models, tiny_dir):
    """The course map's top-p row (T=1, top-k off, top-p 0.9): a plain T=1 row, your settings once, and the top-k
    that keeps as many tokens, each computed from this prompt's distribution."""
    model, tok = models.get(tiny_dir)
    rows = sampling.explain_rows(model, tok, "The cat", 1.0, None, 0.9)
    labels = [label for label, _ in rows]
    assert len(set(labels)) == len(labels)
    assert sum("(your settings)" in label for label in labels) == 1
    assert "T=1 (the model's own distribution)" in labels and "T=1, top-p=0.9 (your settings)" in labels
    mine = dict(rows)["T=1, top-p=0.9 (your settings)"]
    assert mine == sampling.distribution(model, tok, "The cat", 1.0, None, 0.9, 20)
    plain = dict(rows)["T=1 (the model's own distribution)"]
    assert plain["kept"] == plain["vocab"] and plain["kept_mass"] == pytest.approx(1.0)
    assert mine["kept"] < plain["kept"] and mine["kept_mass"] >= 0.9
    k = mine["kept"]
    label, versus = rows[-1]
    assert label == f"T=1, top-k={k} (as many tokens as your top-p=0.9 keeps)"
    assert versus == sampling.distribution(model, tok, "The cat", 1.0, k, None, 20)
    assert versus["kept"] == k and versus["kept_mass"] == pytest.approx(mine["kept_mass"], rel=1e-5)
    md = sampling.on_dist(models, tiny_dir, False, "The cat", 1, 0, 0.9)[1]
    assert md.count("(your settings)") == 1 and f"top-k={k} (as many tokens" in md
    assert f"keeps **{k:,}** tokens" in md


def test_explain_rows_top_k_against_top_p_and_merged_rows(models, tiny_dir):
    model, tok = models.get(tiny_dir)
    rows = dict(sampling.explain_rows(model, tok, "The cat", 0.8, 50, None))
    mine = rows["T=0.8, top-k=50 (your settings)"]
    label = next(x for x in rows if "the mass your top-k=50 keeps" in x)
    p = sampling.tail_mass(model, tok, "The cat", 0.8, 50)
    assert label.startswith(f"T=0.8, top-p={p:.4g}") and abs(rows[label]["kept"] - mine["kept"]) <= 1
    # your settings equal to an exercise row: that row is marked, not repeated
    merged = [label for label, _ in sampling.explain_rows(model, tok, "The cat", 10.0, 2, None)]
    assert merged.count("T=10, top-k=2 (your settings)") == 1 and "T=10, top-k=2" not in merged
    assert len(merged) == len(set(merged)) == 5  # 4 exercise rows + the matching top-p row
