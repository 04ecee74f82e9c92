"""End-to-end: launch `python app.py` offline and drive every tab in headless Chromium (Playwright).

The app runs on the embedded model (the Hub is unreachable, HF_HUB_OFFLINE=1), so the fallback banner must show.
Screenshots of each tab are saved to test-artifacts/. If Chromium or Playwright is missing the suite fails
loudly: scripts/test.sh installs both.
"""
from conftest import map_button, open_map, shot

ESSAY = ("The lighthouse keeper wrote every evening about the weather, the ships and the gulls. "
         "Some nights the fog was so thick that the lamp seemed to float in the air. ") * 30


def set_number(pg, elem_id, value):
    box = pg.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")


def plot_image(pg, elem_id):
    pg.wait_for_selector(f"#{elem_id} img", timeout=120_000)
    return pg.locator(f"#{elem_id} img").first.get_attribute("src")


GROUPS = {"Sampling": "Generate", "Layer pruning": "Generate", "Embeddings": "Inside the model",
          "Train from scratch": "Train", "Fine-tune": "Train", "Parameters & compute": "Compute & efficiency",
          "Efficiency": "Compute & efficiency"}
GROUPS.update({"Scaling laws": "Beyond pretraining", "DPO": "Beyond pretraining", "RLHF": "Beyond pretraining"})
GROUPS.update({"Attention": "Inside the model", "Positions": "Inside the model"})


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


MISTRAL_CONFIG = ('{"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,'
                  ' "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,'
                  ' "max_position_embeddings": 32768, "sliding_window": 4096, "tie_word_embeddings": false}')


def test_calculator_any_model(page):
    """A pasted config.json fills the form (Mistral-7B exactly), an unreachable Hub id answers in one sentence,
    and the new controls work: 8 experts, top-2 on Mistral's blocks is Mixtral-8x7B, total vs active."""
    open_tab(page, "Parameters & compute")
    page.get_by_text("Start from a Hugging Face model").click()
    page.locator("#calc-config-text textarea").fill(MISTRAL_CONFIG)
    page.get_by_role("button", name="Use the pasted config.json").click()
    page.wait_for_function("document.querySelector('#calc-summary').innerText.includes('7,241,732,096')",
                           timeout=30_000)
    assert "mistral" in page.locator("#calc-source").inner_text()
    assert page.locator("#calc-n-kv-head input").input_value() == "8"
    page.locator("#calc-hub-id textarea, #calc-hub-id input").first.fill("mistralai/Mistral-7B-v0.1")
    page.get_by_role("button", name="Fetch config.json").click()
    page.wait_for_selector("text=could not be fetched from the Hugging Face Hub", timeout=30_000)  # offline
    set_number(page, "calc-n-experts", 8)
    set_number(page, "calc-moe-top-k", 2)
    page.get_by_role("button", name="Calculate").click()
    page.wait_for_function("document.querySelector('#calc-summary').innerText.includes('46,702,792,704')",
                           timeout=30_000)
    summary = page.locator("#calc-summary").inner_text()
    assert "total vs active" in summary and "12,879,925,248" in summary
    shot(page, "02b_calculator_any_model")


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


def test_train_tab_one_run_from_the_course_map(page):
    """The course map's "train a small GPT" row switches run B off: one run, its curves, accuracy and perplexity."""
    open_map(page)
    page.locator(map_button(lambda e: e.tab == "train" and e.settings.get("compare_b") is False)).click()
    page.wait_for_timeout(1500)
    assert not page.locator("#tr-compare-b input").is_checked()
    set_number(page, "tr-steps", 20)
    set_number(page, "tr-sample-len", 50)
    page.get_by_role("button", name="Train run A").click()  # the run button says what it will train
    # the run's first update clears the explanation an earlier test's run left (its "Done" stays under the bar)
    page.wait_for_function("!document.querySelector('#tr-explain').innerText.includes('perplexity')",
                           timeout=300_000)
    page.wait_for_function("document.querySelector('#tr-status').innerText.includes('Done') && "
                           "document.querySelector('#tr-explain').innerText.includes('perplexity')", timeout=300_000)
    assert "B:" not in page.locator("#tr-samples").inner_text()
    assert "train-window accuracy" in page.locator("#tr-explain").inner_text()
    shot(page, "06_train_one_run")
    # the causal-mask row resets the tab to its start-up values (two runs, 4 layers) for the tests that follow
    open_map(page)
    page.locator(map_button(lambda e: e.tab == "train" and e.settings == {"a_causal": True, "b_causal": False})
                 ).click()
    page.get_by_role("button", name="Train both").wait_for()
    assert page.locator("#tr-compare-b input").is_checked()


