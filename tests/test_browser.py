"""End-to-end: launch `python app.py` offline and drive every tab in headless Chromium (Playwright).

The app runs on the embedded model (the Hub is unreachable, HF_HUB_OFFLINE=1), so the fallback banner must show.
Screenshots of each tab are saved to test-artifacts/. If Chromium or Playwright is missing the suite fails
loudly: scripts/test.sh installs both.
"""
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import ROOT, free_port

ART = os.path.join(ROOT, "test-artifacts")
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ESSAY = ("The lighthouse keeper wrote every evening about the weather, the ships and the gulls. "
         "Some nights the fog was so thick that the lamp seemed to float in the air. ") * 30



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
        pg.wait_for_selector("text=TinyGPT Lab")
        yield pg
        browser.close()


def shot(pg, name):
    pg.screenshot(path=os.path.join(ART, f"{name}.png"), full_page=True)


def set_number(pg, elem_id, value):
    box = pg.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")


def plot_image(pg, elem_id):
    pg.wait_for_selector(f"#{elem_id} img", timeout=120_000)
    return pg.locator(f"#{elem_id} img").first.get_attribute("src")


GROUPS = {"Sampling": "Generate", "Layer pruning": "Generate", "Embeddings": "Inside the model",
          "Train from scratch": "Train", "Fine-tune": "Train", "Parameters & compute": "Compute & efficiency"}
GROUPS.update({"DPO": "Beyond pretraining", "RLHF": "Beyond pretraining"})


def open_tab(pg, name):
    """Open a tab inside its group (the top bar holds the groups)."""
    pg.get_by_role("tab", name=GROUPS[name], exact=True).click()
    pg.wait_for_timeout(300)
    pg.get_by_role("tab", name=name, exact=True).click()
    pg.wait_for_timeout(500)


def test_sampling_tab(page):
    open_tab(page, "Sampling")
    assert page.get_by_text("Offline:").first.is_visible()  # the fallback banner
    assert plot_image(page, "sampling-dist")  # the distribution is drawn at start-up
    page.locator("#sampling-prompt textarea").fill("ROMEO:")
    set_number(page, "sampling-max-new", 20)
    page.get_by_role("button", name="Generate").click()
    page.wait_for_selector("#sampling-out .tg-sample", timeout=120_000)
    page.wait_for_function("document.querySelector('#sampling-out').innerText.includes('20/20 tokens')",
                           timeout=120_000)
    samples = page.locator("#sampling-out .tg-sample").all_inner_texts()
    assert len(samples) == 3 and all("ROMEO:" in s for s in samples)
    assert all(len(s) > len("Sample 1\nROMEO:") + 5 for s in samples)
    # the distribution for the new prompt replaces the start-up one once the model is free again
    page.wait_for_function("!document.querySelector('#sampling-dist').innerText.includes('processing')",
                           timeout=60_000)
    assert plot_image(page, "sampling-dist")
    shot(page, "01_sampling")


def test_calculator_tab(page):
    open_tab(page, "Parameters & compute")
    page.locator("#calc-n-layer input").fill("24")
    page.get_by_role("button", name="Calculate").click()
    # GPT-2 small widths with 24 blocks: 124,439,808 + 12 * 7,087,872
    page.wait_for_function("document.querySelector('#calc-summary').innerText.includes('209,494,272')",
                           timeout=30_000)
    shot(page, "02_calculator")


def test_embeddings_tab(page):
    open_tab(page, "Embeddings")
    page.get_by_role("button", name="Compare", exact=True).click()
    assert plot_image(page, "emb-heat") and plot_image(page, "emb-vocab")
    page.wait_for_function("document.querySelector('#emb-words').innerText.includes('xqzt')", timeout=60_000)
    page.get_by_role("button", name="Compare contexts").click()
    assert plot_image(page, "emb-context")
    shot(page, "03_embeddings")


def test_pruning_tab(page):
    open_tab(page, "Layer pruning")
    page.get_by_role("button", name="Run configurations").click()
    assert plot_image(page, "prune-ppl")
    page.wait_for_function("document.querySelector('#prune-metrics').innerText.toLowerCase().includes('even')",
                           timeout=120_000)
    shot(page, "04_pruning")


def test_finetune_tab(page):
    open_tab(page, "Fine-tune")
    page.locator("#ft-text textarea").fill(ESSAY)
    page.get_by_role("button", name="Clean and describe").click()
    page.wait_for_function("document.querySelector('#ft-stats').innerText.includes('base perplexity')",
                           timeout=60_000)
    page.get_by_text("Training settings").click()
    set_number(page, "ft-steps", 4)
    page.get_by_role("button", name="Fine-tune", exact=True).click()
    page.wait_for_function("document.querySelector('#ft-status').innerText.includes('Done')", timeout=300_000)
    text = page.locator("#ft-compare").inner_text()
    assert "Before fine-tuning" in text and "After fine-tuning" in text
    assert plot_image(page, "ft-plot")
    shot(page, "05_finetune")


def test_train_tab(page):
    open_tab(page, "Train from scratch")
    set_number(page, "tr-steps", 30)
    set_number(page, "tr-sample-len", 50)
    page.get_by_role("button", name="Train both").click()
    page.wait_for_function("document.querySelector('#tr-status').innerText.includes('Done')", timeout=300_000)
    assert "no causal mask" in page.locator("#tr-samples").inner_text()
    assert plot_image(page, "tr-plot")
    shot(page, "06_train")


def test_dpo_tab(page):
    open_tab(page, "DPO")
    set_number(page, "dpo-pairs", 20)
    set_number(page, "dpo-steps", 3)
    page.get_by_role("button", name="Train with DPO").click()
    page.wait_for_function("document.querySelector('#dpo-status').innerText.includes('Done')", timeout=300_000)
    text = page.locator("#dpo-samples").inner_text()
    assert "Before (reference)" in text and "After DPO" in text
    assert "ln 2" in page.locator("#dpo-explain").inner_text()
    assert plot_image(page, "dpo-plot")
    shot(page, "07_dpo")


def test_rlhf_tab(page):
    open_tab(page, "RLHF")
    set_number(page, "rlhf-sft-steps", 10)
    set_number(page, "rlhf-rm-steps", 5)
    set_number(page, "rlhf-ppo-steps", 2)
    page.get_by_role("button", name="Run RLHF (SFT → reward model → PPO)").click()
    page.wait_for_function("document.querySelector('#rlhf-status').innerText.includes('Done')", timeout=600_000)
    assert "SFT · reward" in page.locator("#rlhf-samples").inner_text()
    assert plot_image(page, "rlhf-plot")
    set_number(page, "rlhf-kl", 0)
    page.get_by_role("button", name="Re-run PPO only (new KL coefficient)").click()
    page.wait_for_function("document.querySelector('#rlhf-samples').innerText.includes('PPO (KL coef 0)')",
                           timeout=600_000)
    page.wait_for_function("document.querySelector('#rlhf-status').innerText.includes('Done')", timeout=600_000)
    assert "3. PPO, KL coef 0 " in page.locator("#rlhf-explain").inner_text()
    shot(page, "08_rlhf")
