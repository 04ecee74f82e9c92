"""Downloads: every figure of a tab as PNG and SVG, every table as CSV.

A gr.Plot turns its matplotlib Figure into a raster image for the browser and drops the Figure; FigureMemory keeps
the last few so that the SVG is a real vector drawing. Gradio's native plots (bar, line, scatter) are re-drawn with
matplotlib from their data, which is also saved as CSV.
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
from collections import OrderedDict

import gradio as gr
import pandas as pd
from matplotlib.figure import Figure

from .common import new_figure

MAX_FIGURES = 32  # figures remembered for SVG export, all users together (oldest forgotten first)
FIGURE_TYPES = (gr.Plot,)
NATIVE_PLOTS = (gr.BarPlot, gr.LinePlot, gr.ScatterPlot)


class FigureMemory:
    """The matplotlib Figures behind what gr.Plot components last showed, keyed by the image sent."""

    def __init__(self, size: int = MAX_FIGURES):
        self.size = size
        self._figures: OrderedDict = OrderedDict()

    def watch(self, plot) -> None:
        """Remember every Figure this gr.Plot shows from now on."""
        original = plot.postprocess
        memory = self

        def postprocess(value):
            payload = original(value)
            if isinstance(value, Figure) and payload is not None and getattr(payload, "plot", None):
                key = _payload_key(payload)
                memory._figures[key] = value
                memory._figures.move_to_end(key)
                while len(memory._figures) > memory.size:
                    memory._figures.popitem(last=False)
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
            return self._figures.get(_payload_key(value)) or figure_of(value)
        return None


def _payload_key(payload) -> str:
    return hashlib.sha1(str(payload.plot).encode()).hexdigest()


# Figures encoded once in a handler and sent to many pages as the same PlotData (a room's shared run,
# tabs/kit/stream.py): remembered here, so their exports stay vector drawings
_ENCODED: OrderedDict = OrderedDict()


def plot_data(fig: Figure, fmt: str = "webp"):
    """What gr.Plot sends for `fig` (its PlotData; webp is gr.Plot's default format), made once here so that many
    pages can be sent the same image; the Figure stays recoverable for exports (figure_of)."""
    from gradio import processing_utils
    from gradio.components.plot import PlotData

    data = PlotData(type="matplotlib", plot=processing_utils.encode_plot_to_base64(fig, fmt))
    key = _payload_key(data)
    _ENCODED[key] = fig
    _ENCODED.move_to_end(key)
    while len(_ENCODED) > MAX_FIGURES:
        _ENCODED.popitem(last=False)
    return data


def figure_of(value) -> Figure | None:
    """The Figure behind a plot value: the Figure itself, or the one plot_data encoded (None when forgotten)."""
    if isinstance(value, Figure):
        return value
    return _ENCODED.get(_payload_key(value)) if getattr(value, "plot", None) else None


def export_outputs(memory: FigureMemory, tab_id: str, outputs: dict, values: list, out_dir: str) -> list[str]:
    """Every figure of `outputs` ({name: component}, shown as `values`) as PNG + SVG, every table as CSV, written
    to out_dir -> file paths."""
    paths = []
    for (name, comp), value in zip(outputs.items(), values):
        stem = os.path.join(out_dir, f"{tab_id}-{name}")
        if isinstance(comp, FIGURE_TYPES + NATIVE_PLOTS) and value is not None:
            fig = memory.figure_for(comp, value)
            if fig is not None:
                paths += export_figure(fig, stem)
            elif getattr(value, "plot", None):
                paths += export_raster(value.plot, stem)
        if isinstance(comp, NATIVE_PLOTS):
            df = native_frame(value)
            if df is not None and not df.empty:
                paths.append(export_table(df, stem))
        if isinstance(comp, gr.Dataframe) and has_rows(value):
            paths.append(export_table(value, stem))
    return paths


def has_rows(df) -> bool:
    """A table with at least one non-blank cell."""
    if not isinstance(df, pd.DataFrame) or df.empty:
        return False
    return bool((df.astype(str).map(lambda s: s.strip() != "")).to_numpy().any())


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


# ---- Gradio's native plots ------------------------------------------------------------------------------------
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
