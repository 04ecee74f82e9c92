"""Helpers shared by the tabs: sample cards (and their CSS), the model picker and card, number formatting.

The input checks and error messages (UserError, user_errors, check_prompt, clamp_int, parse_float, plain_errors, ...)
live in inputs.py and are re-exported here, so `from .kit.common import clamp_int` keeps working.
A tab imports from here and the rest of tabs.kit, never from another tab.
"""
from __future__ import annotations

import html

import matplotlib

matplotlib.use("Agg")  # no display; figures are rendered to images for the browser

import gradio as gr  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tinygpt.device import fast_dtype  # noqa: E402
from tinygpt.sampling import encode_prompt, generate  # noqa: E402

from .inputs import (  # noqa: E402, F401 - re-exported: `from .kit.common import clamp_int` is how tabs import them
    MAX_FIELD_CHARS,
    MAX_MAGNITUDE,
    MAX_PROMPT_CHARS,
    UNEXPECTED,
    Knobs,
    UserError,
    as_gr_error,
    bad_text,
    check_input,
    check_knobs,
    check_prompt,
    clamp_int,
    field_name,
    json_safe,
    parse_float,
    plain_errors,
    plain_message,
    user_errors,
)

MODEL_CHOICES = ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "tiny-shakespeare"]


# ---- sample cards ----------------------------------------------------------------------------------
SAMPLE_CSS = """
.tg-samples {display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 12px;}
.tg-sample {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px;
            white-space: pre-wrap; font-family: var(--font-mono); font-size: 15px; line-height: 1.45;}
.tg-sample-h {font-weight: 600; font-family: var(--font); margin-bottom: 6px; opacity: .8;}
.tg-prompt {opacity: .55;}
.tg-status {opacity: .75; margin-bottom: 6px;}
"""


def sample_cards(prompt: str, continuations, titles=None, status: str = "") -> str:
    """Samples side by side: the prompt dimmed, then the continuation (None = still waiting)."""
    cols = []
    for i, cont in enumerate(continuations):
        title = html.escape(titles[i]) if titles else f"Sample {i + 1}"
        body = "<i>waiting…</i>" if cont is None else html.escape(cont)
        cols.append(f"<div class='tg-sample'><div class='tg-sample-h'>{title}</div>"
                    f"<span class='tg-prompt'>{html.escape(prompt)}</span>{body}</div>")
    head = f"<div class='tg-status'>{html.escape(status)}</div>" if status else ""
    return head + "<div class='tg-samples'>" + "".join(cols) + "</div>"


def seeded_sample(model, tok, prompt: str, seed, n_tokens: int, temperature: float, top_k: int | None) -> str:
    """One continuation of `prompt`, the same for the same seed: the before/after samples of the tabs that train,
    where only the weights may differ."""
    ids = encode_prompt(tok, prompt, model.config.block_size)
    out = generate(model, torch.tensor([ids], dtype=torch.long), n_tokens, temperature, top_k, None,
                   torch.Generator().manual_seed(int(seed)))
    return tok.decode(out[0, len(ids):].tolist())


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
            f"**{human(n)} parameters** ({n:,}) · weights {str(model.transformer.wte.weight.dtype)[6:]}"
            f" on {device_label(model)}" + fast_path_note(model))


def device_label(model) -> str:
    """Where the weights live, as a student reads it: "the CPU", "cuda:0 (NVIDIA L4)", "Apple MPS"."""
    d = model.transformer.wte.weight.device
    if d.type == "cuda":
        return f"{d} ({torch.cuda.get_device_name(d)})"
    return "Apple MPS" if d.type == "mps" else "the CPU"


def fast_path_note(model) -> str:
    """' · fp32 matmuls via oneDNN' when the loaded model's Linear layers take the fast path, else ''."""
    from tinygpt.kernels import fast_inference_path

    return "" if fast_inference_path(model) == "standard" else " · fp32 matmuls via oneDNN (checked against F.linear)"


def banner(model) -> str:
    info = getattr(model, "info", None)
    if info is not None and info.fallback:
        return f"⚠️ **{html.escape(info.notice)}**"
    return ""


def model_dtype(models, fast) -> torch.dtype:
    """fp32, or the fast mode's 16-bit weights on the cache's device (bf16 on a CPU, bf16/fp16 on a GPU)."""
    return fast_dtype(getattr(models, "device", None) or "cpu") if fast else torch.float32


def get_model(models, name, fast=False):
    """(model, tokenizer) from the shared cache; a bad name or missing files become one plain sentence."""
    try:
        return models.get(name, model_dtype(models, fast))
    except Exception as e:  # noqa: BLE001 - unknown name, missing files, ...: one sentence for the user
        raise as_gr_error(e) from None


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
