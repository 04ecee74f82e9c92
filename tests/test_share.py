"""tabs/kit's share bar (registry, links, commands, exports, report) and the course map: links (unknown or invalid
parameters are ignored with a note), the course-map table, the command behind a run (Sampling, Layer pruning,
Parameters & compute and Embeddings round-trip through the real CLI), exports (PNG, SVG, CSV) and the one-file HTML
report."""
import base64
import json
import shlex
from types import SimpleNamespace

import gradio as gr
import pandas as pd
import pytest
from conftest import drain, run_cli

from tabs.kit import commands, course, exports, links, registry


# ---- a small app: two nested groups, one registered tab with every kind of field --------------------------------
@pytest.fixture
def mini():
    with gr.Blocks() as demo:
        registry.header()
        with gr.Tabs() as outer:
            with gr.Tab("Start", id="start"):
                gr.Markdown("start")
            with gr.Tab("Group", id="group"), gr.Tabs() as inner:
                with gr.Tab("Other", id="other"):
                    gr.Markdown("other")
                with gr.Tab("Knobs", id="knobs"):
                    fields = dict(prompt=gr.Textbox("hello"), temperature=gr.Slider(0, 15, 0.8, step=0.05),
                                  top_k=gr.Number(200, precision=0), fast=gr.Checkbox(False),
                                  pool=gr.Radio([("Mean", "mean"), ("First", "first")], value="mean"),
                                  configs=gr.CheckboxGroup(["full", "even", "odd"], value=["full"]),
                                  model=gr.Dropdown(["gpt2", "tiny"], value="gpt2", allow_custom_value=True))
                    gr.Plot(label="A figure")
                    gr.Dataframe(label="A table")
                    t = registry.register("knobs", fields, command=lambda v: commands.cli(
                        "sample", model=v["model"], start=v["prompt"], temperature=v["temperature"]))
        reg = registry.install(demo)
    return SimpleNamespace(demo=demo, reg=reg, tab=t, outer=outer, inner=inner, fields=fields)


def test_parse_keeps_valid_values_and_notes_the_rest(mini):
    tab, values, notes, lecture = mini.reg.parse({
        "tab": "knobs", "temperature": "10", "top_k": "2", "prompt": "Hi there", "fast": "1", "pool": "first",
        "configs": "full,even", "model": "tiny", "lecture": "1", "__theme": "dark"})
    assert tab == "knobs" and lecture is True and notes == []
    assert values == {"temperature": 10.0, "top_k": 2, "prompt": "Hi there", "fast": True, "pool": "first",
                      "configs": ["full", "even"], "model": "tiny"}
    assert isinstance(values["top_k"], int)

    bad = {"tab": "knobs", "temperature": "99", "top_k": "2.5", "seed": "1", "fast": "maybe", "pool": "median",
           "configs": "full,all", "model": "/etc", "lecture": "loud"}
    tab, values, notes, lecture = mini.reg.parse(bad)
    assert tab == "knobs" and values == {} and lecture is None
    text = " ".join(notes)
    for key in ("temperature", "top_k", "seed", "fast", "pool", "configs", "model", "lecture"):
        assert key in text, key
    assert len(notes) == 8
    assert "outside the range 0 to 15" in text and "no setting called 'seed'" in text


def test_parse_unknown_or_missing_tab(mini):
    tab, values, notes, _ = mini.reg.parse({"tab": "nope", "temperature": "1"})
    assert tab is None and values == {} and "no such tab" in notes[0]
    tab, values, notes, _ = mini.reg.parse({"temperature": "1"})
    assert tab is None and "which tab" in notes[0]
    assert mini.reg.parse({}) == (None, {}, [], None)
    assert mini.reg.parse({"__theme": "dark", "view": "api"}) == (None, {}, [], None)


def test_query_string_round_trip(mini):
    reg = mini.reg
    defaults = reg.tabs["knobs"].defaults
    assert reg.query_string("knobs", defaults) == ("tab=knobs", [])  # start-up values are not repeated
    changed = {**defaults, "temperature": 10.0, "top_k": 2.0, "prompt": "a b&c=d", "configs": ["full", "even"]}
    qs, notes = reg.query_string("knobs", changed, lecture=True)
    assert qs == "tab=knobs&prompt=a%20b%26c%3Dd&temperature=10&top_k=2&configs=full,even&lecture=1"
    from urllib.parse import parse_qsl
    tab, values, notes, lecture = reg.parse(dict(parse_qsl(qs)))
    assert (tab, lecture, notes) == ("knobs", True, [])
    assert values == {"prompt": "a b&c=d", "temperature": 10.0, "top_k": 2, "configs": ["full", "even"]}
    qs, notes = reg.query_string("knobs", {**defaults, "prompt": "x" * (links.MAX_LINK_TEXT + 1)})
    assert qs == "tab=knobs" and "too long for a link" in notes[0]


