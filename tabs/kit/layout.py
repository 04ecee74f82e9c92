"""Page-wide legibility: plot labels that do not cover the figure's title, one-line placeholders instead of empty
plot boxes and blank tables, tables that scroll sideways instead of breaking words, sample cards that hold their
text, and figures that stay readable on a phone. Plain CSS, added to the page with the share bar's (registry).

Gradio copies every rule of the page's CSS under `.gradio-container... .contain`, which outranks a rule that starts
at :root (lecture mode): rules that must win there say !important.
"""
from __future__ import annotations

PLACEHOLDER = "Nothing to show yet: press the button above."
NO_ROWS = "No rows yet: press the button above."
NO_FILES = "Press a download button above: the files appear here."

LAYOUT_CSS = f"""
/* a plot's floating label chip sits above the figure, not on its first subplot's title or legend */
.block > label.float ~ [data-testid="matplotlib"] {{padding-top: 38px;}}
/* an empty plot (or file list) is one line saying what fills it, not a 300-pixel box with an icon */
.block > .empty.large.unpadded_box {{min-height: 0 !important; height: auto !important; padding: 34px 12px 10px;
    justify-content: flex-start;}}
.block > .empty.large.unpadded_box .icon {{display: none;}}
.block > .empty.large.unpadded_box::after {{content: "{PLACEHOLDER}"; color: var(--body-text-color-subdued);
    font-size: var(--text-sm);}}
[id$="-share-files"] > .empty.large.unpadded_box::after {{content: "{NO_FILES}";}}
/* a table without rows: its placeholder line instead of a header of column numbers */
.table-container.no-rows table, .table-container.no-rows .table-wrap {{display: none;}}
.table-container.no-rows::after {{content: "{NO_ROWS}"; display: block; padding: 6px 2px;
    color: var(--body-text-color-subdued); font-size: var(--text-sm);}}
/* markdown tables (Explain sections) scroll sideways on a narrow screen; words are never cut in the middle */
.prose table {{display: block; max-width: 100%; overflow-x: auto;}}
.prose table td, .prose table th {{word-break: normal !important; overflow-wrap: normal !important;
    hyphens: none; min-width: 4.5em;}}
/* sample cards keep long unbroken text (an untrained model's output) inside the card */
.tg-sample {{overflow-wrap: anywhere; min-width: 0;}}
.tg-samples > * {{min-width: 0;}}
/* a phone: figures keep a readable size and scroll sideways instead of shrinking their text to a few pixels */
@media (max-width: 700px) {{
  [data-testid="matplotlib"] {{overflow-x: auto;}}
  [data-testid="matplotlib"] img {{min-width: 760px !important; max-width: none !important;}}
}}
"""
