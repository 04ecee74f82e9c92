"""The share bar and its registry: what each tab registered (the settings a link carries, its command, its outputs),
one registry per gr.Blocks being built, and the wiring app.py adds around the tabs.

A tab gets links, the command line, downloads and the report with ONE call at the end of its build(), inside its
`gr.Tab`:

    register("sampling", fields={"prompt": prompt, "temperature": temperature, ...},
             command=command, run=go, refresh=(partial(on_dist, models), knobs, [dist_plot, explain_md]))

* fields: the settings a link carries (URL key -> input component); a link holds only those that differ from
  the tab's start-up values, and opening it resets the tab's other fields to those start-up values. Each field
  gets the CSS class tg-field-<tab id>-<key> (field_class), so the page shows which input a link key fills.
* command(values: dict) -> the equivalent `python -m tinygpt ...` line(s), or None; shown after each `run` click.
* refresh: (fn, inputs, outputs) re-run after a link or the course map filled the fields (cheap views only).
* remount: outputs a link hides while it fills the tab, for the refresh to show them drawn afresh (a native plot
  keeps the legend of the data it was first drawn with); the refresh must return visible=True for them.
* sections: {name: gr.Accordion or other block with an elem_id} a link can open and scroll to (`section=graph`);
  the tab's command(values) then gets values["section"] too, and `run` may be {section: button} so that each
  section's button shows that section's command line.
* Figures, tables, samples and explanations are found in the tab by themselves (every gr.Plot, native plot,
  gr.Dataframe, gr.HTML, gr.Markdown and gr.JSON) for the downloads and the report.

app.py calls `header(sessions)` under the title (lecture toggle + a note banner) and `install()` after the last
tab (restores a link on page load, wires the course map: `course.py`). State lives on the gr.Blocks being built
(one registry per demo), never in a module global.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import gradio as gr
from gradio.context import Context

from . import course, lecture, links
from .commands import command_text
from .exports import FIGURE_TYPES, FigureMemory, export_outputs
from .layout import LAYOUT_CSS
from .report import app_url, model_name, report_html, sections
from .sessions import SessionStore, session_tmpdir

OUTPUT_TYPES = (gr.Plot, gr.BarPlot, gr.LinePlot, gr.ScatterPlot, gr.Dataframe, gr.HTML, gr.Markdown, gr.JSON)
SHARE_CSS = """
.tg-share-bar {margin-top: 12px;}
.tg-map-q {padding-top: 6px;}
""" + LAYOUT_CSS  # app.py adds SHARE_CSS to the page: the layout rules come with it


@dataclass
class TabShare:
    """What one tab registered, plus the share bar components created for it."""

    tab_id: str
    label: str
    fields: dict
    defaults: dict  # URL key -> start-up value
    command: Callable | None
    refresh: tuple | None
    selectors: list  # [(gr.Tabs, tab id)] from the tab itself outwards: selecting all of them shows it
    outputs: dict = field(default_factory=dict)  # name -> component shown in the tab (figures, tables, ...)
    sections: dict = field(default_factory=dict)  # link `section=` name -> block (an accordion is opened)
    remount: list = field(default_factory=list)  # outputs a link hides so that its refresh shows them drawn afresh
    runs: list = field(default_factory=list)  # [(section or None, button)]: the buttons that run the tab
    link_box: Any = None
    link_note: Any = None
    command_box: Any = None
    files: Any = None


class Registry:
    def __init__(self, sessions: SessionStore | None = None):
        self.sessions = sessions or SessionStore()
        self.tabs: dict[str, TabShare] = {}
        self.figures = FigureMemory()  # the Figures behind the gr.Plots (for SVG export)
        self.banner = None
        self.lecture = None
        self.applied = None  # gr.State: which tab a link / the course map just filled
        self.course: list = []  # (button, note markdown, tab id, settings, needs)
        self.course_rows: list = []  # the course map's rows (tabs.coursemap.Entry), for tabs.kit.recordings
        self.installed = False

    # ---- links ---------------------------------------------------------------------------------------------
    def query_string(self, tab_id: str, values: dict, lecture: bool = False) -> tuple[str, list]:
        """"tab=sampling&temperature=10&top_k=2" with only the fields that differ from the start-up values.
        Returns (query string, notes about values left out)."""
        t = self.tabs[tab_id]
        return links.query_string(tab_id, t.fields, t.defaults, values, lecture)

    def parse(self, params) -> tuple[str | None, dict, list, bool | None]:
        """A link's query parameters -> (tab id or None, {key: value}, notes, lecture on/off or None)."""
        return links.parse(self.tabs, params)

    # ---- filling a tab (from a link or the course map) ----------------------------------------------
    def apply_outputs(self) -> list:
        outs = [self.banner, self.applied, self.lecture]
        outs += self._selector_components()
        for t in self.tabs.values():
            outs += list(t.fields.values()) + [t.command_box] + section_accordions(t) + t.remount
        return outs

    def _selector_components(self) -> list:
        return _distinct(tabs for t in self.tabs.values() for tabs, _ in t.selectors)

    def updates(self, tab_id: str | None, values: dict, notes: list, lecture: bool | None) -> list:
        """One update per apply_outputs() entry: the banner, the tabs to select, the target tab's fields (its
        start-up values overlaid with `values`) and its command line; everything else is left alone."""
        out = [gr.update(value=links.note_markdown(notes), visible=True) if notes else
               gr.update(value="", visible=False), tab_id or "", gr.skip() if lecture is None else lecture]
        target = self.tabs.get(tab_id) if tab_id else None
        chosen = {id(tabs): sel for tabs, sel in (target.selectors if target else [])}
        for tabs in self._selector_components():
            out.append(gr.Tabs(selected=chosen[id(tabs)]) if id(tabs) in chosen else gr.skip())
        for t in self.tabs.values():
            opened = section_accordions(t)
            if t is target:
                full = {**t.defaults, **values}
                chosen = t.sections.get(values.get(links.SECTION))
                out += [full[k] for k in t.fields] + [command_text(t.command, full)]
                out += [gr.update(open=True) if a is chosen else gr.skip() for a in opened]
                out += [gr.update(visible=False)] * len(t.remount)  # the refresh shows them again
            else:
                out += [gr.skip()] * (len(t.fields) + 1 + len(opened) + len(t.remount))
        return out

    def restore(self, request: gr.Request):
        """demo.load: a link's query string -> updates (no query string: nothing changes)."""
        params = getattr(request, "query_params", None) or {}
        tab_id, values, notes, lecture = self.parse(params)
        return self.updates(tab_id, values, notes, lecture)

    def refresh_inputs(self) -> list:
        return _distinct([self.applied] + [c for t in self.tabs.values() for c in (t.refresh[1] if t.refresh else [])])

    def refresh_outputs(self) -> list:
        return _distinct(c for t in self.tabs.values() for c in (t.refresh[2] if t.refresh else []))

    def run_refresh(self, tab_id, *values):
        """After a tab was filled: re-run its cheap view (e.g. the distribution plot) on the new values."""
        ins, outs = self.refresh_inputs()[1:], self.refresh_outputs()
        result = [gr.skip()] * len(outs)
        t = self.tabs.get(tab_id or "")
        if not t or not t.refresh:
            return result
        fn, inputs, outputs = t.refresh
        args = [values[_index(ins, c)] for c in inputs]
        res = fn(*args)
        res = res if isinstance(res, (tuple, list)) and len(outputs) > 1 else [res]
        for c, v in zip(outputs, res):
            result[_index(outs, c)] = v
        return result

    # ---- downloads and the report ------------------------------------------------------------------------
    def session_dir(self, request, tab_id: str) -> str:
        return tempfile.mkdtemp(prefix=f"{tab_id}-", dir=session_tmpdir(self.sessions.get(request)))

    def export(self, t: TabShare, request, outputs: list) -> list[str]:
        """Every figure of the tab as PNG + SVG, every table as CSV -> file paths."""
        paths = export_outputs(self.figures, t.tab_id, t.outputs, outputs, self.session_dir(request, t.tab_id))
        if not paths:
            raise gr.Error("Nothing to download yet: run this tab first.", print_exception=False)
        return paths

    def report(self, t: TabShare, request, values: dict, outputs: list) -> str:
        """The tab as one self-contained HTML file -> its path."""
        doc = report_html(t.label, values, command_text(t.command, values), self.query_string(t.tab_id, values)[0],
                          sections(self.figures, t.outputs, outputs), model_name(values, outputs),
                          app_url(request))
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = os.path.join(self.session_dir(request, t.tab_id), f"tinygpt-{t.tab_id}-report-{stamp}.html")
        with open(path, "w", encoding="utf-8") as f:
            f.write(doc)
        return path