def test_efficiency_tab(page):
    open_tab(page, "Efficiency")
    page.get_by_role("button", name="Measure", exact=True).click()  # KV cache: latency vs length, bytes
    assert plot_image(page, "eff-kv")
    page.wait_for_function("document.querySelector('#eff-kv-md').innerText.includes('(equal)')", timeout=120_000)
    page.get_by_text("GQA / MQA on the loaded model").click()
    page.get_by_role("button", name="Measure MHA / GQA / MQA").click()
    page.wait_for_function("document.querySelector('#eff-gqa-md').innerText.includes('MQA')", timeout=180_000)
    assert plot_image(page, "eff-gqa-plot")
    page.get_by_text("FlashAttention-2: tiling step by step").click()
    page.get_by_role("button", name="Trace").click()
    page.wait_for_function("document.querySelector('#eff-flash-check').innerText.includes('equal within')",
                           timeout=60_000)
    page.get_by_role("button", name="Next ▶").click()
    page.wait_for_function("document.querySelector('#eff-flash-md').innerText.includes('Step 2/')", timeout=60_000)
    for method in ("standard", "tiled"):  # the quickest case only: SDPA at 1,024 tokens
        page.locator("#eff-bench-methods").get_by_text(method, exact=True).click()
    lens = page.locator("#eff-bench-lens input[type=checkbox]")  # the tab opens with every offered length ticked
    for i in range(1, lens.count()):
        if lens.nth(i).is_checked():
            lens.nth(i).uncheck()
    page.get_by_role("button", name="Run benchmark").click()
    page.wait_for_function("document.querySelector('#eff-bench-md').innerText.includes('Done')", timeout=180_000)
    assert "sdpa" in page.locator("#eff-bench-table").inner_text()
    page.get_by_text("Forward-pass profile by component").click()
    page.locator("#eff-prof-lens textarea").fill("32,128")
    page.get_by_role("button", name="Profile", exact=True).click()
    page.wait_for_function("document.querySelector('#eff-prof-md').innerText.includes('Reading the profile')",
                           timeout=180_000)
    assert plot_image(page, "eff-prof-plot")
    shot(page, "07_efficiency")


def test_train_tab_moe(page):
    open_tab(page, "Train from scratch")
    page.get_by_role("button", name="Preset: dense vs MoE, equal active parameters").click()
    page.wait_for_timeout(500)
    set_number(page, "tr-steps", 20)
    set_number(page, "tr-sample-len", 50)
    page.get_by_role("button", name="Train both").click()
    # the earlier run's "Done" may still show: wait for this run's own note as well
    page.wait_for_function("document.querySelector('#tr-status').innerText.includes('Done') && "
                           "document.querySelector('#tr-status').innerText.includes('feed-forward width')",
                           timeout=300_000)
    assert "MoE 4 experts" in page.locator("#tr-samples").inner_text()
    page.wait_for_function("document.querySelector('#tr-routing').innerText.includes('layer 3')", timeout=60_000)
    page.locator("#tr-route-text textarea").fill("To be, or not to be")
    page.get_by_role("button", name="Colour by expert").click()
    page.wait_for_function("document.querySelector('#tr-routing').innerText.includes('To be, or not to be')",
                           timeout=60_000)
    assert plot_image(page, "tr-plot")
    shot(page, "07_train_moe")


