"""Helpers shared by the tabs: one error-to-message decorator, one prompt check, sample cards (and their CSS),
the model picker and card, number parsing and formatting.

A tab imports from here and the rest of tabs.kit, never from another tab.
"""
from __future__ import annotations

import functools
import html
import inspect
import math
import os
import re
import traceback
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # no display; figures are rendered to images for the browser

import gradio as gr  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tinygpt.device import fast_dtype  # noqa: E402
from tinygpt.sampling import encode_prompt, generate  # noqa: E402

MODEL_CHOICES = ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "tiny-shakespeare"]


class UserError(ValueError):
    """A problem with what the user entered; shown as a plain sentence."""


def as_gr_error(e: Exception) -> gr.Error:
    """One clear sentence for the browser and the API client, never a traceback."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else "Something went wrong."
    return gr.Error(msg, print_exception=False)


def user_errors(fn):
    """Decorate a handler (plain or streaming): a ValueError raised inside it (UserError, TextError, a tinygpt
    check) reaches the user as its one-line message. Gradio still sees the handler's own signature."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except ValueError as e:
                raise as_gr_error(e) from None
        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as e:
            raise as_gr_error(e) from None
    return call


# ---- prompts and sampling knobs --------------------------------------------------------------------
MAX_PROMPT_CHARS = 8000


