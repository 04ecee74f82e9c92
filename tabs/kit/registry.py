"""For lecturers and students: links that reproduce a tab's state, the command line behind a run, downloads
(every figure as PNG and SVG, every table as CSV), a one-file HTML homework report, and lecture mode.

A tab gets all of it with ONE call at the end of its build(), inside its `gr.Tab`:

    share.register("sampling", fields={"prompt": prompt, "temperature": temperature, ...},
                   command=command, run=go, refresh=(partial(on_dist, models), knobs, [dist_plot, explain_md]))

* fields: the settings a link carries (URL key -> input component); a link holds only those that differ from
  the tab's start-up values, and opening it resets the tab's other fields to those start-up values.
* command(values: dict) -> the equivalent `python -m tinygpt ...` line(s), or None; shown after each `run` click.
* refresh: (fn, inputs, outputs) re-run after a link or the course map filled the fields (cheap views only).
* Figures, tables, samples and explanations are found in the tab by themselves (every gr.Plot, native plot,
  gr.Dataframe, gr.HTML, gr.Markdown and gr.JSON) for the downloads and the report.

app.py calls `share.header(sessions)` under the title (lecture toggle + a note banner) and `share.install()` after
the last tab (restores a link on page load, wires the course map). State lives on the gr.Blocks being built
(one registry per demo), never in a module global.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import io
import json
import math
import os
import re
import shlex
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote, urlencode

import gradio as gr
import pandas as pd
from gradio.context import Context
from matplotlib.figure import Figure

from .common import SAMPLE_CSS, new_figure
from .sessions import SessionStore, session_tmpdir

GLOBAL_KEYS = {"tab", "lecture"}  # plus Gradio's own (__theme, view, ...): any key starting with "__" or "view"
MAX_TEXT = 20_000  # characters of one text value accepted from a link
MAX_LINK_TEXT = 2_000  # longer texts are left out of a copied link (a URL this long breaks in e-mails and servers)
MAX_FIGURES = 32  # figures remembered for SVG export, all users together (oldest forgotten first)
FIGURE_TYPES = (gr.Plot,)
NATIVE_PLOTS = (gr.BarPlot, gr.LinePlot, gr.ScatterPlot)
OUTPUT_TYPES = (gr.Plot, gr.BarPlot, gr.LinePlot, gr.ScatterPlot, gr.Dataframe, gr.HTML, gr.Markdown, gr.JSON)

# ---- lecture mode ------------------------------------------------------------------------------------
# The class goes on <html>: Gradio's theme defines its sizes on :root from --text-*, so overriding those there
# resizes every label, input, button and prose block at once; plots are images and are widened instead.
LECTURE_CSS = """
/* Gradio's dark theme re-declares the sizes on the .dark element (body): override them there too */
:root.tg-lecture, :root.tg-lecture .dark {--text-xxs: 13px; --text-xs: 15px; --text-sm: 18px; --text-md: 21px;
                                          --text-lg: 24px; --text-xl: 30px; --text-xxl: 38px;}
:root.tg-lecture .gradio-container {max-width: 100% !important;}
:root.tg-lecture .prose, :root.tg-lecture .prose * {font-size: 21px; line-height: 1.5;}
:root.tg-lecture .prose h1 {font-size: 38px;} :root.tg-lecture .prose h3 {font-size: 26px;}
:root.tg-lecture .tg-sample {font-size: 22px;}
:root.tg-lecture button {min-height: 48px;}
:root.tg-lecture input[type=checkbox], :root.tg-lecture input[type=radio] {transform: scale(1.4);}
:root.tg-lecture input[type=range] {height: 10px;}
:root.tg-lecture [data-testid="matplotlib"] {padding-top: 44px;}  /* below the plot's floating label */
:root.tg-lecture [data-testid="matplotlib"] img {width: 100% !important; max-width: 100% !important;
                  height: auto !important;}
