"""The homework report: one self-contained HTML file for a tab (settings, link, command line, every figure as an
embedded PNG, tables, samples and explanations, the date and the model), with no external assets."""
from __future__ import annotations

import base64
import datetime as dt
import html
import json
import os

import gradio as gr

from .common import SAMPLE_CSS
from .exports import FIGURE_TYPES, NATIVE_PLOTS, FigureMemory, figure_bytes, has_rows, native_frame, raster_png
from .links import encode_value

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


def render_output(memory: FigureMemory, comp, value) -> str:
    """One output of the tab as HTML ("" when it shows nothing)."""
    value = getattr(value, "root", value)  # gr.JSON may hand over its pydantic root model
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    if isinstance(comp, FIGURE_TYPES + NATIVE_PLOTS):
        fig = memory.figure_for(comp, value)
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
        return value.to_html(index=False, border=0) if has_rows(value) else ""
    if isinstance(comp, gr.HTML):
        return f"<div class='tg-html'>{value}</div>"
    if isinstance(comp, gr.Markdown):
        return markdown_html(str(value))
    if isinstance(comp, gr.JSON):
        text = json.dumps(value, indent=1, default=str)
        return (f"<details><summary>JSON ({len(text):,} characters)</summary><pre>{html.escape(text)}</pre>"
                "</details>")
    return ""


def sections(memory: FigureMemory, outputs: dict, values: list) -> list:
    """[(heading, html)] for every output that shows something; unlabelled text (explanations, the model card)
    goes in without a heading."""
    out = []
    for comp, value in zip(outputs.values(), values):
        part = render_output(memory, comp, value)
        if part:
            out.append((html.escape(getattr(comp, "label", None) or ""), part))
    return out


def link_html(query: str, base_url: str | None) -> str:
    if not base_url:
        return f"<p>Link to this setup: <code>?{html.escape(query)}</code> (after the app's address)</p>"
    url = f"{base_url}/?{query}"
    return f"<p>Link to this setup: <a href=\"{html.escape(url)}\">{html.escape(url)}</a></p>"


def app_url(request) -> str | None:
    """The app's address as the browser reached it (the request's base URL: behind a proxy such as a Space, the
    forwarded host and scheme), without a trailing slash; None outside a real request."""
    req = getattr(request, "request", None) if request is not None else None
    if req is None or not hasattr(req, "url"):
        return None
    from gradio import route_utils

    try:
        route = route_utils.get_api_call_path(req)
    except ValueError:
        route = ""
    try:
        return route_utils.get_root_url(req, route, os.environ.get("GRADIO_ROOT_PATH") or None)
    except Exception:  # noqa: BLE001 - an odd request: the report keeps the relative link
        return None


def report_html(label: str, values: dict, command: str, query: str, sections: list, model: str,
                base_url: str | None = None) -> str:
    """The report; `base_url` (app_url of the request) makes "Link to this setup" an absolute, clickable link."""
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
{link_html(query, base_url)}
<h2>Command line</h2><pre>{html.escape(command)}</pre>
{body}
<p class="meta">Made with TinyGPT Lab. Every number above was computed live from the model.</p>
</body></html>
"""