def section_accordions(t: TabShare) -> list:
    """The tab's sections that a link opens (its accordions; other blocks are only scrolled to)."""
    return [c for c in t.sections.values() if isinstance(c, gr.Accordion)]


def section_targets(reg: Registry) -> dict:
    """{tab id: {section: elem_id}} for the scroll script."""
    return {tid: {name: c.elem_id for name, c in t.sections.items()} for tid, t in reg.tabs.items() if t.sections}


def _distinct(components) -> list:
    """The components in order, each once (components compare by identity)."""
    out: list = []
    for c in components:
        if all(c is not x for x in out):
            out.append(c)
    return out


def _index(items: list, comp) -> int:
    return next(i for i, c in enumerate(items) if c is comp)


def registry(sessions: SessionStore | None = None) -> Registry:
    """The registry of the gr.Blocks being built (created on first use)."""
    root = Context.root_block
    if root is None:
        raise RuntimeError("register() must be called while a gr.Blocks is being built.")
    reg = getattr(root, "_tinygpt_share", None)
    if reg is None:
        reg = Registry(sessions)
        root._tinygpt_share = reg
    elif sessions is not None:
        reg.sessions = sessions
    return reg


# ---- the one call per tab ---------------------------------------------------------------------------------
def enclosing_tab(block):
    while block is not None and not isinstance(block, gr.Tab):
        block = block.parent
    return block