.tg-share-bar {margin-top: 12px;}
.tg-map-q {padding-top: 6px;}
"""

LECTURE_JS = "(on) => { document.documentElement.classList.toggle('tg-lecture', !!on); return []; }"

# Python builds the query string; the browser adds its own address (that of the Space, or localhost), keeps a
# ?__theme=dark already in the address, copies the link and shows it.
LINK_JS = """(qs) => {
  if (!qs || qs.startsWith('http')) return qs;
  const here = new URLSearchParams(window.location.search);
  const params = new URLSearchParams(qs);
  if (here.get('__theme')) params.set('__theme', here.get('__theme'));
  const url = window.location.origin + window.location.pathname + '?' + params.toString();
  try { navigator.clipboard.writeText(url).catch(() => {}); } catch (e) {}
  return url;
}"""


# ---- the registry: one per gr.Blocks --------------------------------------------------------------------
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
    link_box: Any = None
    link_note: Any = None
    command_box: Any = None
    files: Any = None


class Registry:
    def __init__(self, sessions: SessionStore | None = None):
        self.sessions = sessions or SessionStore()
        self.tabs: dict[str, TabShare] = {}
        self.figures: OrderedDict = OrderedDict()  # payload hash -> Figure (for SVG export)
        self.banner = None
        self.lecture = None
        self.applied = None  # gr.State: which tab a link / the course map just filled
        self.course: list = []  # (button, note markdown, tab id, settings, needs)
        self.installed = False

    # ---- links: encode and decode ------------------------------------------------------------------
    def query_string(self, tab_id: str, values: dict, lecture: bool = False) -> tuple[str, list]:
        """"tab=sampling&temperature=10&top_k=2" with only the fields that differ from the start-up values.
        Returns (query string, notes about values left out)."""
        t = self.tabs[tab_id]
        pairs, notes = [("tab", tab_id)], []
        for key, comp in t.fields.items():
            if key not in values:
                continue
            text = encode_value(values[key])
            if text == encode_value(t.defaults[key]):
                continue
            if field_kind(comp) == "text" and len(text) > MAX_LINK_TEXT:
                notes.append(f"{key} ({len(text):,} characters) is too long for a link and was left out.")
                continue
            pairs.append((key, text))
        if lecture:
            pairs.append(("lecture", "1"))
        return urlencode(pairs, quote_via=quote, safe=","), notes

    def parse(self, params) -> tuple[str | None, dict, list, bool | None]:
        """Read a link's query parameters -> (tab id or None, {key: value}, notes, lecture on/off or None).

        Unknown tabs, unknown keys and values that do not fit a field are ignored, each with one sentence in
        `notes`; nothing here raises."""
        params = {str(k): str(v) for k, v in dict(params or {}).items()}
        notes: list = []
        lecture = None
        if "lecture" in params:
            flag = params["lecture"].strip().lower()
            if flag in TRUE | FALSE:
                lecture = flag in TRUE
            else:
                notes.append(f"Ignored lecture={params['lecture']!r}: use lecture=1 or lecture=0.")
        keys = [k for k in params if k not in GLOBAL_KEYS and not k.startswith("__") and k != "view"]
        tab_id = params.get("tab")
        if tab_id is None:
            if keys:
                notes.append(f"Ignored {', '.join(keys)}: the link does not say which tab they are for (add"
                             " tab=..., e.g. tab=sampling).")
            return None, {}, notes, lecture
        if tab_id not in self.tabs:
            known = ", ".join(self.tabs) or "none"
            notes.append(f"Ignored tab={tab_id!r}: there is no such tab (tabs: {known}); its settings were not"
                         " applied.")
            return None, {}, notes, lecture
        t = self.tabs[tab_id]
        values = {}
        for key in keys:
            comp = t.fields.get(key)
            if comp is None:
                notes.append(f"Ignored {key}={_short(params[key])}: the {t.label} tab has no setting called {key!r}.")
                continue
            try:
                values[key] = decode_value(comp, params[key])
            except ValueError as e:
                notes.append(f"Ignored {key}={_short(params[key])}: {e}")
        return tab_id, values, notes, lecture

    # ---- filling a tab (from a link or the course map) ----------------------------------------------
    def apply_outputs(self) -> list:
        outs = [self.banner, self.applied, self.lecture]
        outs += self._selector_components()
        for t in self.tabs.values():
            outs += list(t.fields.values()) + [t.command_box]
        return outs

    def _selector_components(self) -> list:
        seen = []
        for t in self.tabs.values():
            for tabs, _ in t.selectors:
                if all(tabs is not s for s in seen):
                    seen.append(tabs)
        return seen

    def updates(self, tab_id: str | None, values: dict, notes: list, lecture: bool | None) -> list:
        """One update per apply_outputs() entry: the banner, the tabs to select, the target tab's fields (its
        start-up values overlaid with `values`) and its command line; everything else is left alone."""
        out = [gr.update(value=note_markdown(notes), visible=True) if notes else gr.update(value="", visible=False),
               tab_id or "", gr.skip() if lecture is None else lecture]
        target = self.tabs.get(tab_id) if tab_id else None
        chosen = {id(tabs): sel for tabs, sel in (target.selectors if target else [])}
        for tabs in self._selector_components():
            out.append(gr.Tabs(selected=chosen[id(tabs)]) if id(tabs) in chosen else gr.skip())
        for t in self.tabs.values():
            if t is target:
                full = {**t.defaults, **values}
                out += [full[k] for k in t.fields] + [self.command_text(t, full)]
            else:
                out += [gr.skip()] * (len(t.fields) + 1)
        return out

    def restore(self, request: gr.Request):
        """demo.load: a link's query string -> updates (no query string: nothing changes)."""
        params = getattr(request, "query_params", None) or {}
        tab_id, values, notes, lecture = self.parse(params)
        return self.updates(tab_id, values, notes, lecture)

    def refresh_inputs(self) -> list:
        ins = [self.applied]
        for t in self.tabs.values():
            for c in (t.refresh[1] if t.refresh else []):
                if all(c is not x for x in ins):
                    ins.append(c)
        return ins

    def refresh_outputs(self) -> list:
        outs = []
        for t in self.tabs.values():
            for c in (t.refresh[2] if t.refresh else []):
                if all(c is not x for x in outs):
                    outs.append(c)
        return outs

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

    # ---- commands, downloads, report -----------------------------------------------------------------
    def command_text(self, t: TabShare, values: dict) -> str:
        if t.command is None:
            return "(no command-line equivalent for this tab)"
        try:
            cmd = t.command(values)
        except ValueError as e:  # the same check the run would fail: say it in one line
            return f"# {str(e).strip().splitlines()[0] if str(e).strip() else 'invalid settings'}"
        return cmd or "(no command-line equivalent for this view)"

    def remember_figures(self, plot) -> None:
        """Keep the matplotlib Figure behind what a gr.Plot shows, so it can be saved as SVG later: Gradio
        turns it into a raster image for the browser and would otherwise drop it."""
        original = plot.postprocess
        registry = self

        def postprocess(value):
            payload = original(value)
            if isinstance(value, Figure) and payload is not None and getattr(payload, "plot", None):
                key = _payload_key(payload)
                registry.figures[key] = value
                registry.figures.move_to_end(key)
                while len(registry.figures) > MAX_FIGURES:
                    registry.figures.popitem(last=False)
            return payload

        plot.postprocess = postprocess  # an instance attribute: only this component is affected

    def figure_for(self, comp, value) -> Figure | None:
        """The Figure a Plot / native plot value stands for (None when it cannot be recovered)."""
        if value is None:
            return None
        if isinstance(comp, NATIVE_PLOTS):
            df = native_frame(value)
            return None if df is None or df.empty else native_figure(comp, df)
        if isinstance(value, Figure):
            return value
        if getattr(value, "plot", None):
            return self.figures.get(_payload_key(value))
        return None

    def session_dir(self, request, tab_id: str) -> str:
        return tempfile.mkdtemp(prefix=f"{tab_id}-", dir=session_tmpdir(self.sessions.get(request)))

    def export(self, t: TabShare, request, outputs: list) -> list[str]:
        """Every figure of the tab as PNG + SVG, every table as CSV -> file paths."""
        out_dir = self.session_dir(request, t.tab_id)
        paths = []
        for (name, comp), value in zip(t.outputs.items(), outputs):
            stem = os.path.join(out_dir, f"{t.tab_id}-{name}")
            if isinstance(comp, FIGURE_TYPES + NATIVE_PLOTS) and value is not None:
                fig = self.figure_for(comp, value)
                if fig is not None:
                    paths += export_figure(fig, stem)
                elif getattr(value, "plot", None):
                    paths += export_raster(value.plot, stem)
            if isinstance(comp, NATIVE_PLOTS):
                df = native_frame(value)
                if df is not None and not df.empty:
                    paths.append(export_table(df, stem))
            if isinstance(comp, gr.Dataframe) and _has_rows(value):
                paths.append(export_table(value, stem))
        if not paths:
            raise gr.Error("Nothing to download yet: run this tab first.", print_exception=False)
        return paths

    def report(self, t: TabShare, request, values: dict, outputs: list) -> str:
        """The tab as one self-contained HTML file -> its path."""
        sections = []
        for (name, comp), value in zip(t.outputs.items(), outputs):
            part = self.render_output(comp, value)
            if part:  # unlabelled text (explanations, the model card) goes in without a heading
                sections.append((html.escape(getattr(comp, "label", None) or ""), part))
        doc = report_html(t.label, values, self.command_text(t, values), self.query_string(t.tab_id, values)[0],
                          sections, model_name(values, outputs))
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = os.path.join(self.session_dir(request, t.tab_id), f"tinygpt-{t.tab_id}-report-{stamp}.html")
        with open(path, "w", encoding="utf-8") as f:
            f.write(doc)
        return path

    def render_output(self, comp, value) -> str:
        value = getattr(value, "root", value)  # gr.JSON may hand over its pydantic root model
        if value is None or (isinstance(value, str) and not value.strip()):
            return ""
        if isinstance(comp, FIGURE_TYPES + NATIVE_PLOTS):
            fig = self.figure_for(comp, value)
            if fig is not None:
                uri = "data:image/png;base64," + base64.b64encode(figure_bytes(fig, "png")).decode()
            elif getattr(value, "plot", None) and str(value.plot).startswith("data:image"):
                uri = "data:image/png;base64," + base64.b64encode(raster_png(value.plot)).decode()
            else:
                return ""
            table = ""
            if isinstance(comp, NATIVE_PLOTS):
                table = "<details><summary>data</summary>" + native_frame(value).to_html(index=False) + "</details>"
            return f"<img alt='figure' src='{uri}'>{table}"
        if isinstance(comp, gr.Dataframe):
            return value.to_html(index=False, border=0) if _has_rows(value) else ""
        if isinstance(comp, gr.HTML):
            return f"<div class='tg-html'>{value}</div>"
        if isinstance(comp, gr.Markdown):
            return markdown_html(str(value))
        if isinstance(comp, gr.JSON):
            text = json.dumps(value, indent=1, default=str)
            return (f"<details><summary>JSON ({len(text):,} characters)</summary><pre>{html.escape(text)}</pre>"
                    "</details>")
        return ""


TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _short(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[:n] + "…")


def _index(items: list, comp) -> int:
    return next(i for i, c in enumerate(items) if c is comp)


def _payload_key(payload) -> str:
    return hashlib.sha1(str(payload.plot).encode()).hexdigest()


def _has_rows(df) -> bool:
    if not isinstance(df, pd.DataFrame) or df.empty:
        return False
    return bool((df.astype(str).map(lambda s: s.strip() != "")).to_numpy().any())


def registry(sessions: SessionStore | None = None) -> Registry:
    """The registry of the gr.Blocks being built (created on first use)."""
    root = Context.root_block
    if root is None:
        raise RuntimeError("share.register() must be called while a gr.Blocks is being built.")
    reg = getattr(root, "_tinygpt_share", None)
    if reg is None:
        reg = Registry(sessions)
        root._tinygpt_share = reg
    elif sessions is not None:
        reg.sessions = sessions
    return reg


# ---- field values <-> link text ---------------------------------------------------------------------------
def field_kind(comp) -> str:
    if isinstance(comp, gr.Checkbox):
        return "bool"
    if isinstance(comp, gr.CheckboxGroup):
        return "multi"
    if isinstance(comp, (gr.Radio, gr.Dropdown)):
        return "choice"
    if isinstance(comp, (gr.Slider, gr.Number)):
        return "number"
    return "text"


