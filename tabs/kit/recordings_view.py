"""Recorded answers, loaded and shown: assets/recordings/<row id>.json read back (load) and rendered as HTML under
its course-map row (render: a label line with the date, CPU, commit and settings, a "Run live" link, then each
output; the PNGs are static files Gradio serves, never base64 in the page).

This is the part the running app needs; making the recordings (`python -m tinygpt record-course-map`) is
tabs/kit/recordings.py, which re-exports these names.
"""
from __future__ import annotations

import html
import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECORDINGS = os.path.join(ROOT, "assets", "recordings")


def path_of(row_id: str, out: str = RECORDINGS) -> str:
    return os.path.join(out, f"{row_id}.json")


def load(row_id: str, out: str = RECORDINGS) -> dict | None:
    try:
        with open(path_of(row_id, out), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None



def file_url(path: str) -> str:
    """Gradio's URL of a static file (app.py: gr.set_static_paths([RECORDINGS])): relative to the working
    directory when the file is under it (no server path in the page), else absolute."""
    rel = os.path.relpath(path, os.getcwd())
    return "/gradio_api/file=" + (rel.replace(os.sep, "/") if not rel.startswith("..") else path)


def label_line(rec: dict, changed: dict | None = None) -> str:
    """"Recorded on <date> · <cpu> · commit <short> · <seconds> · settings: ...": `changed` (the row's own settings)
    when given, else every field."""
    shown = {k: v for k, v in (rec["settings"] if changed is None else changed).items() if k != "section"}
    settings = ", ".join(f"{k}={_short(v)}" for k, v in shown.items())
    if changed is not None:
        settings = f"{settings} (the rest at the tab's start-up values)" if settings else "the tab's start-up values"
    extra = "".join(f"; {k}: {v}" for k, v in (rec.get("inputs") or {}).items())
    return (f"Recorded on {rec['date']} · {rec['cpu']} · commit {(rec.get('commit') or 'unknown')[:8]} · "
            f"{rec['seconds']:.0f} s · settings: {settings}{extra}")


def _short(v) -> str:
    text = ",".join(map(str, v)) if isinstance(v, list) else str(v)
    return text if len(text) <= 40 else text[:39] + "…"


def serve(folder: str = RECORDINGS) -> None:
    """Let Gradio serve the recordings' PNGs as static files (once per process)."""
    import gradio as gr

    if os.path.isdir(folder) and folder not in _SERVED:
        gr.set_static_paths([folder])
        _SERVED.add(folder)


_SERVED: set = set()


def render(rec: dict | None, out: str = RECORDINGS, live: str | None = None, changed: dict | None = None) -> str:
    """A recording as HTML for the course map ("" without one): the label line (the row's own settings `changed`
    when given, every field in a fold below; a "Run live" link to `live`), then each output."""
    if not rec:
        return ""
    run = f' · <a href="{html.escape(live)}" target="_self">Run live ▸</a>' if live else ""
    parts = [f'<div class="tg-rec"><p class="tg-rec-label"><em>{html.escape(label_line(rec, changed))}</em>{run}</p>']
    if changed is not None:
        every = ", ".join(f"{k}={_short(v)}" for k, v in rec["settings"].items())
        parts.append(f"<details><summary>Every setting of the run</summary><p>{html.escape(every)}</p></details>")
    for item in rec["outputs"]:
        title = f"<h4>{html.escape(item['label'])}</h4>" if is_title(item["label"]) else ""
        if item["kind"] == "figure":
            src = html.escape(file_url(os.path.join(out, item["png"])))
            parts.append(f'{title}<img src="{src}" alt="{html.escape(item["label"])}" loading="lazy"'
                         ' style="max-width:100%;height:auto">')
        elif item["kind"] == "table":
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in item["headers"])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                           for r in item["rows"])
            parts.append(f"{title}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif item["kind"] == "html":
            parts.append(title + item["text"])
        elif item["kind"] == "markdown":
            parts.append(title + _markdown(item["text"]))
        else:
            parts.append(f"{title}<pre>{html.escape(json.dumps(item['value'], indent=1))}</pre>")
    parts.append("</div>")
    return "\n".join(parts)


def is_title(label: str) -> bool:
    """A component's label ("DPO curves") is shown as a heading; an elem_id used as the name ("dpo-status") is not."""
    return not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", label)


def _markdown(text: str) -> str:
    try:
        from markdown_it import MarkdownIt  # noqa: PLC0415 - Gradio's own dependency

        return MarkdownIt("commonmark").enable("table").render(text)
    except ImportError:
        return f"<pre>{html.escape(text)}</pre>"