def tab_selectors(tab) -> list:
    """[(gr.Tabs, id)] from the tab outwards: what to select so that the tab is shown."""
    out = []
    while tab is not None:
        parent = tab.parent
        while parent is not None and not isinstance(parent, gr.Tabs):
            parent = parent.parent
        if parent is None:
            break
        out.append((parent, tab.id))
        tab = enclosing_tab(parent.parent)
    return out


def walk(block):
    for child in getattr(block, "children", []) or []:
        yield child
        yield from walk(child)


def register(tab_id: str, fields: dict, command: Callable | None = None, run=None, refresh: tuple | None = None,
             outputs: dict | None = None, sections: dict | None = None, remount: list | None = None) -> TabShare:
    """Add the share bar (link, command, downloads, report) to the tab being built. Call it last in build(),
    inside the `with gr.Tab(...)` block. `outputs` (name -> component) replaces the automatic discovery.
    `sections` (name -> block with an elem_id) are the parts a link's `section=` opens and scrolls to; `run` is a
    button, a list of buttons, or {section: button} (each button shows its own section's command)."""
    reg = registry()
    sections = dict(sections or {})
    for name, block in sections.items():
        if not getattr(block, "elem_id", None):
            raise ValueError(f"register({tab_id!r}): section {name!r} needs an elem_id to scroll to.")
    for key, comp in fields.items():  # each field findable in the page by its link key (the browser tests)
        mark_field(comp, tab_id, key)
    tab = enclosing_tab(Context.block)
    label = getattr(tab, "label", None) or tab_id
    if tab is not None and tab.id is not None and tab.id != tab_id:
        raise ValueError(f"register({tab_id!r}) is inside the tab with id {tab.id!r}.")
    if outputs is None:
        outputs, taken = {}, set(id(c) for c in fields.values())
        for comp in walk(tab) if tab is not None else []:
            if isinstance(comp, OUTPUT_TYPES) and id(comp) not in taken:
                outputs[_unique_name(comp, outputs)] = comp
    t = TabShare(tab_id, label, dict(fields), {k: c.value for k, c in fields.items()}, command, refresh,
                 tab_selectors(tab), dict(outputs), sections, list(remount or []))
    if t.remount and (refresh is None or any(all(c is not o for o in refresh[2]) for c in t.remount)):
        raise ValueError(f"register({tab_id!r}): remount outputs must be outputs of the refresh (it shows them).")
    for comp in outputs.values():
        if isinstance(comp, FIGURE_TYPES):
            reg.figures.watch(comp)
    if isinstance(run, dict):
        runs = list(run.items())
    else:
        runs = [(None, b) for b in (run if isinstance(run, (list, tuple)) else [run] if run is not None else [])]
    t.runs = list(runs)
    _share_bar(reg, t, runs)
    reg.tabs[tab_id] = t
    return t


def field_class(tab_id: str, key: str) -> str:
    """The CSS class that marks a tab's field in the page: tg-field-<tab id>-<link key>."""
    return f"tg-field-{tab_id}-{key}"


def mark_field(comp, tab_id: str, key: str) -> None:
    classes = comp.elem_classes or []
    classes = [classes] if isinstance(classes, str) else list(classes)
    if field_class(tab_id, key) not in classes:
        comp.elem_classes = classes + [field_class(tab_id, key)]