def choice_values(comp) -> list:
    return [c[1] if isinstance(c, (tuple, list)) else c for c in (comp.choices or [])]


def encode_value(value) -> str:
    """A field value as link text: booleans 1/0, whole numbers without ".0", lists comma-separated."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    if isinstance(value, (list, tuple)):
        return ",".join(encode_value(v) for v in value)
    return str(value)


def decode_value(comp, text: str):
    """Link text -> a value the component accepts. Raises ValueError with the reason in plain words."""
    kind = field_kind(comp)
    text = str(text)
    if kind == "bool":
        if text.strip().lower() not in TRUE | FALSE:
            raise ValueError("expected 1 or 0.")
        return text.strip().lower() in TRUE
    if kind == "number":
        try:
            v = float(text)
        except ValueError:
            raise ValueError("not a number.") from None
        if not math.isfinite(v):
            raise ValueError("not a finite number.")
        lo, hi = getattr(comp, "minimum", None), getattr(comp, "maximum", None)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ValueError(f"outside the range {_num(lo)} to {_num(hi)}.")
        whole = getattr(comp, "precision", None) == 0 or (isinstance(comp, gr.Slider) and float(comp.step).is_integer()
                                                           and float(lo or 0).is_integer())
        if whole:
            if not v.is_integer():
                raise ValueError("expected a whole number.")
            return int(v)
        return v
    if kind == "choice":
        allowed = choice_values(comp)
        match = [c for c in allowed if encode_value(c) == text]
        if not match:
            raise ValueError(f"expected one of {', '.join(map(encode_value, allowed))}.")
        return match[0]
    if kind == "multi":
        allowed = choice_values(comp)
        items = [x for x in text.split(",") if x.strip()]
        bad = [x for x in items if x not in [encode_value(c) for c in allowed]]
        if bad:
            raise ValueError(f"{bad[0]!r} is not one of {', '.join(map(encode_value, allowed))}.")
        return [c for c in allowed if encode_value(c) in items]
    if len(text) > MAX_TEXT:
        raise ValueError(f"longer than {MAX_TEXT:,} characters.")
    return text


def _num(v) -> str:
    return "…" if v is None else f"{v:g}"


def settings_query(tab_id: str, settings: dict) -> str:
    """A link's query string for a course-map preset (no components needed)."""
    return urlencode([("tab", tab_id)] + [(k, encode_value(v)) for k, v in settings.items()], quote_via=quote,
                     safe=",")


