"""Every heavy course-map row answers at once (issue 21, item 2): assets/recordings holds each heavy row's default
run, made by `python -m tinygpt record-course-map` (tabs/kit/recordings.py), and the course map shows it.

(a) every heavy row has a recording whose settings are the row's current field values (the tab's start-up values
    overlaid with the row's settings) and whose `fingerprint` matches the files that decide its result: the tab's
    own sources and the tinygpt modules they import. (runs.code_version() hashes every source of tinygpt/ and tabs/:
    any unrelated edit would fail; the recording keeps it as `code`, for reference.)
(b) the fastest portable row (DPO or RLHF: no corpus that depends on the Python version), re-run through the same
    recorder function, gives the recorded numbers (within 2 %: another CPU rounds floats differently; sampled text
    is not compared); the fastest measured row (Efficiency: this machine's timings) gives the same outputs, curves
    and table shape;
(c) every file is under 10 MB and all of them together under 2 MB;
(d) the course map renders the recorded answer: date, CPU, commit, settings, the PNG's static URL, "Run live".
"""
import html
import json
import math
import os

import gradio as gr
import pytest

from tabs import alignment, coursemap, efficiency, finetune, scaling
from tabs import train as train_tab
from tabs.kit import recordings
from tabs.kit.sessions import SessionStore

ROWS = recordings.heavy_rows(coursemap.ENTRIES)
IDS = [e.id for e in ROWS]
RERUN = "re-record with python -m tinygpt record-course-map --rows {}"
REL = 0.02  # another CPU's float rounding
# Rows whose result is the same on any machine up to float rounding: offline, Train, Fine-tune and Scaling read the
# built-in Python-docs corpus (the standard library's docstrings: another Python version, another text).
PORTABLE_TABS = ("dpo", "rlhf")


@pytest.fixture(scope="module")
def demo(models):
    """The heavy tabs as the app builds them (default model "gpt2": offline, the embedded model stands in)."""
    sessions = SessionStore()
    with gr.Blocks() as d:
        with gr.Tabs():
            train_tab.build(sessions)
            finetune.build(models, sessions, "gpt2")
            efficiency.build(models, sessions, "gpt2")
            scaling.build(sessions)
            alignment.build(models, sessions, "gpt2")
    return d


def test_every_heavy_row_has_an_id_and_a_recording():
    assert {e.tab for e in ROWS} == set(recordings.HEAVY_TABS)
    assert len(set(IDS)) == len(IDS)
    missing = [i for i in IDS if recordings.load(i) is None]
    assert not missing, "no recording: " + "; ".join(RERUN.format(i) for i in missing)


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_recording_is_current(demo, row):
    rec = recordings.load(row.id)
    assert rec is not None, RERUN.format(row.id)
    assert rec["question"] == row.question and rec["tab"] == row.tab
    assert rec["settings"] == recordings.settings_for(demo, row), (
        f"{row.id}: the row's settings or the tab's start-up values changed; " + RERUN.format(row.id))
    files = recordings.fingerprint_files(row.tab)
    now, then = recordings.file_hashes(files), rec["fingerprint_files"]
    changed = sorted(f for f in set(now) | set(then) if now.get(f) != then.get(f))
    assert rec["fingerprint"] == recordings.fingerprint(files) and not changed, (
        f"{row.id}: code that decides the result changed ({', '.join(changed)}); " + RERUN.format(row.id))
    for item in rec["outputs"]:
        if item["kind"] == "figure":
            assert os.path.isfile(os.path.join(recordings.RECORDINGS, item["png"])), item["png"]
    assert rec["outputs"] and rec["date"] and rec["cpu"] and rec["torch"] and rec["code"] and rec["seconds"] > 0


def numbers(rec: dict) -> dict:
    """name -> number: every curve's points and every table's numeric cells."""
    out = {}
    for item in rec["outputs"]:
        for n, c in enumerate(item.get("curves", [])):
            for k, (x, y) in enumerate(zip(c["x"], c["y"])):
                out[(item["label"], n, c["axes"], c["label"], k)] = (x, y)
        for r, row in enumerate(item.get("rows", [])):
            for k, v in enumerate(row):
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[(item["label"], r, k)] = v
    return out