def _share_bar(reg: Registry, t: TabShare, run_buttons: list) -> None:
    """The accordion under the tab and its events; each of `run_buttons` ((section or None, button)) also refreshes
    the command line (its section's, when it has one)."""
    tab_id = t.tab_id
    with gr.Accordion("Share this setup · command line · downloads", open=True, elem_classes="tg-share-bar"):
        with gr.Row():
            link_btn = gr.Button("Copy link to this setup", size="sm", elem_id=f"{tab_id}-share-link")
            report_btn = gr.Button("⬇ Download report (HTML)", size="sm", elem_id=f"{tab_id}-share-report")
            export_btn = gr.Button("⬇ Figures (PNG, SVG) and tables (CSV)", size="sm",
                                   elem_id=f"{tab_id}-share-export")
        t.link_box = gr.Textbox(label="Link (copied to the clipboard)", interactive=False, show_label=True,
                                elem_id=f"{tab_id}-share-url", buttons=["copy"])
        t.link_note = gr.Markdown()
        t.command_box = gr.Code(command_text(t.command, t.defaults), language="shell", interactive=False,
                                label="The same run on the command line (same seed, same model → same numbers)",
                                elem_id=f"{tab_id}-share-command")
        t.files = gr.File(label="Downloads", file_count="multiple", interactive=False,
                          elem_id=f"{tab_id}-share-files")
    field_list, out_list = list(t.fields.values()), list(t.outputs.values())
    keys = list(t.fields)

    def on_link(lecture, *values):
        qs, notes = reg.query_string(tab_id, dict(zip(keys, values)), bool(lecture))
        return qs, " ".join(notes), command_text(t.command, dict(zip(keys, values)))

    def on_command(*values, section=None):
        v = dict(zip(keys, values))
        if section is not None:
            v[links.SECTION] = section
        return command_text(t.command, v)

    def on_report(request: gr.Request, *values):
        return [reg.report(t, request, dict(zip(keys, values[:len(keys)])), list(values[len(keys):]))]

    def on_export(request: gr.Request, *values):
        return reg.export(t, request, list(values))

    # the lecture checkbox exists only when app.py called header(); a bare Blocks (tests) has none
    lecture_in = [reg.lecture] if reg.lecture is not None else [gr.State(False)]
    link_btn.click(on_link, lecture_in + field_list, [t.link_box, t.link_note, t.command_box], queue=False,
                   api_visibility="private").then(None, t.link_box, t.link_box, js=links.LINK_JS, queue=False,
                                                  api_visibility="private")
    report_btn.click(on_report, field_list + out_list, t.files, api_visibility="private")
    export_btn.click(on_export, out_list, t.files, api_visibility="private")
    for section, b in run_buttons:
        b.click(partial(on_command, section=section), field_list, t.command_box, queue=False,
                api_visibility="private")


def _unique_name(comp, taken: dict) -> str:
    base = getattr(comp, "label", None) or getattr(comp, "elem_id", None) or type(comp).__name__.lower()
    name = re.sub(r"[^a-z0-9]+", "-", str(base).lower()).strip("-")[:40] or "output"
    k, out = 2, name
    while out in taken:
        out, k = f"{name}-{k}", k + 1
    return out


# ---- app.py: the header and the final wiring ----------------------------------------------------------------
def header(sessions: SessionStore | None = None):
    """Under the title: the lecture-mode toggle and the banner that explains ignored link parameters."""
    reg = registry(sessions)
    with gr.Row(equal_height=True):
        reg.banner = gr.Markdown(visible=False, elem_id="share-banner")
        reg.lecture = lecture.toggle()
    reg.applied = gr.State("")
    return reg


def course_button(button, note, tab_id: str, settings: dict, needs: str = "", row=None) -> None:
    """A course-map entry: the button opens `tab_id` filled with `settings` once that tab exists (install()).
    `row`: the course map's row itself (kept for the recorder, tabs.kit.recordings)."""
    reg = registry()
    reg.course.append((button, note, tab_id, dict(settings), needs))
    if row is not None:
        reg.course_rows.append(row)


def install(demo: gr.Blocks | None = None) -> Registry:
    """After the last tab: restore a link's state on page load and wire the course map's buttons."""
    reg = registry()
    demo = demo or Context.root_block
    if reg.banner is None:
        header()
    outputs = reg.apply_outputs()
    # not in the "model" queue: every page load runs this (it does nothing without a link) and must not wait
    # behind someone's generation; a refresh is one cheap forward pass at most
    refresh = dict(fn=reg.run_refresh, inputs=reg.refresh_inputs(), outputs=reg.refresh_outputs(),
                   api_visibility="private")
    loaded = demo.load(reg.restore, None, outputs, queue=False, api_visibility="private")
    loaded.then(**refresh)
    targets = section_targets(reg)
    if targets:  # a link's section=...: scroll to it once its tab is selected and its accordion open
        loaded.then(None, js=links.section_from_url_js(targets), queue=False, api_visibility="private")
    course.wire(reg, outputs, refresh)
    reg.installed = True
    return reg