def test_scaling_tab(page):
    open_tab(page, "Scaling laws")
    assert plot_image(page, "sc-plot")  # the shipped sweep, drawn at start-up
    assert "Kaplan" in page.locator("#sc-explain").inner_text()
    page.get_by_text("Re-run the sweep").first.click()
    page.locator("#sc-shapes textarea").fill("1x1x8, 1x2x16, 1x2x24")
    page.locator("#sc-budgets textarea").fill("1e9, 3e9")
    set_number(page, "sc-steps", 10)
    set_number(page, "sc-min-steps", 5)
    set_number(page, "sc-max-steps", 600)
    page.get_by_role("button", name="Estimate time").click()
    page.wait_for_function("document.querySelector('#sc-estimate').innerText.includes('runs')", timeout=120_000)
    page.get_by_role("button", name="Re-run the sweep", exact=True).click()
    page.wait_for_function("document.querySelector('#sc-status').innerText.includes('Done')", timeout=300_000)
    assert "9 runs" in page.locator("#sc-status").inner_text()
    assert plot_image(page, "sc-plot")
    shot(page, "08_scaling")


# ---- for lecturers and students: course map, links, downloads, lecture mode (tabs/kit) ------------------------------
def field(pg, label):
    """The visible input of a number field or slider with this label."""
    return pg.locator(f"input[aria-label='{label}']:visible, "
                      f"input[aria-label='number input for {label}']:visible").first


def test_course_map_opens_tabs_with_presets(page, server):
    from tinygpt import GPTConfig, count_parameters

    page.goto(server, wait_until="load")
    page.wait_for_selector("text=What are you asked to find out?")
    shot(page, "07_course_map")
    # 1. temperature 10 with top-k 2 -> Sampling
    page.locator(map_button(lambda e: e.settings == {"temperature": 10, "top_k": 2})).click()
    page.wait_for_function("document.querySelector('#sampling-prompt textarea') !== null")
    assert page.get_by_role("tab", name="Sampling", exact=True).get_attribute("aria-selected") == "true"
    page.wait_for_function("document.querySelector('#sampling-share-command')?.innerText.includes('--top-k 2')")
    assert field(page, "Temperature (0 = greedy)").input_value() == "10"
    assert field(page, "Top-k (0 = off)").input_value() == "2"
    # 2. GPT-3's configuration -> the calculator, and its parameter count is computed
    open_map(page)
    page.locator(map_button(lambda e: e.tab == "calculator" and e.settings.get("n_layer") == 96)).click()
    total = f"{count_parameters(GPTConfig.from_preset('gpt3'))['total']:,}"
    page.wait_for_function(f"document.querySelector('#calc-summary')?.innerText.split('\\n')[0].includes('{total}')",
                           timeout=60_000)
    assert page.locator("#calc-n-layer input").input_value() == "96"
    assert field(page, "n_embd (d)").input_value() == "12288"
    # 3. even layers -> Layer pruning
    open_map(page)
    page.locator(map_button(lambda e: e.settings == {"configs": ["full", "even"]})).click()
    page.wait_for_timeout(1500)
    assert page.get_by_role("checkbox", name="even", exact=True).first.is_checked()
    assert not page.get_by_role("checkbox", name="first half", exact=True).first.is_checked()
    # a question whose tab is not merged yet is greyed out with a note; a merged one opens its tab
    from tabs.coursemap import ENTRIES, UPCOMING

    open_map(page)
    pending = [e for e in ENTRIES if e.tab in UPCOMING]
    if pending:
        assert page.locator(map_button(lambda e: e is pending[0])).is_disabled()
    page.locator(map_button(lambda e: e.tab == "dpo")).click()
    page.wait_for_timeout(1000)
    assert page.get_by_role("tab", name="DPO", exact=True).get_attribute("aria-selected") == "true"