def shape(rec: dict) -> list:
    return [(i["label"], i["kind"], [(c["axes"], c["label"]) for c in i.get("curves", [])],
             i.get("headers"), len(i.get("rows", []))) for i in rec["outputs"]]


def close(a, b) -> bool:
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=REL, abs_tol=1e-3)


def fastest():
    """The quickest portable row and the quickest measured one (by their recorded seconds)."""
    recs = [(recordings.load(e.id), e) for e in ROWS]
    recs = [(r, e) for r, e in recs if r]
    det = sorted((r["seconds"], e.id) for r, e in recs if not r["measured"] and e.tab in PORTABLE_TABS)
    meas = sorted((r["seconds"], e.id) for r, e in recs if r["measured"])
    return [i for _, i in det[:1] + meas[:1]]


@pytest.mark.parametrize("row_id", fastest())
def test_rerun_matches_the_recording(demo, row_id, tmp_path):
    row = next(e for e in ROWS if e.id == row_id)
    rec = recordings.load(row_id)
    again = recordings.record_row(demo, row, str(tmp_path))
    assert again["settings"] == rec["settings"]
    assert shape(again) == shape(rec)
    if rec["measured"]:  # this machine's timings: same outputs, curves and table rows, not the same numbers
        return
    old, new = numbers(rec), numbers(again)
    assert old and old.keys() == new.keys()
    bad = [(k, old[k], new[k]) for k in old if not close(old[k], new[k])]
    assert not bad, f"{len(bad)} of {len(old)} numbers differ, e.g. {bad[:3]}; " + RERUN.format(row_id)


def test_recordings_are_small():
    sizes = {f: os.path.getsize(os.path.join(recordings.RECORDINGS, f)) for f in os.listdir(recordings.RECORDINGS)}
    assert all(s < 10_000_000 for s in sizes.values()), sizes
    assert sum(sizes.values()) < 2_000_000, sum(sizes.values())
    referenced = {i + ".json" for i in IDS} | {item["png"] for i in IDS for item in recordings.load(i)["outputs"]
                                                 if item["kind"] == "figure"}
    assert set(sizes) == referenced  # nothing stale left behind


def test_course_map_renders_the_recorded_answer():
    row = next(e for e in ROWS if e.id == "dpo-loss")
    rec = recordings.load(row.id)
    page = coursemap.recorded_answer(row)
    text = html.unescape(page)
    assert f"Recorded on {rec['date']}" in page and rec["cpu"] in page and f"commit {rec['commit'][:8]}" in page
    assert "settings: the tab's start-up values" in text and "beta_a=0.1" in text  # every setting, in a fold
    png = next(i["png"] for i in rec["outputs"] if i["kind"] == "figure")
    assert 'src="/gradio_api/file=' in page and page.count(png) == 1
    assert "data:image" not in page  # a static file, never base64 in the page
    assert 'href="?tab=dpo"' in page and "Run live" in page
    light = next(e for e in coursemap.ENTRIES if e.tab == "sampling")
    assert coursemap.recorded_answer(light) == ""  # a row without a recording shows nothing extra


def test_course_map_sends_the_answer_only_when_opened():
    """The HTML is the accordion's expand output, not in the page config; the PNG folder is a static path."""
    with gr.Blocks() as d:
        coursemap.build()
    config = json.dumps(d.get_config_file())
    accordions = [b for b in d.blocks.values() if isinstance(b, gr.Accordion)
                  and (b.elem_id or "").startswith("map-rec-")]
    assert len(accordions) == len(IDS) and not any(a.open for a in accordions)
    assert "Recorded on" not in config
    from gradio.data_classes import _StaticFiles  # noqa: PLC2701 - where set_static_paths keeps its folders

    assert any(str(p) == os.path.realpath(recordings.RECORDINGS) for p in _StaticFiles.all_paths)
