"""Helpers shared by the tabs: turning errors into plain messages, model cards, small formatting."""
from __future__ import annotations

import html
import math

import matplotlib

matplotlib.use("Agg")  # no display; figures are rendered to images for the browser

import gradio as gr  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

MODEL_CHOICES = ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "tiny-shakespeare"]


class UserError(ValueError):
    """A problem with what the user entered; shown as a plain sentence."""


def as_gr_error(e: Exception) -> gr.Error:
    """One clear sentence for the browser and the API client, never a traceback."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else "Something went wrong."
    return gr.Error(msg, print_exception=False)


def new_figure(w: float = 8, h: float = 4) -> Figure:
    """A Figure not tracked by pyplot (so nothing accumulates across requests)."""
    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    return fig


def human(n: float, unit: str = "") -> str:
    """124439808 -> '124.44 M'."""
    n = float(n)
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f} {suf}{unit}"
    return f"{n:.0f} {unit}".strip()


def human_bytes(n: float) -> str:
    n = float(n)
    for p, suf in ((4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
        if abs(n) >= 1024 ** p:
            return f"{n / 1024 ** p:.2f} {suf}"
    return f"{n:.0f} B"


def human_flops(n: float) -> str:
    """7.985e20 -> '7.99e20 FLOPs' (SI prefixes beyond tera mean little to students; powers of ten do)."""
    mant, exp = f"{float(n):.2e}".split("e")
    return f"{mant}e{int(exp)} FLOPs"


def model_card(model) -> str:
    c = model.config
    info = getattr(model, "info", None)
    name = info.name if info else "model"
    n = model.num_params()
    return (f"**{html.escape(name)}** · {c.n_layer} layers · {c.n_head} heads · d_model {c.n_embd} · "
            f"feed-forward {c.ffn_dim} (GELU) · context {c.block_size} · vocab {c.vocab_size:,} · "
            f"**{human(n)} parameters** ({n:,}) · weights {str(model.transformer.wte.weight.dtype).replace('torch.', '')}")


def banner(model) -> str:
    info = getattr(model, "info", None)
    if info is not None and info.fallback:
        return f"⚠️ **{html.escape(info.notice)}**"
    return ""


def clamp_int(value, lo: int, hi: int, name: str, notes: list) -> int:
    """Parse a whole number; values outside [lo, hi] are capped and the cap is reported in `notes`."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number.") from None
    if math.isnan(v):
        raise UserError(f"{name} must be a number.")
    if v < lo:
        notes.append(f"{name} raised to {lo}.")
        return lo
    if v > hi:
        notes.append(f"{name} capped at {hi:,}.")
        return hi
    return int(v)


def parse_float(value, name: str, lo: float | None = None, hi: float | None = None) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number.") from None
    if math.isnan(v) or math.isinf(v):
        raise UserError(f"{name} must be a finite number.")
    if lo is not None and v < lo:
        raise UserError(f"{name} must be at least {lo}.")
    if hi is not None and v > hi:
        raise UserError(f"{name} must be at most {hi}.")
    return v


DTYPES = {False: torch.float32, True: torch.bfloat16}


def get_model(models, name, fast=False):
    """(model, tokenizer) from the shared cache; a bad name or missing files become one plain sentence."""
    try:
        return models.get(name, DTYPES[bool(fast)])
    except Exception as e:  # unknown name, missing files, ...
        raise as_gr_error(e)


def on_model_change(models, name, fast=False):
    """(banner, model card) for the picked model: what every model tab shows when the dropdown changes."""
    model, _ = get_model(models, name, fast)
    return banner(model), model_card(model)


def model_picker(models, default_model: str, with_fast: bool = False):
    """The model dropdown, fallback banner and model card every model tab starts with.

    Returns (dropdown, fast checkbox or None, banner markdown, card markdown, the default model)."""
    model0, _ = models.get(default_model)
    with gr.Row():
        dd = gr.Dropdown(MODEL_CHOICES, value=model0.info.name, label="Model", scale=2, allow_custom_value=True)
        fast = gr.Checkbox(False, label="Fast mode (bf16 weights)", scale=1) if with_fast else None
    banner_md = gr.Markdown(banner(model0))
    card_md = gr.Markdown(model_card(model0))
    return dd, fast, banner_md, card_md, model0
