"""Lecture mode: large text, controls and plots for a projector (the toggle at the top, or ?lecture=1 in a link).

The class goes on <html>: Gradio's theme defines its sizes on :root from --text-*, so overriding those there
resizes every label, input, button and prose block at once; plots are images and are widened instead.
"""
from __future__ import annotations

import gradio as gr

LECTURE_CSS = """
/* Gradio's dark theme re-declares the sizes on the .dark element (body): override them there too */
:root.tg-lecture, :root.tg-lecture .dark {--text-xxs: 13px; --text-xs: 15px; --text-sm: 18px; --text-md: 21px;
                                          --text-lg: 24px; --text-xl: 30px; --text-xxl: 38px;}
:root.tg-lecture .gradio-container {max-width: 100% !important;}
:root.tg-lecture .prose, :root.tg-lecture .prose * {font-size: 21px; line-height: 1.5;}
:root.tg-lecture .prose h1 {font-size: 38px;} :root.tg-lecture .prose h3 {font-size: 26px;}
:root.tg-lecture .tg-sample {font-size: 22px !important;}  /* beats Gradio's scoped copy of .tg-sample's 15px */
:root.tg-lecture .tg-sample-h, :root.tg-lecture .tg-status {font-size: 20px !important;}
:root.tg-lecture button {min-height: 48px;}
:root.tg-lecture input[type=checkbox], :root.tg-lecture input[type=radio] {transform: scale(1.4);}
:root.tg-lecture input[type=range] {height: 10px;}
:root.tg-lecture [data-testid="matplotlib"] {padding-top: 48px !important;}  /* below the plot's floating label */
:root.tg-lecture [data-testid="matplotlib"] img {width: 100% !important; max-width: 100% !important;
                  height: auto !important;}
"""

LECTURE_JS = "(on) => { document.documentElement.classList.toggle('tg-lecture', !!on); return []; }"


def toggle() -> gr.Checkbox:
    """The lecture-mode checkbox; switching it resizes the page in the browser only (no server round trip)."""
    box = gr.Checkbox(False, label="Lecture mode (large text; link: ?lecture=1)", elem_id="lecture-toggle", scale=0,
                      min_width=300)
    box.change(None, box, None, js=LECTURE_JS, queue=False, api_visibility="private")
    return box
