"""Issue 20: a browser walk of every course-map row (tabs.coursemap.ENTRIES) on `python app.py` served offline.

For each row, its link (`?<settings_query(tab, settings)>`) is opened in one Chromium page: the row's tab must be
the one selected, every field the link carries must hold the row's value in the page (or be named in the visible
"ignored" note), the row's section (an accordion) must be open with its header on screen, and where the tab answers
on load (calculator, sampling's explanation, embeddings, attention, positions, scaling's shipped sweep, the
FlashAttention estimate) the answering numbers must be shown, computed here with tinygpt's own functions. A few rows
are also opened with their Open button on the course map. Heavy rows (train, fine-tune, DPO, RLHF, scaling and
efficiency measurements, pruning's runs) are not run: only restored. The BERT row's button is pressed: offline it
must answer in one plain sentence.

One server and one page for the whole module (the fixtures in conftest.py).
"""
from __future__ import annotations

import math
import time

import pytest
from conftest import open_map, shot

from tabs.coursemap import ARCH_START, ENTRIES
from tabs.kit.links import SECTION, encode_value, settings_query
from tabs.kit.registry import field_class
from tinygpt import GPTConfig, count_parameters
from tinygpt.compute import estimate
from tinygpt.defaults import EMBED_TAB, PARAMS, POSITIONS, SAMPLE_TAB

ROWS = list(enumerate(ENTRIES))  # (index as in the map's button id map-<k>, entry); the report numbers rows k + 1
HEAVY = {"train", "finetune", "dpo", "rlhf", "pruning"}  # answered only after a run: restored, never pressed
# rows also opened with their Open button, one per tab, each setting something the start-up page does not show
BUTTON_ROWS = [next(k for k, e in ROWS if pick(e)) for pick in (
    lambda e: e.tab == "calculator" and e.settings.get("n_layer") == 96,  # GPT-3
    lambda e: e.settings == {"temperature": 10, "top_k": 2},
    lambda e: e.settings == {"configs": ["full", "even"]},
    lambda e: e.settings.get(SECTION) == "graph",
    lambda e: e.tab == "train" and e.settings.get("b_own_dropout"),
    lambda e: e.settings.get(SECTION) == "flash")]


def row_id(row) -> str:
    k, e = row
    return f"row{k + 1:02d}-{e.tab}" + (f"-{e.settings[SECTION]}" if SECTION in e.settings else "")


@pytest.fixture(scope="module")
def served_model():
    """The config of the model the offline app serves (the embedded one)."""
    from tinygpt import load_model

    model, _ = load_model("tiny-shakespeare")
    return model.config


# ---- reading the page ----------------------------------------------------------------------------------------
READ_FIELD = """(cls) => {
  const el = document.querySelector('.' + cls);
  if (!el) return null;
  const comp = window.gradio_config.components.find(c => (c.props.elem_classes || []).includes(cls));
  const type = comp ? comp.type : '', q = (s) => el.querySelector(s);
  let value = null;
  if (type === 'checkbox') value = q('input[type=checkbox]').checked;
  else if (type === 'checkboxgroup')
    value = [...el.querySelectorAll('input[type=checkbox]')].filter(i => i.checked).map(i => i.name);
  else if (type === 'radio') {
    const i = [...el.querySelectorAll('input[type=radio]')]
      .find(i => i.checked || i.getAttribute('aria-checked') === 'true');
    value = i ? i.value : null;
  } else if (type === 'slider' || type === 'number') value = q('input[type=number]').value;
  else { const i = q('textarea') || q('input'); value = i ? i.value : null; }
  return {type, value, choices: (comp && comp.props.choices) || []};
}"""


def label_of(choices: list, value) -> str:
    """The label a dropdown shows for a value (choices come as [label, value] pairs)."""
    return next((lab for lab, v in choices if encode_value(v) == encode_value(value)), encode_value(value))