def test_crafted_link_restores_state_and_copies_back(page, server):
    page.goto(server + "?tab=sampling&temperature=10&top_k=2&prompt=Hello%20there&seed=abc&bogus=1",
              wait_until="load")
    page.wait_for_selector("#share-banner")
    banner = page.locator("#share-banner").inner_text()
    assert "bogus" in banner and "seed" in banner  # ignored, each with a note; the rest applied
    assert page.locator("#sampling-prompt textarea").input_value() == "Hello there"
    assert field(page, "Temperature (0 = greedy)").input_value() == "10"
    assert field(page, "Seed").input_value() == "1337"
    # the distribution is re-drawn for the link's knobs (the explanation marks "your settings")
    page.wait_for_function("document.body.innerText.includes('T=10, top-k=2 (your settings)')", timeout=60_000)
    page.locator("#sampling-share-link").click()
    box = page.locator("#sampling-share-url textarea, #sampling-share-url input").first
    page.wait_for_function("(() => { const e = document.querySelector('#sampling-share-url textarea, "
                           "#sampling-share-url input'); return e && e.value.startsWith('http'); })()")
    url = box.input_value()
    from urllib.parse import parse_qsl, urlsplit

    assert url.startswith(server)  # only what differs from the start-up values: not seed, not bogus
    assert dict(parse_qsl(urlsplit(url).query)) == {"tab": "sampling", "temperature": "10", "top_k": "2",
                                                     "prompt": "Hello there"}
    # opening the copied link gives the same state, without a note
    page.goto(url, wait_until="load")
    page.wait_for_function("document.querySelector('#sampling-prompt textarea')?.value === 'Hello there'")
    assert not page.locator("#share-banner").is_visible()
    shot(page, "08_link_restored")


def download(pg, files_id: str, name: str) -> bytes:
    """Click a file (its name starts with `name`) of a gr.File list and return the downloaded bytes."""
    link = pg.locator(f"#{files_id} a[download^='{name}']").first
    with pg.expect_download() as info:
        link.click()
    with open(info.value.path(), "rb") as f:
        return f.read()


def test_downloads_figure_table_and_report(page, server):
    page.goto(server + "?tab=calculator&n_layer=24", wait_until="load")
    page.wait_for_function("document.querySelector('#calc-summary')?.innerText.split('\\n')[0].includes('209,494,272')",
                           timeout=60_000)
    page.locator("#calculator-share-export").click()
    page.wait_for_selector("#calculator-share-files a", timeout=60_000)
    png = download(page, "calculator-share-files", "calculator-memory.png")
    svg = download(page, "calculator-share-files", "calculator-memory.svg").decode()
    csv = download(page, "calculator-share-files", "calculator-memory.csv").decode().splitlines()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert svg.lstrip().startswith(("<?xml", "<svg")) and "<path" in svg
    assert csv[0] == "what,part,GiB" and len(csv) == 7 and csv[1].startswith("training,weights,")
    page.locator("#calculator-share-report").click()
    page.wait_for_selector("#calculator-share-files a", timeout=60_000)
    page.wait_for_function("document.querySelector('#calculator-share-files')?.innerText.includes('report')")
    html = download(page, "calculator-share-files", "tinygpt-calculator-report-").decode()
    assert "209,494,272" in html and "--n-layer 24" in html  # the number and the command shown on the page
    assert "data:image/png;base64," in html and "src='http" not in html and 'src="http' not in html
    # the sampling distribution (a matplotlib figure) downloads as a real vector SVG
    page.goto(server + "?tab=sampling&temperature=2", wait_until="load")
    page.wait_for_function("document.body.innerText.includes('T=2, top-k=200 (your settings)')", timeout=60_000)
    page.locator("#sampling-share-export").click()
    page.wait_for_selector("#sampling-share-files a", timeout=60_000)
    svg = download(page, "sampling-share-files", "sampling-next-token-distribution.svg").decode()
    assert svg.lstrip().startswith("<?xml") and "<path" in svg and "<image" not in svg