def note_markdown(notes: list) -> str:
    return "**Parts of this link were ignored.** " + " ".join(html.escape(n) for n in notes)


# ---- the command line -----------------------------------------------------------------------------------
def cli(subcommand: str, **options) -> str:
    """`python -m tinygpt SUBCOMMAND --opt value ...`, shell-quoted. None/False options are left out, True is a
    bare flag; a value starting with "-" is written --opt=value so argparse does not read it as an option."""
    args = ["python", "-m", "tinygpt", subcommand]
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.rstrip("_").replace("_", "-")
        if value is True:
            args.append(flag)
            continue
        text = encode_value(value) if not isinstance(value, float) else format(value, ".12g")
        args += [f"{flag}={text}"] if text.startswith("-") else [flag, text]
    return shlex.join(args)


def cli_python(code: str) -> str:
    """`python -c CODE`, shell-quoted (a preparation step before a tinygpt command)."""
    return shlex.join(["python", "-c", code])


# ---- figures and tables to files --------------------------------------------------------------------------
def figure_bytes(fig: Figure, fmt: str) -> bytes:
    """PNG or SVG bytes of a Figure, on its own (opaque, white) background: legible on light and dark pages."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, facecolor="white")
    return buf.getvalue()


def export_figure(fig: Figure, stem: str) -> list[str]:
    """stem.png + stem.svg -> [paths]."""
    paths = []
    for fmt in ("png", "svg"):
        path = f"{stem}.{fmt}"
        with open(path, "wb") as f:
            f.write(figure_bytes(fig, fmt))
        paths.append(path)
    return paths


def export_table(df: pd.DataFrame, stem: str) -> str:
    path = f"{stem}.csv"
    df.to_csv(path, index=False)
    return path


def raster_png(data_uri: str) -> bytes:
    """A data:image/...;base64 URI (Gradio sends figures as WebP) -> PNG bytes."""
    from PIL import Image

    raw = base64.b64decode(data_uri.split(",", 1)[1])
    with Image.open(io.BytesIO(raw)) as im:
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return buf.getvalue()


def export_raster(data_uri: str, stem: str) -> list[str]:
    """For a figure whose Figure is gone (drawn before the page opened): the PNG, and an SVG that wraps it."""
    from PIL import Image

    png = raster_png(data_uri)
    with Image.open(io.BytesIO(png)) as im:
        w, h = im.size
    svg = (f"<?xml version='1.0' encoding='utf-8'?>\n<svg xmlns='http://www.w3.org/2000/svg' width='{w}' "
           f"height='{h}' viewBox='0 0 {w} {h}'><image width='{w}' height='{h}' "
           f"href='data:image/png;base64,{base64.b64encode(png).decode()}'/></svg>\n")
    with open(f"{stem}.png", "wb") as f:
        f.write(png)
    with open(f"{stem}.svg", "w", encoding="utf-8") as f:
        f.write(svg)
    return [f"{stem}.png", f"{stem}.svg"]


def native_frame(value) -> pd.DataFrame | None:
    """The table behind a gr.BarPlot / gr.LinePlot value."""
    if value is None:
        return None
    if isinstance(value, pd.DataFrame):
        return value
    cols, data = getattr(value, "columns", None), getattr(value, "data", None)
    if isinstance(value, dict):
        cols, data = value.get("columns"), value.get("data")
    return None if cols is None else pd.DataFrame(data, columns=cols)


def native_figure(comp, df: pd.DataFrame) -> Figure:
    """A matplotlib re-draw of a Gradio native plot (stacked bars, lines or points by its `color` column)."""
    fig = new_figure(8, 3.8)
    ax = fig.add_subplot(111)
    x, y, color = comp.x, comp.y, getattr(comp, "color", None)
    if isinstance(comp, gr.BarPlot):
        table = df.pivot_table(index=x, columns=color, values=y, aggfunc="sum", sort=False) if color else \
            df.groupby(x, sort=False)[[y]].sum()
        order = getattr(comp, "sort", None)
        if isinstance(order, list):
            table = table.reindex([o for o in order if o in table.index] +
                                  [i for i in table.index if i not in order])
        colours = getattr(comp, "color_map", None) or {}
        bottom = None
        for col in table.columns:
            vals = table[col].fillna(0).to_numpy()
            ax.bar([str(i) for i in table.index], vals, bottom=bottom, label=str(col), color=colours.get(col))
            bottom = vals if bottom is None else bottom + vals
    else:
        groups = df.groupby(color, sort=False) if color else [(y, df)]
        for name, g in groups:
            if isinstance(comp, gr.LinePlot):
                ax.plot(g[x], g[y], label=str(name))
            else:
                ax.scatter(g[x], g[y], label=str(name), s=12)
    ax.set_xlabel(getattr(comp, "x_title", None) or x)
    ax.set_ylabel(getattr(comp, "y_title", None) or y)
    ax.set_title(getattr(comp, "title", None) or "", fontsize=10)
    ax.grid(alpha=0.3)
    if color:
        ax.legend(fontsize=8)
    return fig


# ---- the report --------------------------------------------------------------------------------------------
REPORT_CSS = """
:root {--border-color-primary: #c9ced6; --font-mono: ui-monospace, Menlo, Consolas, monospace;
       --font: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;}