def test_updates_select_the_tab_and_reset_its_fields(mini):
    reg, outs = mini.reg, mini.reg.apply_outputs()
    ups = reg.updates("knobs", {"temperature": 10.0}, ["a note"], True)
    assert len(ups) == len(outs)
    by = dict(zip(map(id, outs), ups))
    assert by[id(reg.banner)]["visible"] is True and "a note" in by[id(reg.banner)]["value"]
    assert by[id(reg.applied)] == "knobs" and by[id(reg.lecture)] is True
    assert by[id(mini.outer)].selected == "group" and by[id(mini.inner)].selected == "knobs"
    assert by[id(mini.fields["temperature"])] == 10.0 and by[id(mini.fields["prompt"])] == "hello"  # reset
    assert "--temperature 10" in by[id(mini.tab.command_box)]
    quiet = dict(zip(map(id, outs), reg.updates(None, {}, [], None)))
    assert quiet[id(reg.banner)]["visible"] is False
    assert all(isinstance(quiet[id(c)], dict) and quiet[id(c)].get("__type__") == "update" and len(quiet[id(c)]) == 1
               for c in mini.fields.values())  # gr.skip(): nothing changes
    restored = reg.restore(SimpleNamespace(query_params={"tab": "knobs", "top_k": "x", "pool": "first"}))
    by = dict(zip(map(id, outs), restored))
    assert by[id(mini.fields["pool"])] == "first" and by[id(mini.fields["top_k"])] == 200
    assert "top_k" in by[id(reg.banner)]["value"]


def test_cli_quoting():
    cmd = commands.cli("sample", model="my dir", start="-x 'quoted'\nnext", temperature=0.8, top_k=0, space=True,
                    no_bias=False, layers=None)
    args = shlex.split(cmd)
    assert args[:4] == ["python", "-m", "tinygpt", "sample"]
    assert args[4:] == ["--model", "my dir", "--start=-x 'quoted'\nnext", "--temperature", "0.8", "--top-k", "0",
                        "--space"]


# ---- exports and the report ----------------------------------------------------------------------------------
def test_exports(tmp_path):
    from tabs.kit.common import new_figure

    fig = new_figure(4, 3)
    fig.add_subplot(111).plot([1, 2, 3], [3, 1, 2], label="a line")
    png, svg = exports.export_figure(fig, str(tmp_path / "fig"))
    assert open(png, "rb").read()[:8] == b"\x89PNG\r\n\x1a\n"
    text = open(svg, encoding="utf-8").read()
    assert text.lstrip().startswith(("<?xml", "<svg")) and "<path" in text  # vector, not a picture of pixels
    csv = exports.export_table(pd.DataFrame({"what": ["a", "b"], "GiB": [1.5, 2.0]}), str(tmp_path / "t"))
    assert open(csv).read().splitlines() == ["what,GiB", "a,1.5", "b,2.0"]
    # a native bar plot is re-drawn with matplotlib (stacked by its colour column)
    bar = gr.BarPlot(x="what", y="GiB", color="part", title="Memory")
    df = pd.DataFrame({"what": ["training", "training", "inference"], "part": ["w", "g", "w"], "GiB": [1, 2, 3]})
    redrawn = exports.native_figure(bar, exports.native_frame(bar.preprocess(bar.postprocess(df))))
    heights = sorted(round(p.get_height(), 6) for p in redrawn.axes[0].patches)
    assert heights == [0, 1, 2, 3]  # training: w=1 + g=2 stacked; inference: w=3 (+ g=0)
    # a figure drawn before the page opened (only its raster is left): PNG, and an SVG wrapping it
    uri = "data:image/png;base64," + base64.b64encode(open(png, "rb").read()).decode()
    p2, s2 = exports.export_raster(uri, str(tmp_path / "raster"))
    assert open(p2, "rb").read()[:4] == b"\x89PNG" and open(s2).read().startswith("<?xml")