def field_matches(state: dict | None, value) -> bool:
    if state is None:
        return False
    kind, shown, choices = state["type"], state["value"], state["choices"]
    if kind == "checkbox":
        return shown is bool(value)
    if kind == "checkboxgroup":
        return sorted(shown) == sorted(label_of(choices, v) for v in value)
    if kind == "radio":
        return shown == encode_value(value)
    if kind == "dropdown":
        return shown == label_of(choices, value)
    if kind in ("number", "slider"):
        try:
            return math.isclose(float(shown), float(value), rel_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return shown == str(value)


def banner(pg) -> str:
    box = pg.locator("#share-banner")
    return box.inner_text() if box.is_visible() else ""


def field_problems(pg, e, timeout: float = 15.0) -> list:
    """Fields of the row that the page does not show with the row's value (nor names in the ignored-note)."""
    keys = [k for k in e.settings if k != SECTION]
    deadline = time.monotonic() + timeout
    while True:
        states = dict(zip(keys, pg.evaluate(f"(classes) => classes.map({READ_FIELD})",
                                            [field_class(e.tab, k) for k in keys])))
        note = banner(pg)
        bad = [k for k in keys if not field_matches(states[k], e.settings[k]) and f"Ignored {k}=" not in note]
        if not bad or time.monotonic() > deadline:
            return [f"{k}: the page shows {states[k] and states[k]['value']!r}"
                    f"{'' if states[k] else ' (no such field in the page)'}, the row sets {e.settings[k]!r}"
                    for k in bad]
        pg.wait_for_timeout(250)


def tab_label(pg, tab_id: str) -> str:
    return pg.evaluate("(id) => window.gradio_config.components.find(c => c.type === 'tabitem' &&"
                       " c.props.id === id).props.label", tab_id)


def wait_text(pg, selector: str, *texts, timeout: int = 60_000) -> None:
    """Wait until the element's visible text holds every one of `texts`; fail with what it shows instead."""
    try:
        pg.wait_for_function("([sel, texts]) => { const e = document.querySelector(sel);"
                             " return !!e && texts.every(t => e.innerText.includes(t)); }", arg=[selector, list(texts)],
                             timeout=timeout)
    except Exception:
        shown = pg.evaluate("(sel) => document.querySelector(sel)?.innerText ?? '(not in the page)'", selector)
        missing = [t for t in texts if t not in shown]
        raise AssertionError(f"{selector} does not show {missing}; it shows: {shown[:600]!r}") from None


def open_row(pg, server, k: int, via: str) -> None:
    e = ENTRIES[k]
    if via == "link":
        pg.goto(server + "?" + settings_query(e.tab, e.settings), wait_until="load")
    else:
        open_map(pg)
        pg.locator(f"#map-{k}").click()
    pg.locator(f"#{e.tab}-share-link").wait_for(state="visible", timeout=120_000)


def check_row(pg, k: int, served_model) -> None:
    """Steps 2-5 of the walk for the row on screen (one message listing every field that is off)."""
    e = ENTRIES[k]
    # 2. its tab is the selected one (a nested tab's button is visible only when its group is selected too)
    button = pg.get_by_role("tab", name=tab_label(pg, e.tab), exact=True)
    assert button.is_visible() and button.get_attribute("aria-selected") == "true", f"tab {e.tab} not shown"
    # 3. every field the row sets is in the page with the row's value (or named in the ignored-note)
    problems = field_problems(pg, e)
    assert not problems, f"row {k + 1} ({e.question[:50]}…) did not restore: " + "; ".join(problems)
    # 4. its section: open, header on screen
    if SECTION in e.settings:
        check_section(pg, f"{e.tab}-section-{e.settings[SECTION]}")
    # 5. what the tab answers on load
    ANSWERS.get(e.tab, lambda *a: None)(pg, e, served_model)


def check_section(pg, elem_id: str) -> None:
    """An accordion section is open with its header on screen; another block (a column) has its top on screen."""
    js = f"""(() => {{ const a = document.getElementById('{elem_id}'); if (!a) return 'not in the page';
        const accordion = a.classList.contains('gr-accordion');
        const head = accordion ? a.querySelector(':scope > button.label-wrap') : a;
        if (!head) return 'an accordion without a header';
        if (accordion && !head.classList.contains('open')) return 'closed';
        const r = head.getBoundingClientRect(), bottom = accordion ? r.bottom : r.top + 1;
        return r.height > 0 && r.top >= -2 && bottom <= window.innerHeight + 2 ? 'ok' :
               `its header is at ${{Math.round(r.top)}}..${{Math.round(r.bottom)}} px, the window is`
               + ` ${{window.innerHeight}} px high`;
        }})()"""
    try:
        pg.wait_for_function(f"{js} === 'ok'", timeout=30_000)
    except Exception:
        raise AssertionError(f"section {elem_id}: {pg.evaluate(js)}") from None


# ---- what each tab answers on load ---------------------------------------------------------------------------
def calc_report(s: dict):
    """(config, tinygpt.compute.estimate report) for a calculator row's fields (the rest at their start-up values)."""
    a = {**ARCH_START, **s}
    cfg = GPTConfig(n_layer=s["n_layer"], n_embd=s["n_embd"], n_head=s["n_head"], n_kv_head=s["n_kv_head"],
                    block_size=s["block_size"], vocab_size=s["vocab_size"], n_inner=round(s["ffn_mult"] * s["n_embd"]),
                    bias=s["bias"], tie_weights=s["tied"], head_size=a["head_dim"] or None, mlp=a["mlp"],
                    norm=a["norm"], pos_encoding=a["pos_encoding"],
                    qkv_bias={"auto": None, "on": True, "off": False}[a["qkv_bias"]], n_experts=a["n_experts"],
                    moe_top_k=a["moe_top_k"])
    run = {k: s.get(k, PARAMS[k]) for k in ("batch_size", "dtype", "optimizer", "tokens", "tflops", "mfu")}
    return cfg, estimate(cfg, seq_len=s["seq_len"], **run)


def calculator_answer(pg, e, _model) -> None:
    from tabs.kit.common import human, human_bytes, human_flops

    cfg, r = calc_report(e.settings)
    total, m, kv = r["params"]["total"], r["memory_bytes"], r["kv_cache_by_attention"]
    assert total == count_parameters(cfg)["total"]
    gpt2 = count_parameters(GPTConfig.from_preset("gpt2"))["total"]
    llama = count_parameters(GPTConfig.from_preset("llama-7b"))["total"]
    if e.settings["n_layer"] == 12 and e.settings["n_head"] == 12:
        assert total == gpt2 == 124_439_808  # GPT-2 small, as the question and the papers say
    if "7B" in e.question:
        assert total == llama == 6_738_415_616
    wait_text(pg, "#calc-summary",
              f"This configuration: {human(total)} parameters ({total:,})",  # e.g. 124.44 M (124,439,808)
              f"takes {human_flops(r['flops']['train_total'])} = {r['gpu_hours']:,.0f} GPU-hours",  # 4.29e22, 95,409
              f"{e.settings['seq_len']:,} tokens, {r['inputs']['dtype']}: {human_bytes(r['kv_cache_bytes'])}",
              f"training memory {human_bytes(m['training_total'])}",
              f"Attention holds {r['shares']['attention']:.1%} and the feed-forward {r['shares']['feed_forward']:.1%}",
              f"rule (4d² attention + 8d² MLP per block) is {r['approximation']['error_vs_total']:+.1%} off",
              f"MHA ({cfg.n_head} KV heads) {human_bytes(kv['mha'])}, GQA ({kv['gqa_kv_heads']} KV heads)"
              f" {human_bytes(kv['gqa'])}")
    if cfg.kv_heads != cfg.n_head:  # the GQA row: 8 query heads, 2 K/V groups -> a 4x smaller cache
        assert kv["mha"] == 4 * kv["gqa"] and cfg.kv_heads == 2
        wait_text(pg, "#calc-kv", f"GQA ({cfg.kv_heads} KV heads)", f"MHA ({cfg.n_head} KV heads)")


def sampling_answer(pg, e, model) -> None:
    v = {**SAMPLE_TAB, **e.settings}
    t, k, p = float(v["temperature"]), v["top_k"] or None, None if v["top_p"] >= 1 else v["top_p"]
    yours = f"T={t:g}" + (f", top-k={k}" if k else "") + (f", top-p={p:g}" if p else "") + " (your settings)"
    wait_text(pg, "body", yours,  # the Explain table redrawn for the row's knobs
              f"passed through the {model.n_layer} transformer blocks (masked multi-head self-attention with"
              f" {model.n_head} heads",  # how each token is produced, with the served model's numbers
              "max new tokens is how many tokens are appended")
    if p:
        wait_text(pg, "body", f"your top-p={p:g} keeps")
    assert pg.locator("#sampling-prompt textarea").input_value() == v.get("prompt", SAMPLE_TAB["start"])


def embeddings_answer(pg, e, model) -> None:
    v = {**EMBED_TAB, **e.settings}
    words = [w.strip() for w in (v["common"] + "," + v["rare"]).split(",") if w.strip()]
    wait_text(pg, "#emb-words", *words)  # the start-up comparison: each word's tokens and norm
    pg.locator("#emb-context img").first.wait_for(timeout=60_000)  # the GPT's per-layer plot, and its table:
    wait_text(pg, "#emb-context-md", "Static vs contextual", f"block {model.n_layer - 1}\t")  # every block
    if v.get("ctx_model", "").startswith("bert"):  # 6. offline, the BERT button answers in one plain sentence
        pg.get_by_role("button", name="Compare contexts").click()
        wait_text(pg, "#emb-context-md", "must be downloaded from the Hugging Face Hub", "offline")
        text = pg.locator("#emb-context-md").inner_text().strip()
        assert text.count(".") == 1 and text.endswith(".") and "Error" not in text and "Traceback" not in text, text
        assert pg.locator(".toast-body").count() == 0  # no error pop-up either


def attention_answer(pg, e, model) -> None:
    from tinygpt.interpret.attention_code import attention_parameters

    section, view = e.settings.get(SECTION), e.settings.get("view", "")
    pg.locator("#att-heat .tg-heat-hit").first.wait_for(timeout=60_000)  # the head's weights, drawn on load
    if view.startswith("mask off"):
        wait_text(pg, "#att-heat", "mask off")
        wait_text(pg, "#att-mask", "later")
    if view.startswith("1/√d_k removed"):
        wait_text(pg, "#att-heat", "removed")
    if section == "graph":
        pg.locator("#att-graph svg").wait_for(timeout=60_000)
        wait_text(pg, "#att-graph", "ln_1")
    if section == "code":
        p = attention_parameters(model)
        wait_text(pg, "#att-code", "def forward")
        wait_text(pg, "#att-params", f"{p['per_layer']:,}", f"{p['total']:,}", "equal")


def positions_answer(pg, e, _model) -> None:
    from tinygpt.interpret.positions import (
        dot_by_distance,
        rope_relative_deviation,
        rope_score_matrix,
        sinusoidal_encoding,
    )
    import torch

    D, n = POSITIONS, POSITIONS["n_positions"]
    dims = [int(d) for d in D["dims"].split(",")]
    near = [f"d = {d}: the normalised dot {float(dot_by_distance(sinusoidal_encoding(n, d))[1] / (d / 2)):.3f}"
            f" at distance 1" for d in dims]
    g = torch.Generator().manual_seed(D["seed"])
    q, k = torch.randn(D["head_dim"], generator=g), torch.randn(D["head_dim"], generator=g)
    dev = rope_relative_deviation(rope_score_matrix(q, k, D["rope_positions"], D["base"]))
    wait_text(pg, "#pos-explain", *near, "depends only on the distance",
              f"the largest deviation from a pure m − n dependence is {dev:.1e}")
    for plot in ("pos-sin", "pos-rope"):
        pg.locator(f"#{plot} img").first.wait_for(timeout=60_000)


def scaling_answer(pg, e, _model) -> None:
    pg.locator("#sc-plot img").first.wait_for(timeout=60_000)  # the shipped sweep, fitted on load
    wait_text(pg, "#sc-explain", "Kaplan", "Chinchilla")


def efficiency_answer(pg, e, _model) -> None:
    section = e.settings.get(SECTION)
    if section == "flash":  # the memory estimate is shown before any run
        lengths = e.settings["bench_lengths"]
        wait_text(pg, "#eff-bench-estimate", "Before you run", *lengths)
    if section == "kv":
        wait_text(pg, "#efficiency-share-command", "kv_cache_latency")
    if section == "profile":
        wait_text(pg, "#efficiency-share-command", "tinygpt profile")


def train_answer(pg, e, _model) -> None:
    from tabs.train import run_label
    from tinygpt.defaults import TRAIN_TAB

    # the run button says what it will train: one run when the row switches run B off
    pg.get_by_role("button", name=run_label(e.settings.get("compare_b", TRAIN_TAB["compare_b"])), exact=True).wait_for()


ANSWERS = {"calculator": calculator_answer, "sampling": sampling_answer, "embeddings": embeddings_answer,
           "attention": attention_answer, "positions": positions_answer, "scaling": scaling_answer,
           "efficiency": efficiency_answer, "train": train_answer}


# ---- the walk ------------------------------------------------------------------------------------------------
def test_every_row_is_walked():
    """Each row's tab is known here (its answer is checked, or it is one of the heavy tabs that is only restored)."""
    assert len(ENTRIES) == 39
    assert {e.tab for e in ENTRIES} <= set(ANSWERS) | HEAVY


@pytest.mark.parametrize("row", ROWS, ids=row_id)
def test_row_link(page, server, served_model, row):
    """1-5 for the row's link."""
    k, e = row
    open_row(page, server, k, "link")
    check_row(page, k, served_model)


def test_open_buttons(page, server, served_model):
    """The same checks with the rows' Open buttons on the course map (one row per tab, one after another)."""
    page.goto(server, wait_until="load")
    page.get_by_text("What are you asked to find out?").wait_for()
    problems = []
    for k in BUTTON_ROWS:
        try:
            open_row(page, server, k, "button")
            check_row(page, k, served_model)
        except AssertionError as err:
            problems.append(f"row {k + 1}: {err}")
    shot(page, "25_course_map_button_walk")
    assert len(BUTTON_ROWS) >= 5 and not problems, "\n".join(problems)
