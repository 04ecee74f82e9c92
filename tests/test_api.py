"""Every tab's main action through gradio_client, and the bad-input matrix: each handler gets its bad inputs
and must answer with one plain sentence (a gr.Error, never an HTTP 500 or a traceback), after which the app
still answers a normal request."""
import os

import pytest
from gradio_client import Client, handle_file

GENERIC = "has not enabled verbose error reporting"  # what a client sees for an unhandled exception
ESSAY = ("The lighthouse keeper wrote every evening about the weather, the ships and the gulls. "
         "Some nights the fog was so thick that the lamp seemed to float in the air. ") * 30


@pytest.fixture(scope="module")
def app_url(models, tiny_dir):
    from conftest import serve

    from app import build_demo

    demo = build_demo(models, default_model=tiny_dir)
    yield serve(demo)
    demo.close()


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("uploads")
    out = {}
    for name, data in {"empty.txt": b"", "binary.txt": b"\x00\x01\x02\x03PK\x03\x04" * 100,
                       "latin1.txt": ("Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e. " * 200).encode("latin-1"),
                       "huge.txt": b"word " * 60_000, "ok.txt": ESSAY.encode()}.items():
        (d / name).write_bytes(data)
        out[name] = str(d / name)
    return out


def sample_args(tiny_dir, **kw):
    a = dict(model=tiny_dir, fast=False, prompt="Hello", n=1, new=4, t=0.8, k=50, p=1.0, seed=1)
    a.update(kw)
    return list(a.values())


def params_args(**kw):
    a = dict(n_layer=12, n_embd=768, n_head=12, n_kv_head=12, block_size=1024, vocab_size=50257, bias=True,
             tied=True, ffn_mult=4, dtype="fp32", optimizer="adamw", batch_size=1, seq_len=1024, tokens=1e12,
             tflops=312, mfu=0.4)
    a.update(kw)
    return list(a.values())


def finetune_args(tiny_dir, **kw):
    a = dict(model=tiny_dir, file=None, text=ESSAY, lossy=False, drop=True, prompt="The lighthouse", seed=1,
             trainable="Top 2 blocks (fast)", steps=2, context=32, batch=2, lr=1e-3, new=10)
    a.update(kw)
    return list(a.values())


def prune_args(tiny_dir, **kw):
    a = dict(model=tiny_dir, configs=["custom"], custom="0,1", prompt="Hi", new=5, t=0.8, k=50, seed=1,
             reference="Some text here.")
    a.update(kw)
    return list(a.values())


def train_args(**kw):
    a = dict(corpus="Python docs (offline, built-in)", file=None, tokenizer="characters", n_layer=1, n_head=2,
             n_embd=16, context=16, e=0, a=0, r=0, steps=10, batch=2, lr=1e-3, ac=True, al=True, asc=True, bc=False,
             bl=True, bs=True, sample=50, seed=1)
    a.update(kw)
    return list(a.values())


def test_main_actions(client, tiny_dir):
    names = {e for e in client.view_api(print_info=False, return_format="dict")["named_endpoints"]}
    assert {"/sample", "/params", "/embeddings", "/prune", "/finetune", "/train"} <= names
    html, js = client.predict(*sample_args(tiny_dir, n=2), api_name="/sample")
    assert len(js["samples"]) == 2 and all(s.startswith("Hello") for s in js["samples"])
    out = client.predict(*params_args(), api_name="/params")
    assert out[-1]["params"]["total"] == 124_439_808
    status, plot, compare, metrics, rows = client.predict(*finetune_args(tiny_dir), api_name="/finetune")
    assert "Done" in status and "held-out perplexity" in metrics
    status, plot, samples, explain = client.predict(*train_args(), api_name="/train")
    assert "Done" in status and "final val loss" in explain