body {font-family: var(--font); max-width: 1100px; margin: 24px auto; padding: 0 16px; color: #1f2328;
      background: #fff; line-height: 1.45;}
h1 {font-size: 26px; margin-bottom: 4px;} h2 {font-size: 19px; margin-top: 28px; border-bottom: 1px solid #ddd;}
.meta {color: #57606a;}
table {border-collapse: collapse; margin: 8px 0; font-size: 14px;}
th, td {border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top;}
th {background: #f6f8fa;}
pre, code {font-family: var(--font-mono); font-size: 13px;}
pre {background: #f6f8fa; padding: 10px; overflow-x: auto; white-space: pre-wrap; border-radius: 6px;}
img {max-width: 100%; border: 1px solid #eee;}
"""


def markdown_html(text: str) -> str:
    try:
        from markdown_it import MarkdownIt
    except ImportError:  # no renderer: the text itself is still readable
        return f"<pre>{html.escape(text)}</pre>"
    return MarkdownIt("commonmark", {"html": False}).enable("table").enable("strikethrough").render(text)


def model_name(values: dict, outputs: list) -> str:
    """The model the run used: the JSON output's "model" (after an offline fallback) or the picked one."""
    picked = values.get("model")
    outputs = [getattr(o, "root", o) for o in outputs]
    used = next((o.get("model") for o in outputs if isinstance(o, dict) and o.get("model")), None)
    if used and picked and str(used) != str(picked):
        return f"{used} (asked for {picked}; offline fallback)"
    return str(used or picked or "none (this tab needs no model)")


def report_html(label: str, values: dict, command: str, query: str, sections: list, model: str) -> str:
    now = dt.datetime.now().astimezone()
    shown = lambda v: ("yes" if v else "no") if isinstance(v, bool) else encode_value(v)  # noqa: E731
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td><code>{html.escape(shown(v))}</code></td></tr>"
                   for k, v in values.items())
    body = "".join((f"<h2>{title}</h2>\n" if title else "") + f"{part}\n" for title, part in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>TinyGPT Lab report: {html.escape(label)}</title>
<style>{REPORT_CSS}{SAMPLE_CSS}</style></head>
<body>
<h1>TinyGPT Lab: {html.escape(label)}</h1>
<p class="meta">Created {now.strftime('%Y-%m-%d %H:%M %Z').strip()} · model: <b>{html.escape(model)}</b></p>
<h2>Settings</h2><table>{rows}</table>
<p>Link to this setup: <code>?{html.escape(query)}</code> (after the app's address)</p>
<h2>Command line</h2><pre>{html.escape(command)}</pre>
{body}
<p class="meta">Made with TinyGPT Lab. Every number above was computed live from the model.</p>
</body></html>
"""


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
             outputs: dict | None = None) -> TabShare:
    """Add the share bar (link, command, downloads, report) to the tab being built. Call it last in build(),
    inside the `with gr.Tab(...)` block. `outputs` (name -> component) replaces the automatic discovery."""
    reg = registry()
    tab = enclosing_tab(Context.block)
    label = getattr(tab, "label", None) or tab_id
    if tab is not None and tab.id is not None and tab.id != tab_id:
        raise ValueError(f"share.register({tab_id!r}) is inside the tab with id {tab.id!r}.")
    if outputs is None:
        outputs, taken = {}, set(id(c) for c in fields.values())
        for comp in walk(tab) if tab is not None else []:
            if isinstance(comp, OUTPUT_TYPES) and id(comp) not in taken:
                outputs[_unique_name(comp, outputs)] = comp
    t = TabShare(tab_id, label, dict(fields), {k: c.value for k, c in fields.items()}, command, refresh,
                 tab_selectors(tab), dict(outputs))
    for comp in outputs.values():
        if isinstance(comp, FIGURE_TYPES):
            reg.remember_figures(comp)
    with gr.Accordion("Share this setup · command line · downloads", open=True, elem_classes="tg-share-bar"):
        with gr.Row():
            link_btn = gr.Button("Copy link to this setup", size="sm", elem_id=f"{tab_id}-share-link")
            report_btn = gr.Button("⬇ Download report (HTML)", size="sm", elem_id=f"{tab_id}-share-report")
            export_btn = gr.Button("⬇ Figures (PNG, SVG) and tables (CSV)", size="sm",
                                   elem_id=f"{tab_id}-share-export")
        t.link_box = gr.Textbox(label="Link (copied to the clipboard)", interactive=False, show_label=True,
                                elem_id=f"{tab_id}-share-url", buttons=["copy"])
        t.link_note = gr.Markdown()
        t.command_box = gr.Code(reg.command_text(t, t.defaults), language="shell", interactive=False,
                                label="The same run on the command line (same seed, same model → same numbers)",
                                elem_id=f"{tab_id}-share-command")
        t.files = gr.File(label="Downloads", file_count="multiple", interactive=False,
                          elem_id=f"{tab_id}-share-files")
    reg.tabs[tab_id] = t
    field_list, out_list = list(t.fields.values()), list(t.outputs.values())
    keys = list(t.fields)

    def on_link(lecture, *values):
        qs, notes = reg.query_string(tab_id, dict(zip(keys, values)), bool(lecture))
        return qs, " ".join(notes), reg.command_text(t, dict(zip(keys, values)))

    def on_command(*values):
        return reg.command_text(t, dict(zip(keys, values)))

    def on_report(request: gr.Request, *values):
        return [reg.report(t, request, dict(zip(keys, values[:len(keys)])), list(values[len(keys):]))]

    def on_export(request: gr.Request, *values):
        return reg.export(t, request, list(values))

    # the lecture checkbox exists only when app.py called header(); a bare Blocks (tests) has none
    lecture_in = [reg.lecture] if reg.lecture is not None else [gr.State(False)]
    link_btn.click(on_link, lecture_in + field_list, [t.link_box, t.link_note, t.command_box], queue=False,
                   api_visibility="private").then(None, t.link_box, t.link_box, js=LINK_JS, queue=False,
                                                  api_visibility="private")
    report_btn.click(on_report, field_list + out_list, t.files, api_visibility="private")
    export_btn.click(on_export, out_list, t.files, api_visibility="private")
    for b in (run if isinstance(run, (list, tuple)) else [run] if run is not None else []):
        b.click(on_command, field_list, t.command_box, queue=False, api_visibility="private")
    return t


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
        reg.lecture = gr.Checkbox(False, label="Lecture mode (large text; link: ?lecture=1)",
                                  elem_id="lecture-toggle", scale=0, min_width=300)
    reg.applied = gr.State("")
    reg.lecture.change(None, reg.lecture, None, js=LECTURE_JS, queue=False, api_visibility="private")
    return reg


def course_button(button, note, tab_id: str, settings: dict, needs: str = "") -> None:
    """A course-map entry: the button opens `tab_id` filled with `settings` once that tab exists (install())."""
    registry().course.append((button, note, tab_id, dict(settings), needs))


def course_available(reg: Registry, tab_id: str, settings: dict) -> bool:
    t = reg.tabs.get(tab_id)
    return t is not None and set(settings) <= set(t.fields)


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
    demo.load(reg.restore, None, outputs, queue=False, api_visibility="private").then(**refresh)
    for button, note, tab_id, settings, needs in reg.course:
        if course_available(reg, tab_id, settings):
            button.interactive = True
            button.value = f"Open {reg.tabs[tab_id].label} ▸"

            def apply(tab_id=tab_id, settings=settings):
                return reg.updates(tab_id, settings, [], None)

            button.click(apply, None, outputs, queue=False, api_visibility="private").then(**refresh)
        else:
            button.interactive = False
            button.value = "Not in this app yet"
            note.value = f"*Arrives with {needs or 'the ' + tab_id + ' tab'}.*"
    reg.installed = True
    return reg