def check_prompt(prompt, notes: list) -> str:
    """The one prompt check: text is required; control characters are dropped; a huge prompt keeps its end."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError("Type a prompt first: the model continues the text you give it.")
    prompt = "".join(ch for ch in prompt if ch in "\n\t" or ch.isprintable())
    if len(prompt) > MAX_PROMPT_CHARS:
        notes.append(f"Prompt shortened to its last {MAX_PROMPT_CHARS:,} characters.")
        prompt = prompt[-MAX_PROMPT_CHARS:]
    return prompt


@dataclass
class Knobs:
    """Checked sampling settings (top_k/top_p are None when off)."""

    prompt: str
    num_samples: int
    max_new_tokens: int
    temperature: float
    top_k: int | None
    top_p: float | None
    seed: int


def check_knobs(prompt, num_samples, max_new_tokens, temperature, top_k, top_p, seed, max_samples: int = 6,
                max_tokens: int = 500) -> tuple[Knobs, list]:
    """Validate and cap the sampling knobs. Returns (Knobs, notes about caps). Raises UserError."""
    notes: list = []
    prompt = check_prompt(prompt, notes)
    n = clamp_int(num_samples, 1, max_samples, "Number of samples", notes)
    m = clamp_int(max_new_tokens, 1, max_tokens, "Max new tokens", notes)
    t = parse_float(temperature, "Temperature", 0.0, 100.0)
    k = clamp_int(top_k, 0, 50257, "Top-k", notes) if top_k not in (None, "") else 0
    p = parse_float(top_p, "Top-p", 0.0, 1.0) if top_p not in (None, "") else 1.0
    if p <= 0:
        raise UserError("Top-p must be above 0 (1 keeps every token).")
    s = clamp_int(seed, 0, 2**63 - 1, "Seed", notes) if seed not in (None, "") else 0
    return Knobs(prompt, n, m, t, k or None, None if p >= 1.0 else p, s), notes


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


# ---- one plain sentence for every bad input, through the page and the API ----------------------------------
# Gradio checks an event's inputs (preprocess) before the handler runs, and its own messages name handlers,
# component indices and Python's exception text ("Could not preprocess input component ... TypeError ..."); an
# exception a handler did not expect reaches the client as its text (launch(show_error=True)). plain_errors(demo)
# puts one place in front of both: every input is checked against its component first (check_input), Gradio's
# messages and any other exception become one sentence, and no message names a server path.
MAX_FIELD_CHARS = 2_000_000  # one text field through the API (a 1 MB prompt is shortened, not refused)
MAX_MAGNITUDE = 1e30  # a number field without bounds of its own (the largest real quantities here, FLOPs, ~1e25)
UNEXPECTED = "That did not work with these inputs: check the values and try again."
_PATH = re.compile(r"(?<![\w.:/~-])(?:[A-Za-z]:)?(?:[/\\][^\s/\\'\"`,;:()\[\]{}<>]+){2,}[/\\]?")


def plain_message(msg) -> str:
    """One line, no server path (a path becomes its file's own name), at most 500 characters."""
    text = next((ln.strip() for ln in str(msg or "").splitlines() if ln.strip()), "") or UNEXPECTED
    text = _PATH.sub(lambda m: os.path.basename(m.group(0).rstrip("/\\")) or "the file", text)
    return text if len(text) <= 500 else text[:497].rstrip() + "…"


def field_name(block) -> str:
    label = getattr(block, "label", None)
    return str(label).strip() if isinstance(label, str) and label.strip() else "This field"


def _kind(value) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "empty" if not value.strip() else "text"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "that value"


def bad_text(value: str, name: str) -> str | None:
    """Why `value` cannot be a text field's value (None when it can)."""
    if len(value) > MAX_FIELD_CHARS:
        return f"{name} is {len(value):,} characters long; the limit is {MAX_FIELD_CHARS:,}."
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        return (f"{name} contains U+{ord(value[e.start]):04X}, half of a UTF-16 surrogate pair, which is not a"
                " character: send the text as valid Unicode.")
    return None


def _number(block, value, name: str):
    """A Number/Slider payload -> a finite number inside the component's bounds (or UserError)."""
    if isinstance(value, str) and value.strip():
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{name} must be a number (an integer or a float), not {_kind(value)}.")
    if math.isnan(value) or math.isinf(value):
        raise UserError(f"{name} must be a finite number, not {'NaN' if math.isnan(value) else 'infinity'}.")
    lo, hi = getattr(block, "minimum", None), getattr(block, "maximum", None)
    if abs(value) > MAX_MAGNITUDE and (lo is None or value > lo) and (hi is None or value < hi):
        raise UserError(f"{name} must be between -{MAX_MAGNITUDE:.0e} and {MAX_MAGNITUDE:.0e} (got {value:g}).")
    lo, hi = -MAX_MAGNITUDE if lo is None else lo, MAX_MAGNITUDE if hi is None else hi
    if value < lo:
        raise UserError(f"{name} must be at least its minimum, {lo:g} (got {value:g}).")
    if value > hi:
        raise UserError(f"{name} must be at most its maximum, {hi:g} (got {value:g}).")
    return value


def _choices(block) -> list:
    return [v for _, v in (getattr(block, "choices", None) or [])]


def _one_of(values: list) -> str:
    if not values:
        return "left empty until the tab has run (it has nothing to choose from yet)"
    shown = [repr(v) for v in values[:8]]
    if len(values) > 8:
        return f"one of its {len(values)} choices ({', '.join(shown[:3])}, …)"
    return shown[0] if len(shown) == 1 else f"one of {', '.join(shown[:-1])} or {shown[-1]}"


def _list_of(values: list) -> str:
    return f"a list, each item {_one_of(values)}" if values else _one_of(values)


def _choice(block, value, name: str, custom: bool):
    if isinstance(value, str):
        why = bad_text(value, name)
        if why:
            raise UserError(why)
    if custom and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return value
    choices = _choices(block)
    if isinstance(value, (list, dict)) or value not in choices:
        raise UserError(f"{name} must be {_one_of(choices)}.")
    return value


def _upload(value, name: str):
    """A file payload must be a file uploaded to this server (gradio_client: handle_file(path))."""
    from gradio import processing_utils

    items = value if isinstance(value, list) else [value]
    for item in items:
        if item is None:
            continue
        path = item.get("path") if isinstance(item, dict) else None
        shown = os.path.basename(str(path or "").replace("\\", "/").rstrip("/")) or "the file"
        if not isinstance(path, str) or not path.strip():
            raise UserError(f"{name} must be an uploaded file (from Python: gradio_client.handle_file(path)).")
        if "://" in path or not os.path.isabs(path) or not _inside(path, processing_utils.get_upload_folder()):
            raise UserError(f"{name}: {shown} was not uploaded to this server; upload the file first (from Python:"
                            " gradio_client.handle_file(path)).")
    return value


def _inside(path: str, folder) -> bool:
    try:
        real, root = os.path.realpath(path), os.path.realpath(str(folder))
    except (OSError, ValueError):
        return False
    return os.path.commonpath([real, root]) == root


def check_input(block, value, start=None):
    """One input payload checked against its component before Gradio's preprocess -> the payload (a number sent
    as text becomes the number); UserError with one sentence naming the field's label otherwise.
    start: the component as the page starts (`block` may be this visitor's updated copy): a field that starts
    empty may be sent empty."""
    name = field_name(block)
    if value is None and getattr(start or block, "value", None) is None and not isinstance(block, gr.Slider):
        return None
    if isinstance(block, gr.Number) and (value is None or isinstance(value, str) and not value.strip()):
        return None  # a cleared number field: the handler decides (often "off" or its default)
    if isinstance(block, (gr.Slider, gr.Number)):
        return _number(block, value, name)
    if isinstance(block, gr.Checkbox):
        if not isinstance(value, bool):
            raise UserError(f"{name} must be true or false, not {_kind(value)}.")
        return value
    if isinstance(block, gr.CheckboxGroup):
        if value is None:
            return []
        if not isinstance(value, list):
            raise UserError(f"{name} must be {_list_of(_choices(block))}.")
        for v in value:
            _choice(block, v, name, False)
        return value
    if isinstance(block, (gr.Dropdown, gr.Radio)):
        if isinstance(block, gr.Dropdown) and block.multiselect:
            if value is None:
                return value
            if not isinstance(value, list):
                raise UserError(f"{name} must be {_list_of(_choices(block))}.")
            for v in value:
                _choice(block, v, name, block.allow_custom_value)
            return value
        if value is None and isinstance(block, gr.Dropdown):
            return None  # a cleared dropdown (Gradio's own None): the handler picks its default
        return _choice(block, value, name, isinstance(block, gr.Dropdown) and block.allow_custom_value)
    if isinstance(block, (gr.Textbox, gr.Code)):
        if value is None or isinstance(value, str):
            why = bad_text(value or "", name)
            if why:
                raise UserError(why)
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        raise UserError(f"{name} must be text, not {_kind(value)}.")
    if isinstance(block, (gr.File, gr.UploadButton)):
        return _upload(value, name)
    return value


def json_safe(value):
    """Integers beyond 64 bits become floats: the queue's JSON writer (orjson) cannot write them, and the event's
    stream would break without an answer (e.g. a parameter count of a model with 1e30 layers)."""
    if isinstance(value, int) and not isinstance(value, bool) and not -2 ** 63 <= value < 2 ** 64:
        return float(value)
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, tuple):
        return tuple(json_safe(v) for v in value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    return value


def plain_errors(demo: gr.Blocks) -> gr.Blocks:
    """Install the one place that turns every bad input into one plain sentence, for the page and the API:

    * each event's inputs are checked against their components (check_input) before Gradio preprocesses them,
      with the per-session copy of a component a handler updated;
    * too few inputs, Gradio's own preprocess errors and any exception a handler did not expect become one
      sentence (the traceback is still printed on the server);
    * every message is one line and names no server path;
    * outputs hold no integer the queue's JSON writer cannot write (json_safe)."""
    from gradio.exceptions import Error

    original_pre, original_api = demo.preprocess_data, demo.process_api

    async def preprocess_data(block_fn, inputs, state, *args, **kwargs):
        if len(inputs) < len(block_fn.inputs):
            raise Error(f"This action takes {len(block_fn.inputs)} inputs; {len(inputs)} were sent.",
                        print_exception=False)
        props = set(getattr(block_fn, "component_prop_inputs", None) or [])
        inputs = list(inputs)
        for i, block in enumerate(block_fn.inputs):
            if i in props or getattr(block, "stateful", False):
                continue
            start = block
            if state is not None and block._id in state:
                block = state[block._id]
            try:
                inputs[i] = check_input(block, inputs[i], start)
            except UserError as e:
                raise Error(str(e), print_exception=False) from None
        try:
            return await original_pre(block_fn, inputs, state, *args, **kwargs)
        except Error:
            raise
        except Exception:  # noqa: BLE001 - Gradio's own wording names handlers and components
            raise Error("One of the values sent does not fit its field: check the inputs and try again.",
                        print_exception=False) from None

    async def process_api(*args, **kwargs):
        try:
            out = await original_api(*args, **kwargs)
            if isinstance(out, dict) and "data" in out:
                out["data"] = json_safe(out["data"])
            return out
        except Error as e:
            e.message = plain_message(e.message)
            raise
        except Exception:  # noqa: BLE001 - never the exception's text: it names code and server paths
            traceback.print_exc()
            raise Error(UNEXPECTED, print_exception=False) from None

    demo.preprocess_data = preprocess_data  # instance attributes: Gradio calls self.preprocess_data(...)
    demo.process_api = process_api
    return demo