def test_lecture_mode_and_dark_theme(page, server):
    page.goto(server + "?tab=sampling&lecture=1&temperature=10&top_k=2", wait_until="load")
    page.wait_for_function("document.documentElement.classList.contains('tg-lecture')", timeout=30_000)
    assert page.locator("#lecture-toggle input").is_checked()
    size = page.evaluate("parseFloat(getComputedStyle(document.querySelector('#sampling-prompt textarea')).fontSize)")
    page.wait_for_function("document.body.innerText.includes('T=10, top-k=2 (your settings)')", timeout=60_000)
    shot(page, "09_lecture_mode")
    page.locator("#lecture-toggle input").uncheck()
    page.wait_for_function("!document.documentElement.classList.contains('tg-lecture')")
    normal = page.evaluate("parseFloat(getComputedStyle(document.querySelector('#sampling-prompt textarea')).fontSize)")
    assert size >= 1.2 * normal
    font = "parseFloat(getComputedStyle(document.querySelector('#calc-n-layer input')).fontSize)"
    sizes = {}
    for name, query in (("10_dark_sampling", "?__theme=dark&tab=sampling&temperature=10&top_k=2"),
                        ("11_dark_lecture_calculator", "?__theme=dark&lecture=1&tab=calculator&n_layer=24"),
                        ("", "?__theme=dark&tab=calculator")):
        page.goto(server + query, wait_until="load")
        page.wait_for_function("document.body.classList.contains('dark') || "
                               "document.documentElement.classList.contains('dark')", timeout=30_000)
        page.wait_for_timeout(4000)
        if name:
            shot(page, name)
        if "calculator" in query:
            page.wait_for_selector("#calc-n-layer input", timeout=60_000)  # a slow first render under load
            sizes[query] = page.evaluate(font)
    big, normal = sizes.values()
    assert big >= 1.2 * normal  # the dark theme re-declares Gradio's sizes: lecture mode must still win
    # matplotlib figures keep their own opaque white background: black text stays legible on the dark page
    page.goto(server + "?__theme=dark&tab=sampling", wait_until="load")
    page.wait_for_function("document.querySelector('#sampling-dist img')?.complete", timeout=60_000)
    corner = page.evaluate("""(() => { const img = document.querySelector('#sampling-dist img');
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        return Array.from(g.getImageData(2, 2, 1, 1).data); })()""")
    assert min(corner[:3]) >= 250 and corner[3] == 255, corner


def set_slider(pg, elem_id, value):
    """Type into a slider's number box and leave it: Gradio fires the slider's release event on blur."""
    box = pg.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Tab")


def pick(pg, elem_id, option):
    """Choose an option of a gr.Dropdown."""
    pg.locator(f"#{elem_id} input").first.click()
    pg.get_by_role("option", name=option, exact=True).first.click()


def test_attention_tab(page):
    from playwright.sync_api import Error as PlaywrightError

    open_tab(page, "Attention")
    page.locator("#att-prompt textarea").fill(ESSAY[:600])
    before = page.locator("#att-status").inner_text()  # the default prompt's analysis, shown at start-up
    page.get_by_role("button", name="Show attention").click()
    page.wait_for_function(f"document.querySelector('#att-status').innerText !== {before!r}", timeout=120_000)
    page.wait_for_function("document.querySelector('#att-status').innerText.includes('tokens')", timeout=120_000)
    assert page.locator("#att-grid svg image").count() == 1
    assert plot_image(page, "att-scale") and plot_image(page, "att-random")
    page.locator("#att-heat .tg-heat-hit").first.wait_for(timeout=60_000)
    for attempt in range(5):  # the heatmap may still be re-rendering right after the outputs arrive
        hit = page.locator("#att-heat .tg-heat-hit").first
        box = hit.bounding_box()  # None while the cell is detached by a re-render
        if box is not None:
            try:
                hit.hover(position={"x": box["width"] * 0.2, "y": box["height"] * 0.8})  # a cell below the diagonal
                tip = page.locator("#att-heat .tg-heat-tip")
                tip.wait_for(state="visible", timeout=10_000)
                break
            except PlaywrightError:
                if attempt == 4:
                    raise
        assert attempt < 4, "the heatmap's cells never stayed on the page long enough to hover one"
        page.wait_for_timeout(1000)
    assert "query" in tip.inner_text() and "key" in tip.inner_text()
    set_slider(page, "att-layer", 2)
    page.wait_for_function("document.querySelector('#att-heat').innerText.includes('Layer 2, head 0')",
                           timeout=60_000)
    set_slider(page, "att-head", 3)
    page.wait_for_function("document.querySelector('#att-heat').innerText.includes('Layer 2, head 3')",
                           timeout=60_000)
    page.locator("#att-query input").first.click()
    page.get_by_role("listbox").first.wait_for(timeout=10_000)
    page.get_by_role("option").nth(5).click()
    page.wait_for_function("document.querySelector('#att-bars').innerText.includes('Query 5')", timeout=60_000)
    page.get_by_label("mask off: what position i could see").check()
    page.wait_for_function("document.querySelector('#att-heat').innerText.includes('mask off')", timeout=60_000)
    assert "later" in page.locator("#att-mask").inner_text()
    page.get_by_label("1/√d_k removed: the sharper softmax").check()
    page.wait_for_function("document.querySelector('#att-heat').innerText.includes('removed')", timeout=60_000)
    assert "previous token" in page.locator("#att-table").inner_text()
    page.get_by_text("Computational graph of the loaded model").click()
    page.wait_for_function("document.querySelector('#att-graph svg') !== null", timeout=30_000)  # rendered on opening
    assert "ln_1" in page.locator("#att-graph").inner_text()
    page.get_by_text("The multi-head attention code, line by line").click()
    page.wait_for_function("document.querySelector('#att-code')?.innerText.includes('def forward')", timeout=10_000)
    assert "equal" in page.locator("#att-params").inner_text()
    shot(page, "10_attention")