def browser_value(comp, value=None, initial=False):
    """What a handler receives for a component showing `value` (or its start-up value) in the browser."""
    payload = comp.value if initial else comp.postprocess(value)
    if isinstance(payload, dict) and getattr(comp, "data_model", None) is not None:
        payload = comp.data_model.model_validate(payload)
    return comp.preprocess(payload)


def shown(t, values: dict) -> list:
    """The tab's outputs as the report/export handlers get them: `values` by name, start-up values otherwise."""
    return [browser_value(c, values[n]) if n in values else browser_value(c, initial=True)
            for n, c in t.outputs.items()]


def test_calculator_report_and_export(tmp_path):
    from tabs import calculator

    with gr.Blocks():
        calculator.build()
        reg = registry.registry()
    t = reg.tabs["calculator"]
    values = {**t.defaults, "n_layer": 24}
    results = calculator.on_params(*values.values())
    outputs = shown(t, dict(zip(["calc-summary", "parameter-breakdown", "memory", "kv-cache", "params"], results)))
    request = SimpleNamespace(session_hash="report-test")
    path = reg.report(t, request, values, outputs)
    doc = open(path, encoding="utf-8").read()
    total = results[4]["params"]["total"]
    assert f"{total:,}" in doc and "209,494,272" in doc  # GPT-2 widths with 24 blocks, as the page shows
    assert "python -m tinygpt params --n-layer 24 --json" in doc and "tab=calculator&amp;n_layer=24" in doc
    assert doc.count("<img") >= 3 and "data:image/png;base64," in doc  # memory, KV cache, family figure
    assert "src='http" not in doc and 'src="http' not in doc and "<link" not in doc  # no external assets
    assert "Parameter breakdown" in doc and "<table" in doc
    files = reg.export(t, request, outputs)
    names = sorted(p.rsplit("/", 1)[1] for p in files)
    assert "calculator-memory.csv" in names and "calculator-memory.svg" in names and \
        "calculator-parameter-breakdown.csv" in names
    csv = pd.read_csv(next(p for p in files if p.endswith("calculator-parameter-breakdown.csv")))
    assert f"{total:,}" in csv["count (exact)"].tolist()


def test_sampling_report_has_samples_model_and_vector_figure(models, tiny_dir):
    from tabs import sampling

    with gr.Blocks():
        sampling.build(models, tiny_dir)
        reg = registry.registry()
    t = reg.tabs["sampling"]
    values = {**t.defaults, "prompt": "Hello there", "num_samples": 2, "max_new_tokens": 8}
    html_out, js = drain(sampling.on_sample(models, *[values[k] for k in (
        "model", "fast", "prompt", "num_samples", "max_new_tokens", "temperature", "top_k", "top_p", "seed")]))
    fig, md = sampling.on_dist(models, tiny_dir, False, "Hello there", 0.8, 200, 1.0)
    outputs = shown(t, {"samples": html_out, "samples-2": js, "next-token-distribution": fig})
    request = SimpleNamespace(session_hash="sampling-report")
    doc = open(reg.report(t, request, values, outputs), encoding="utf-8").read()
    assert all(s[len("Hello there"):][:20].replace("<", "&lt;") in doc for s in js["samples"] if s.strip())
    assert f"model: <b>{js['model']}</b>" in doc
    assert "python -m tinygpt sample" in doc and "Hello there" in doc
    svg = next(p for p in reg.export(t, request, outputs) if p.endswith("next-token-distribution.svg"))
    assert "<path" in open(svg, encoding="utf-8").read()  # the Figure was remembered: a real vector SVG


# ---- the command behind a run prints the same numbers -------------------------------------------------------------
def cli_args(cmd: str) -> list:
    args = shlex.split(cmd)
    assert args[:3] == ["python", "-m", "tinygpt"]
    return args[3:]


