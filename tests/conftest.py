"""Shared fixtures and helpers: tiny random models saved as checkpoints (so no test needs the network or
../shared), the command-line runner, free ports, draining streaming handlers, weight checksums, and for the
browser tests (test_browser, test_course_map) `python app.py` served offline and one Chromium page on it."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import hashlib  # noqa: E402

from tinygpt import GPT, GPTConfig, ModelCache, gpt2_tokenizer, save_checkpoint  # noqa: E402


def run_cli(*args, cwd=None, timeout=300):
    """`python -m tinygpt ARGS` offline, from the repository root -> CompletedProcess (text stdout/stderr)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "tinygpt", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(demo):
    """Launch a Blocks app on a free loopback port (no thread lock) -> its URL. Close with demo.close()."""
    from app import launch_kwargs

    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_kwargs())
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def app(models, tiny_dir):
    """The whole app on the tiny model, served on loopback: (demo, url); one per test module."""
    from app import build_demo

    demo = build_demo(models, default_model=tiny_dir)
    url = serve(demo)
    yield demo, url
    demo.close()


def drain(gen):
    """Run a streaming (generator) handler to the end and return its last output."""
    out = None
    for out in gen:
        pass
    return out


def state_checksum(model) -> str:
    """sha256 over every tensor's bytes, in key order: equal iff the weights are byte-identical."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class ChecksummedCache(ModelCache):
    """The app's model cache, remembering each model's checksum when it was first loaded."""

    def __init__(self):
        super().__init__(hub_timeout=2.0)
        self.first = {}

    def get(self, name, dtype=torch.float32):
        model, tok = super().get(name, dtype)
        self.first.setdefault((name, dtype), state_checksum(model))
        return model, tok


@pytest.fixture(scope="session")
def models():
    """One shared cache for every test, as in the app. After the whole session (bad-input matrix, pruning,
    fine-tuning, embeddings, ...) every cached base model must be byte-identical to when it was loaded."""
    cache = ChecksummedCache()
    yield cache
    for key, (model, _) in cache._models.items():
        assert state_checksum(model) == cache.first[key], f"cached base model {key} was modified"


@pytest.fixture(scope="session")
def tok():
    return gpt2_tokenizer()


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory):
    """A random-weight transformers GPT2LMHeadModel written with save_pretrained."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=3, n_head=4, n_embd=32, n_positions=64, vocab_size=50257)
    hf = GPT2LMHeadModel(cfg).eval()
    d = tmp_path_factory.mktemp("hf_gpt2")
    hf.save_pretrained(d)
    return str(d)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tok):
    """Our own tiny 4-layer GPT (GPT-2 tokenizer), saved with save_checkpoint."""
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("tiny"))
    d = tmp_path_factory.mktemp("tiny_gpt")
    save_checkpoint(model, tok, str(d))
    return str(d)


# ---- browser tests: `python app.py` offline + one headless Chromium page (Playwright), per module ---------------
ART = os.path.join(ROOT, "test-artifacts")
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server():
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    env.pop("TINYGPT_MODEL", None)
    os.makedirs(ART, exist_ok=True)
    log = open(os.path.join(ART, "app.log"), "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                pytest.fail(f"app.py exited with {proc.returncode}; see test-artifacts/app.log")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except Exception:
                time.sleep(0.5)
        else:
            pytest.fail("app.py did not serve its page within 120 s")
        print(f"\ncold start (process start -> page served): {time.perf_counter() - t0:.1f} s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def page(server):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: run scripts/test.sh (apt-get install chromium).")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -r requirements-dev.txt")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(60_000)
        pg.goto(server, wait_until="load")
        pg.wait_for_selector("text=TinyGPT Lab", timeout=180_000)  # the first render of every tab: slow under load
        yield pg
        browser.close()


def shot(pg, name):
    pg.screenshot(path=os.path.join(ART, f"{name}.png"), full_page=True)


def map_button(pred) -> str:
    """The course-map button of the first entry matching pred."""
    from tabs.coursemap import ENTRIES

    return f"#map-{next(k for k, e in enumerate(ENTRIES) if pred(e))}"


def open_map(pg):
    pg.get_by_role("tab", name="Course map", exact=True).click()
    pg.wait_for_timeout(300)