BAD = [
    ("/sample", "empty prompt", lambda d, f: sample_args(d, prompt=""), "prompt"),
    ("/sample", "whitespace prompt", lambda d, f: sample_args(d, prompt=" \n\t "), "prompt"),
    ("/sample", "negative temperature", lambda d, f: sample_args(d, t=-3), "minimum"),
    ("/sample", "huge temperature", lambda d, f: sample_args(d, t=1e9), "maximum"),
    ("/sample", "huge top-p", lambda d, f: sample_args(d, p=7), "maximum"),
    ("/sample", "text as a number", lambda d, f: sample_args(d, n="many"), "float"),
    ("/sample", "unknown model", lambda d, f: sample_args(d, model="gpt-99"), "Unknown model"),
    ("/params", "indivisible heads", lambda d, f: params_args(n_head=7), "divisible"),
    ("/params", "negative layers", lambda d, f: params_args(n_layer=-1), "n_layer"),
    ("/params", "bad kv groups", lambda d, f: params_args(n_kv_head=5), "divisible"),
    ("/params", "text as a number", lambda d, f: params_args(batch_size="lots"), "float"),
    ("/params", "zero heads", lambda d, f: params_args(n_head=0), "n_head"),
    ("/embeddings", "empty lists", lambda d, f: [d, "", "", "mean", False], "word"),
    ("/prune", "bad custom layers", lambda d, f: prune_args(d, custom="0,x"), "number"),
    ("/prune", "out-of-range layers", lambda d, f: prune_args(d, custom="0,99"), "between"),
    ("/finetune", "empty text", lambda d, f: finetune_args(d, text=""), "text"),
    ("/finetune", "zero-byte file", lambda d, f: finetune_args(d, file=handle_file(f["empty.txt"]), text=""), "empty"),
    ("/finetune", "binary file", lambda d, f: finetune_args(d, file=handle_file(f["binary.txt"]), text=""), "binary"),
    ("/finetune", "non-UTF-8 file", lambda d, f: finetune_args(d, file=handle_file(f["latin1.txt"]), text=""), "UTF-8"),
    ("/finetune", "file over the cap", lambda d, f: finetune_args(d, file=handle_file(f["huge.txt"]), text=""),
     "limit"),
    ("/finetune", "too short", lambda d, f: finetune_args(d, text="Too short."), "too short"),
    ("/finetune", "1 MB prompt text", lambda d, f: finetune_args(d, text="x" * 1_000_000), "limit"),
    ("/finetune", "zero learning rate", lambda d, f: finetune_args(d, lr=0), "Learning rate"),
    ("/finetune", "huge steps", lambda d, f: finetune_args(d, steps=10**9), "maximum"),
    ("/train", "indivisible heads", lambda d, f: train_args(n_head=3), "divisible"),
    ("/train", "upload without file", lambda d, f: train_args(corpus="Upload a .txt file"), "upload"),
    ("/train", "binary upload", lambda d, f: train_args(corpus="Upload a .txt file", file=handle_file(f["binary.txt"])),
     "binary"),
    ("/train", "negative lr", lambda d, f: train_args(lr=-1), "Learning rate"),
]


@pytest.mark.parametrize("api,case,make,expect", BAD, ids=[f"{b[0]}:{b[1]}" for b in BAD])
def test_bad_input_matrix(client, tiny_dir, files, api, case, make, expect):
    with pytest.raises(Exception) as e:
        client.predict(*make(tiny_dir, files), api_name=api)
    msg = str(e.value)
    assert GENERIC not in msg and "Traceback" not in msg and "500" not in msg, msg
    assert expect.lower() in msg.lower(), msg
    assert len(msg) < 1000
    # the app still answers a normal request afterwards
    html, js = client.predict(*sample_args(tiny_dir), api_name="/sample")
    assert js["samples"][0].startswith("Hello")


def test_nan_reaches_no_handler_unexplained(models, tiny_dir):
    """NaN cannot travel through the JSON API, but the handlers still reject it in plain words."""
    import gradio as gr

    from tabs import calculator, finetune, sampling
    from tabs.kit.sessions import SessionStore

    with pytest.raises(gr.Error, match="number"):
        list(sampling.on_sample(models, tiny_dir, False, "hi", 1, 5, float("nan"), 0, 1.0, 1))
    with pytest.raises(gr.Error, match="n_embd"):
        calculator.on_params(*params_args(n_embd=float("nan")))
    with pytest.raises(gr.Error, match="Learning rate"):
        list(finetune.on_finetune(models, SessionStore(), *finetune_args(tiny_dir, lr=float("nan")),
                                  progress=lambda *a, **k: None))


def test_odd_but_valid_prompts(client, tiny_dir):
    """Control characters, emoji and a 1 MB prompt are handled (cleaned / shortened), not rejected."""
    html, js = client.predict(*sample_args(tiny_dir, prompt="Hi\x07\x1b there 🤖🎉"), api_name="/sample")
    assert js["samples"][0].startswith("Hi there 🤖🎉")
    html, js = client.predict(*sample_args(tiny_dir, prompt="word " * 200_000), api_name="/sample")
    assert any("shortened" in n for n in js["notes"])
    html, js = client.predict(*sample_args(tiny_dir, k=1e30), api_name="/sample")  # absurd top-k: capped, said
    assert any("Top-k capped" in n for n in js["notes"])


def test_file_routes_do_not_leak(app_url):
    import urllib.error
    import urllib.request

    for path in ("gradio_api/file=/etc/passwd", "file=/etc/passwd", "gradio_api/file=../../../../etc/passwd",
                 f"gradio_api/file={os.path.abspath('app.py')}"):
        try:
            body = urllib.request.urlopen(app_url + path, timeout=10).read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            assert e.code in (400, 403, 404), (path, e.code)
            continue
        assert "root:" not in body and "build_demo" not in body, path