def test_sampling_command_round_trip(models, tiny_dir):
    from tabs import sampling

    v = dict(model=tiny_dir, fast=False, prompt="Hello there", num_samples=2, max_new_tokens=12, temperature=0.9,
             top_k=0, top_p=0.95, seed=7)
    texts = drain(sampling.on_sample(models, tiny_dir, False, "Hello there", 2, 12, 0.9, 0, 0.95, 7))[1]["samples"]
    cmd = sampling.command(v)
    assert "--top-k 0" in cmd and "--seed 7" in cmd
    r = run_cli(*cli_args(cmd), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["samples"] == texts


def test_pruning_command_round_trip(models, tiny_dir):
    from tabs import pruning

    v = dict(model=tiny_dir, configs=["even"], custom="0,1", prompt="The Eiffel Tower is", max_new_tokens=10,
             temperature=0.8, top_k=50, seed=3, reference="A short passage of text to measure perplexity on. " * 4)
    last = drain(pruning.on_prune(models, *v.values()))[-1]
    tab = {c["label"].split(" [")[0]: c["text"] for c in last["configurations"]}
    lines = [ln for ln in pruning.command(v).splitlines() if not ln.startswith("#")]
    assert len(lines) == 2 and "--layers" not in lines[0] and "--layers even" in lines[1]
    r = run_cli(*cli_args(lines[1]), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["samples"] == [tab["even"]] and out["layers"] == [0, 2]


@pytest.mark.parametrize("changes", [{}, dict(n_layer=96, n_embd=12288, n_head=96, n_kv_head=96, block_size=2048,
                                              seq_len=2048),
                                     dict(n_head=8, n_kv_head=2, dtype="bf16", optimizer="sgd", batch_size=4,
                                          seq_len=512, tokens=3e11, tflops=989, mfu=0.5, bias=False, tied=False,
                                          ffn_mult=2.6875)])
def test_calculator_command_round_trip(changes):
    from tabs import calculator

    v = dict(n_layer=12, n_embd=768, n_head=12, n_kv_head=12, block_size=1024, vocab_size=50257, bias=True,
             tied=True, ffn_mult=4, dtype="fp32", optimizer="adamw", batch_size=1, seq_len=1024, tokens=1e12,
             tflops=312, mfu=0.4)
    v.update(changes)
    tab_json = calculator.on_params(*v.values())[4]
    cmd = calculator.command(v)
    r = run_cli(*cli_args(cmd))
    assert r.returncode == 0, r.stderr
    assert calculator.json_safe(json.loads(r.stdout)) == tab_json
    if not changes:
        assert cmd == "python -m tinygpt params --json"


def test_embeddings_command_round_trip(models, tiny_dir):
    from tabs import embeddings

    v = dict(model=tiny_dir, common="dog, city, book", rare="xqzt, blorpt", pool="mean", space=True)
    words_df = embeddings.on_embeddings(models, tiny_dir, v["common"], v["rare"], "mean", True)[2]
    r = run_cli(*cli_args(embeddings.command(v)), "--json")
    assert r.returncode == 0, r.stderr
    cli = json.loads(r.stdout)
    assert [w["word"] for w in cli["words"]] == words_df["word"].tolist()
    assert [round(w["norm"], 4) for w in cli["words"]] == words_df[words_df.columns[-1]].tolist()


# ---- the course map -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(models, tiny_dir):
    from app import build_demo

    return build_demo(models, default_model=tiny_dir)


def test_course_map_rows(app):
    from tabs import coursemap

    reg = app._tinygpt_share
    assert list(reg.tabs) == ["sampling", "pruning", "embeddings", "attention", "positions", "train", "finetune",
                              "calculator", "efficiency", "scaling", "dpo", "rlhf"]
    assert len(reg.course) == len(coursemap.ENTRIES)
    available = 0
    for e, (button, note, tab, settings, needs) in zip(coursemap.ENTRIES, reg.course):
        assert (tab, settings) == (e.tab, e.settings)
        if course.course_available(reg, e.tab, e.settings):
            available += 1
            assert button.interactive and note.value in (None, "")
            fields = reg.tabs[e.tab].fields
            for key, value in e.settings.items():  # every preset value is one its field accepts, unchanged
                if key == links.SECTION:  # not a field: the part of the tab the row opens and scrolls to
                    assert value in reg.tabs[e.tab].sections, (e.question, value)
                    continue
                back = links.decode_value(fields[key], links.encode_value(value))
                assert back == pytest.approx(value) if isinstance(value, float) else back == value, (e.question, key)
        else:  # pending: a tab still to be merged, or options a registered tab does not have yet
            assert e.tab in coursemap.UPCOMING or e.needs, e.question
            assert button.interactive is False and "Arrives with" in note.value
    assert available >= 25
    groups = {e.group for e in coursemap.ENTRIES}
    assert len(groups) == 7

    def row(tab, **settings):
        return next(e for e in coursemap.ENTRIES if e.tab == tab and all(e.settings.get(k) == v
                                                                       for k, v in settings.items()))

    outs = reg.apply_outputs()
    for e, key, expected in ((row("sampling", temperature=10, top_k=2), "top_k", 2),
                             (row("calculator", n_layer=96), "n_embd", 12288),
                             (row("pruning", configs=["full", "even"]), "configs", ["full", "even"])):
        by = dict(zip(map(id, outs), reg.updates(e.tab, e.settings, [], None)))
        assert by[id(reg.tabs[e.tab].fields[key])] == expected
        assert by[id(reg.applied)] == e.tab


def test_restore_in_the_app(app):
    reg = app._tinygpt_share
    outs = reg.apply_outputs()
    ups = reg.restore(SimpleNamespace(query_params={"tab": "sampling", "temperature": "10", "top_k": "2",
                                                    "prompt": "Hello", "bogus": "1", "seed": "abc"}))
    by = dict(zip(map(id, outs), ups))
    f = reg.tabs["sampling"].fields
    assert (by[id(f["temperature"])], by[id(f["top_k"])], by[id(f["prompt"])], by[id(f["seed"])]) == \
        (10.0, 2, "Hello", 1337)
    assert "bogus" in by[id(reg.banner)]["value"] and "seed" in by[id(reg.banner)]["value"]
    # the refresh after a link re-draws the sampling distribution with the new knobs
    ins = reg.refresh_inputs()
    current = {id(f[k]): v for k, v in {"model": f["model"].value, "fast": False, "prompt": "Hello",
                                        "temperature": 10.0, "top_k": 2, "top_p": 1.0}.items()}
    vals = [current.get(id(c), c.value) for c in ins[1:]]
    res = reg.run_refresh("sampling", *vals)
    explain = res[[id(c) for c in reg.refresh_outputs()].index(id(reg.tabs["sampling"].refresh[2][1]))]
    assert "T=10, top-k=2 (your settings)" in explain


def test_train_command_round_trip(tmp_path):
    """Both runs of the Train tab, re-run from its command lines in a fresh process: the same losses."""
    from tabs import train
    from tabs.kit.sessions import SessionStore

    v = dict(corpus="Python docs (offline, built-in)", tokenizer="characters", n_layer=1, n_head=2, n_embd=16,
             context=16, embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0, steps=6, batch_size=2, lr=2e-3,
             sample_len=20, seed=3, a_causal=True, a_layernorm=True, a_attn_scale=True, b_causal=False,
             b_layernorm=True, b_attn_scale=False)
    store = SessionStore()
    order = ["tokenizer", "n_layer", "n_head", "n_embd", "context", "embd_pdrop", "attn_pdrop", "resid_pdrop", "steps",
             "batch_size", "lr", "a_causal", "a_layernorm", "a_attn_scale", "b_causal", "b_layernorm", "b_attn_scale",
             "sample_len", "seed"]
    drain(train.on_train(store, v["corpus"], None, *[v[k] for k in order], progress=lambda *a, **k: None))
    tab = store.get(None)["train_results"]
    lines = [ln for ln in train.command(v).splitlines() if not ln.startswith("#")]
    assert len(lines) == 2 and all("--corpus python-docs" in ln and "python -c" not in ln for ln in lines)
    for run, line in zip("AB", lines):  # one plain line per run: the corpus is read as the tab reads it
        r = run_cli(*cli_args(line), "--json", cwd=str(tmp_path))
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        same = [k for k in tab[run] if k != "tokens_per_s"]  # a speed, measured anew by each run
        assert {k: out[k] for k in same} == {k: tab[run][k] for k in same}, run


def test_finetune_command_round_trip(models, tiny_dir, tmp_path):
    """The Fine-tune tab's weights, re-made by its command line from the cleaned text: the same tensors."""
    import torch

    from tabs import finetune
    from tabs.kit.sessions import SessionStore
    from tinygpt import load_model
    from tinygpt.data import prepare_text

    essay = ("The lighthouse keeper wrote every evening about the weather, the ships and the gulls. "
             "Some nights the fog was so thick that the lamp seemed to float in the air. ") * 30
    v = dict(model=tiny_dir, lossy=False, drop_boilerplate=True, prompt="The lighthouse",
             trainable="Top 2 blocks (fast)", steps=4, context=32, batch_size=2, lr=1e-3, seed=1, max_new_tokens=10)
    store = SessionStore()
    drain(finetune.on_finetune(models, store, tiny_dir, None, essay, False, True, v["prompt"], v["seed"],
                               v["trainable"], v["steps"], v["context"], v["batch_size"], v["lr"],
                               v["max_new_tokens"], progress=lambda *a, **k: None))
    tuned, _ = store.get(None)["finetuned"]
    (tmp_path / "essay.txt").write_text(prepare_text(None, essay, False, True, prefer_text=True)[0], encoding="utf-8")
    line = next(ln for ln in finetune.command(v).splitlines() if " finetune " in ln)
    r = run_cli(*cli_args(line), cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    cli_model, _ = load_model(str(tmp_path / "finetuned"))
    for (name, a), (_, b) in zip(sorted(tuned.state_dict().items()), sorted(cli_model.state_dict().items())):
        assert torch.equal(a, b), name


# ---- issue 20: every field a link carries is restored; section= opens and scrolls; per-section commands ----------
@pytest.fixture
def sectioned():
    with gr.Blocks() as demo:
        registry.header()
        with gr.Tabs():
            with gr.Tab("Parts", id="parts"):
                view = gr.Radio(["mask on: a", "mask off: b"], value="mask on: a")
                lens = gr.CheckboxGroup(["1,024", "4,096", "16,384"], value=["1,024"])
                with gr.Accordion("First", open=True, elem_id="parts-first") as first:
                    go1 = gr.Button("Run first")
                with gr.Accordion("Second", open=False, elem_id="parts-second") as second:
                    go2 = gr.Button("Run second")
                with gr.Column(elem_id="parts-plain") as plain:
                    gr.Markdown("plain")
                t = registry.register("parts", {"view": view, "lengths": lens},
                                      command=lambda v: f"echo {v.get('section', 'all')}",
                                      run={"first": go1, "second": go2},
                                      sections={"first": first, "second": second, "plain": plain})
        reg = registry.install(demo)
    return SimpleNamespace(demo=demo, reg=reg, tab=t, first=first, second=second, view=view, lens=lens, go2=go2)


def test_view_is_a_field_unless_it_is_gradios_api_page(sectioned):
    reg = sectioned.reg
    tab, values, notes, _ = reg.parse({"tab": "parts", "view": "mask off: b"})
    assert (tab, values, notes) == ("parts", {"view": "mask off: b"}, [])
    tab, values, notes, _ = reg.parse({"tab": "parts", "view": "api"})  # Gradio's API page: not the tab's
    assert (tab, values, notes) == ("parts", {}, [])
    tab, values, notes, _ = reg.parse({"tab": "parts", "view": "sideways"})
    assert values == {} and "view" in notes[0] and "expected one of" in notes[0]


def test_section_link_opens_the_accordion_and_names_bad_sections(sectioned):
    reg, outs = sectioned.reg, sectioned.reg.apply_outputs()
    assert any(c is sectioned.second for c in outs) and any(c is sectioned.first for c in outs)
    tab, values, notes, _ = reg.parse({"tab": "parts", "section": "second", "lengths": "1,024,16,384"})
    assert notes == [] and values == {"section": "second", "lengths": ["1,024", "16,384"]}  # commas inside choices
    by = dict(zip(map(id, outs), reg.updates(tab, values, notes, None)))
    assert by[id(sectioned.second)]["open"] is True and by[id(sectioned.second)]["__type__"] == "update"
    assert by[id(sectioned.first)] == gr.skip()  # the other accordions keep their state
    assert by[id(sectioned.tab.command_box)] == "echo second"  # the section's own command
    assert by[id(sectioned.lens)] == ["1,024", "16,384"]
    _, values, notes, _ = reg.parse({"tab": "parts", "section": "nowhere"})
    assert values == {} and "no section called 'nowhere'" in notes[0] and "first, second, plain" in notes[0]
    js = links.section_from_url_js(registry.section_targets(reg))
    assert '"second": "parts-second"' in js and "scrollIntoView" in js
    assert course.course_available(reg, "parts", {"section": "plain", "view": "mask on: a"})
    assert not course.course_available(reg, "parts", {"section": "nowhere"})


def test_run_buttons_show_their_sections_command(sectioned):
    deps = [d for d in sectioned.demo.fns.values() if any(t[0] == sectioned.go2._id for t in d.targets)]
    fn = next(d.fn for d in deps if d.outputs and d.outputs[0] is sectioned.tab.command_box)
    assert fn("mask on: a", ["1,024"]) == "echo second"


def test_course_map_sections_and_commands_in_the_app(app):
    from tabs import coursemap, efficiency

    reg = app._tinygpt_share
    outs = reg.apply_outputs()
    eff, att = reg.tabs["efficiency"], reg.tabs["attention"]
    assert set(eff.sections) == {"kv", "gqa", "flash", "profile"} and {"graph", "code"} <= set(att.sections)
    rows = {e.question.split(":")[0][:30]: e for e in coursemap.ENTRIES}
    for e in coursemap.ENTRIES:
        section = e.settings.get("section")
        if not section:
            continue
        assert course.course_available(reg, e.tab, e.settings), e.question
        by = dict(zip(map(id, outs), reg.updates(e.tab, e.settings, [], None)))
        target = reg.tabs[e.tab].sections[section]
        if isinstance(target, gr.Accordion):
            assert by[id(target)]["open"] is True, e.question
        command = by[id(reg.tabs[e.tab].command_box)]
        if e.tab == "efficiency":  # each row shows its own section's command, never another's
            assert ("tinygpt profile" in command) == (section == "profile"), (section, command)
            assert {"kv": "kv_cache_latency", "flash": "measure_attention", "profile": "--seq-len"}[section] in command
    flash = next(e for e in coursemap.ENTRIES if e.settings.get("section") == "flash")
    by = dict(zip(map(id, outs), reg.updates("efficiency", flash.settings, [], None)))
    assert by[id(eff.fields["bench_lengths"])] == ["1,024", "4,096", "16,384"]
    assert "[1024, 4096, 16384]" in efficiency.command({**eff.defaults, **flash.settings})
    assert rows  # the table of questions is not empty
    # a link with the attention view: restored in its widget, and the refresh draws that view
    ups = dict(zip(map(id, outs), reg.restore(SimpleNamespace(query_params={
        "tab": "attention", "view": "mask off: what position i could see", "section": "head"}))))
    assert ups[id(att.fields["view"])] == "mask off: what position i could see"
    assert ups[id(reg.banner)]["visible"] is False  # nothing was ignored


def test_efficiency_commands_per_section(models, tiny_dir):
    import shlex

    from tabs import efficiency

    with gr.Blocks():
        efficiency.build(models, registry.registry().sessions, tiny_dir)
        reg = registry.registry()
    v = dict(reg.tabs["efficiency"].defaults)
    kv = efficiency.command({**v, "section": "kv"})
    args = shlex.split(kv)
    assert args[:2] == ["python", "-c"] and "kv_cache_latency" in args[2] and f'"{v["kv_prompt"]}"' in args[2]
    compile(args[2], "kv", "exec")  # a real Python line
    for section in ("gqa", "flash"):
        code = shlex.split(efficiency.command({**v, "section": section}))[2]
        compile(code, section, "exec")
    assert efficiency.command({**v, "section": "profile"}).startswith("python -m tinygpt profile")
    everything = efficiency.command(v)
    assert everything.count("# ") >= 4 and "kv_cache_latency" in everything and "tinygpt profile" in everything


def test_report_link_is_absolute_from_the_request(tmp_path):
    from starlette.requests import Request as StarletteRequest

    from tabs import calculator
    from tabs.kit.report import app_url

    def request(path, headers=()):
        scope = {"type": "http", "method": "POST", "path": path, "root_path": "", "query_string": b"",
                 "scheme": "http", "server": ("127.0.0.1", 7860),
                 "headers": [(k.encode(), v.encode()) for k, v in headers]}
        return gr.Request(request=StarletteRequest(scope), session_hash="abs-link")

    assert app_url(request("/gradio_api/queue/join")) == "http://127.0.0.1:7860"
    space = request("/gradio_api/queue/join", [("x-forwarded-host", "me-lab.hf.space"), ("x-forwarded-proto", "https")])
    assert app_url(space) == "https://me-lab.hf.space"
    assert app_url(SimpleNamespace(session_hash="x")) is None  # no real request: the relative link stays
    with gr.Blocks():
        calculator.build()
        reg = registry.registry()
    t = reg.tabs["calculator"]
    values = {**t.defaults, "n_layer": 24}
    outputs = shown(t, {})
    doc = open(reg.report(t, space, values, outputs), encoding="utf-8").read()
    assert 'href="https://me-lab.hf.space/?tab=calculator&amp;n_layer=24"' in doc
    assert "(after the app's address)" not in doc
