"""Checking what a user sends, and saying what is wrong in one plain sentence: UserError and the handlers'
decorator (user_errors), the prompt and sampling-knob checks, whole numbers and floats parsed and capped, and
plain_errors: every event's inputs checked against their components before Gradio sees them, every message one line
without a server path.

tabs.kit.common re-exports the public names, so a tab's `from .kit.common import clamp_int` keeps working.
"""
from __future__ import annotations

import functools
import inspect
import math
import os
import re
import traceback
from dataclasses import dataclass

import gradio as gr


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


# ---- numbers ---------------------------------------------------------------------------------------
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
