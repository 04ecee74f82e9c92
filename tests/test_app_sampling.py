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