def test_positions_tab(page):
    open_tab(page, "Positions")
    page.locator("#pos-dims input, #pos-dims textarea").first.fill("8, 32, 128")
    set_slider(page, "pos-hd", 32)
    set_slider(page, "pos-pair", 3)
    set_slider(page, "pos-n", 64)
    set_slider(page, "pos-d", 32)
    set_slider(page, "pos-rope-n", 32)
    set_number(page, "pos-base", 500)
    set_number(page, "pos-seed", 3)
    page.get_by_role("button", name="Show positions").click()
    page.wait_for_function("document.querySelector('#pos-explain').innerText.includes('largest deviation')",
                           timeout=120_000)
    # the start-up figures are already there: wait for this run's sizes
    page.wait_for_function("document.querySelector('#pos-explain').innerText.includes('d = 128')", timeout=120_000)
    assert "d = 128" in page.locator("#pos-explain").inner_text()
    assert plot_image(page, "pos-sin") and plot_image(page, "pos-wpe") and plot_image(page, "pos-rope")
    assert "learned" in page.locator("#pos-wpe-text").inner_text()
    shot(page, "11_positions")


def test_train_tab_position_encodings(page):
    # the causal-mask row opens the tab at its start-up values (an earlier test may have left the MoE preset)
    open_map(page)
    page.locator(map_button(lambda e: e.tab == "train" and e.settings == {"a_causal": True, "b_causal": False})
                 ).click()
    page.get_by_role("button", name="Train both").wait_for()
    set_number(page, "tr-steps", 20)
    set_number(page, "tr-sample-len", 50)
    page.get_by_label("causal mask").nth(1).check()  # run B with the mask too
    pick(page, "tr-a-pos", "rope")
    pick(page, "tr-b-pos", "none")
    page.get_by_role("button", name="Train both").click()
    # an earlier run may have left "Done" on the page: wait for this run's labels and the end of its stream
    page.wait_for_function("document.querySelector('#tr-samples').innerText.includes('A: RoPE') && "
                           "!document.querySelector('#tr-samples').innerText.includes('waiting') && "
                           "document.querySelector('#tr-status').innerText.includes('Done')", timeout=300_000)
    samples = page.locator("#tr-samples").inner_text()
    assert "RoPE" in samples and "no positional encoding" in samples
    shot(page, "12_train_positions")


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


# ---- issue 20: links restore every field and open the answering section; legible at 1400 px and on a phone ---------
def in_view(pg, elem_id) -> bool:
    """Is the top of the element on screen (scrolled to)?"""
    return pg.evaluate(f"""(() => {{ const r = document.getElementById('{elem_id}').getBoundingClientRect();
        return r.height > 0 && r.top >= -2 && r.top < window.innerHeight * 0.6; }})()""")


def wait_in_view(pg, elem_id, timeout=60_000):
    pg.wait_for_function(f"""(() => {{ const e = document.getElementById('{elem_id}'); if (!e) return false;
        const r = e.getBoundingClientRect(); return r.height > 0 && r.top >= -2 && r.top < window.innerHeight * 0.6;
        }})()""", timeout=timeout)


def test_links_restore_the_view_and_scroll_to_the_section(page, server):
    from urllib.parse import quote

    view = "mask off: what position i could see"
    page.goto(server + f"?tab=attention&view={quote(view)}&section=graph", wait_until="load")
    page.wait_for_selector("#att-graph svg", timeout=120_000)  # the graph's accordion was opened ...
    wait_in_view(page, "attention-section-graph")  # ... and scrolled to
    assert page.get_by_label(view).is_checked()  # the view the link carries, in its widget
    assert not page.locator("#share-banner").is_visible()  # nothing was ignored
    page.wait_for_function("document.querySelector('#att-heat').innerText.includes('mask off')", timeout=120_000)
    shot(page, "20_link_section_graph")
    # a section the tab does not have, and Gradio's own view=api, are not applied to the tab
    page.goto(server + "?tab=attention&section=nowhere", wait_until="load")
    page.wait_for_selector("#share-banner")
    assert "nowhere" in page.locator("#share-banner").inner_text()


def test_course_map_rows_open_expand_and_scroll(page, server):
    page.goto(server, wait_until="load")
    page.wait_for_selector("text=What are you asked to find out?")
    page.locator(map_button(lambda e: e.settings.get("section") == "code")).click()
    page.wait_for_function("document.querySelector('#att-code')?.innerText.includes('def forward')", timeout=60_000)
    wait_in_view(page, "attention-section-code")
    open_map(page)
    page.locator(map_button(lambda e: e.settings.get("section") == "flash")).click()
    page.wait_for_selector("#eff-bench-estimate", timeout=60_000)
    wait_in_view(page, "efficiency-section-flash")
    boxes = page.locator("#eff-bench-lens input[type=checkbox]")
    assert boxes.count() == 3 and all(boxes.nth(i).is_checked() for i in range(3))  # 1,024 / 4,096 / 16,384
    estimate = page.locator("#eff-bench-estimate").inner_text()
    assert "Before you run" in estimate and "16,384" in estimate and "MiB" in estimate  # shown before any run
    shot(page, "21_course_map_flash")
    open_map(page)
    page.locator(map_button(lambda e: e.settings.get("section") == "kv")).click()
    page.wait_for_function("document.querySelector('#efficiency-share-command')?.innerText"
                           ".includes('kv_cache_latency')", timeout=60_000)  # the row's own command
    assert "tinygpt profile" not in page.locator("#efficiency-share-command").inner_text()
    open_map(page)
    page.locator(map_button(lambda e: e.settings.get("section") == "profile")).click()
    wait_in_view(page, "efficiency-section-profile")
    page.wait_for_function("document.querySelector('#efficiency-share-command')?.innerText"
                           ".includes('tinygpt profile')", timeout=60_000)


def test_calculator_links_name_the_shape_and_redraw_the_kv_chart(page, server):
    from tabs.coursemap import ENTRIES
    from tabs.kit.links import settings_query

    gqa = next(e for e in ENTRIES if e.tab == "calculator" and e.settings.get("n_kv_head") == 2)
    page.goto(server + "?" + settings_query("calculator", gqa.settings), wait_until="load")
    page.wait_for_function("document.querySelector('#calc-kv')?.innerText.includes('GQA (2 KV heads)')",
                           timeout=60_000)
    legend = page.locator("#calc-kv").inner_text()
    assert "MHA (8 KV heads)" in legend and "MQA (1 KV head)" in legend and "12 KV heads" not in legend
    assert page.locator("#calc-kv svg path[aria-roledescription='line mark'], #calc-kv svg .mark-line path") \
        .count() >= 3  # a line per legend entry
    assert "Custom" in page.locator("#calc-preset input").input_value()
    seven = next(e for e in ENTRIES if e.tab == "calculator" and "KV cache of a 7B" in e.question)
    page.goto(server + "?" + settings_query("calculator", seven.settings), wait_until="load")
    page.wait_for_function("document.querySelector('#calc-summary')?.innerText.split('\\n')[0]"
                           ".includes('6,738,415,616')", timeout=60_000)
    page.wait_for_function("document.querySelector('#calc-kv')?.innerText.includes('MHA (32 KV heads)')",
                           timeout=60_000)
    assert "LLaMA-7B" in page.locator("#calc-preset input").input_value()
    lines = [x for x in page.locator("#calc-summary").inner_text().split("\n") if x.strip()]
    assert "2.00 GiB" in lines[1] and "GPU-hours" in lines[1]  # the line under the heading answers
    # the breakdown's exact counts and TOTAL row fit at 1400 px: no sideways scrolling
    page.wait_for_selector("#calc-breakdown table")
    assert page.locator("#calc-breakdown").get_by_text("TOTAL (exact)").first.is_visible()
    assert page.evaluate("""(() => { const t = document.querySelector('#calc-breakdown .table-wrap') ||
        document.querySelector('#calc-breakdown table').parentElement;
        return t.scrollWidth <= t.clientWidth + 1; })()""")
    shot(page, "22_calculator_7b")


def chip_clear_of_figure(pg, elem_id) -> bool:
    """The plot's floating label ends above its figure (it covers no title or legend)."""
    return pg.evaluate(f"""(() => {{ const b = document.getElementById('{elem_id}');
        const label = b.querySelector('label.float'), img = b.querySelector('img');
        return !!label && !!img && label.getBoundingClientRect().bottom <= img.getBoundingClientRect().top + 1;
        }})()""")


def test_legibility_labels_placeholders_samples_and_lecture(page, server):
    page.goto(server + "?tab=attention", wait_until="load")
    plot_image(page, "att-random")
    assert chip_clear_of_figure(page, "att-random") and chip_clear_of_figure(page, "att-scale")
    assert page.locator("#att-grid svg").count() >= 1  # the default prompt's attention, before any click
    page.goto(server + "?tab=positions", wait_until="load")
    plot_image(page, "pos-sin")  # drawn at start-up
    assert chip_clear_of_figure(page, "pos-sin")
    page.goto(server + "?tab=pruning", wait_until="load")
    page.wait_for_selector("#prune-ppl")
    page.wait_for_timeout(1000)
    empty = page.evaluate("""(() => { const b = document.querySelector('#prune-ppl');
        return [b.getBoundingClientRect().height,
                getComputedStyle(b.querySelector('.empty'), '::after').content]; })()""")
    assert empty[0] < 120 and "press the button" in empty[1]  # one line, not an empty 300-px box
    # a long unbroken text stays inside its sample card; in lecture mode the sample text is large
    page.goto(server + "?tab=sampling&lecture=1&max_new_tokens=3&prompt=" + "x" * 400, wait_until="load")
    page.wait_for_function("document.documentElement.classList.contains('tg-lecture')", timeout=30_000)
    page.get_by_role("button", name="Generate").click()
    page.wait_for_function("document.querySelector('#sampling-out')?.innerText.includes('3/3 tokens')",
                           timeout=120_000)
    fits = page.evaluate("""[...document.querySelectorAll('#sampling-out .tg-sample')].every(
        c => c.scrollWidth <= c.clientWidth + 1)""")
    size = page.evaluate("parseFloat(getComputedStyle(document.querySelector('#sampling-out .tg-sample')).fontSize)")
    assert fits and size >= 20
    shot(page, "23_lecture_samples")


def test_phone_width_figures_and_tables(page, server):
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        page.goto(server + "?tab=sampling", wait_until="load")
        plot_image(page, "sampling-dist")
        page.wait_for_timeout(1000)
        width = page.evaluate("document.querySelector('#sampling-dist img').getBoundingClientRect().width")
        natural = page.evaluate("document.querySelector('#sampling-dist img').naturalWidth")
        assert width >= 0.8 * min(natural, 950)  # the title keeps ~80% of its size (it scrolls sideways instead)
        cells = page.evaluate("""[...document.querySelectorAll('.prose table td')].slice(0, 40).map(
            c => [getComputedStyle(c).overflowWrap, getComputedStyle(c).wordBreak])""")
        assert cells and all(wrap != "anywhere" and brk != "break-all" for wrap, brk in cells)
        shot(page, "24_phone_sampling")
    finally:
        page.set_viewport_size({"width": 1400, "height": 1000})
