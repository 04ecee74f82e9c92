"""The calculator's form and event handlers: the presets the box offers, a form's values <-> GPTConfig
(make_config, form_values), which preset a form holds (matching_preset), one form's report (calculate:
tinygpt.compute.estimate), and the handlers: Calculate (on_params, on_view, kv_hide), the preset box, a Hugging
Face config.json (Hub id, upload or paste) filling the form, and a link or course-map row opening the tab."""
from __future__ import annotations

import math
from functools import lru_cache

import gradio as gr

from tinygpt import GPTConfig, count_parameters
from tinygpt.compute import estimate
from tinygpt.hf_config import from_hf_config, hf_config_notes, hf_family, load_config_json, parse_config_json

from tinygpt.defaults import PARAMS

from ..kit.common import UserError, human, parse_float, user_errors
from .figures import kv_frame, kv_lines, kv_plot, memory_frame, shown_labels
from .tables import breakdown_rows, config_markdown, exercise_answers, json_safe

PRESET_TITLES = [
    ("GPT-2 small", "gpt2"), ("GPT-2 medium", "gpt2-medium"), ("GPT-2 large", "gpt2-large"), ("GPT-2 XL", "gpt2-xl"),
    ("GPT-3 Small", "gpt3-small"), ("GPT-3 Medium", "gpt3-medium"), ("GPT-3 Large", "gpt3-large"),
    ("GPT-3 XL (Table 2.1: 24 heads × 128 = 3072-wide attention; labelled 1.3B)", "gpt3-xl"),
    ("GPT-3 2.7B", "gpt3-2.7b"), ("GPT-3 6.7B", "gpt3-6.7b"), ("GPT-3 13B (d 5140, 40 heads × 128)", "gpt3-13b"),
    ("GPT-3 175B", "gpt3"), ("LLaMA-7B", "llama-7b"), ("Mistral-7B (GQA: 8 KV heads)", "mistral-7b"),
    ("Llama-3-8B shape", "llama3-8b"), ("Mixtral-8x7B (MoE, top-2 of 8)", "mixtral-8x7b"),
    ("Embedded model (tiny-shakespeare)", "tiny-shakespeare"),
]
QKV_BIAS = {None: "auto", True: "on", False: "off"}  # the form's radio values for GPTConfig.qkv_bias
ARCH_DEFAULTS = (0, "gelu", "layernorm", "learned", "auto", 0, 1)  # GPT-2: what an older API call leaves out


def preset_label(title: str, name: str) -> str:
    """Dropdown label with the preset's computed size (total and active for a Mixture-of-Experts)."""
    c = count_parameters(GPTConfig.from_preset(name))
    size = human(c["total"]) if c["active"] == c["total"] else f"{human(c['total'])} total, {human(c['active'])} active"
    return f"{title} — {size}"


CUSTOM = "custom"  # the preset box's value when the fields hold no preset's shape (a link, a config.json, edits)
PRESET_CHOICES = [(preset_label(t, n), n) for t, n in PRESET_TITLES] + [("Custom shape (the fields below)", CUSTOM)]


def whole(value, name: str) -> int:
    """A whole number from a gr.Number (which may hand over 12.0); sign and size are checked by the config."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number.") from None
    if not math.isfinite(v) or not v.is_integer():
        raise UserError(f"{name} must be a whole number (got {value!r}).")
    return int(v)


def form_values(c: GPTConfig) -> tuple:
    """The form's values for a config: n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied,
    FFN multiplier, sequence length (the full context), then the architecture options: head_dim (0 = n_embd /
    n_head; a browser's empty number box sends 0), mlp, norm, pos_encoding, q/k/v biases ("auto" / "on" / "off"),
    n_experts, moe_top_k."""
    return (c.n_layer, c.n_embd, c.n_head, c.kv_heads, c.block_size, c.vocab_size, c.bias, c.tie_weights,
            c.ffn_dim / c.n_embd, c.block_size, c.head_size or 0, c.mlp, c.norm, c.pos_encoding, QKV_BIAS[c.qkv_bias],
            c.n_experts, c.moe_top_k)


def preset_values(name: str) -> tuple:
    """form_values of a preset (a cleared dropdown gives None: reported as unknown)."""
    return form_values(GPTConfig.from_preset(str(name or "")))


def shape_key(values: tuple) -> tuple:
    """The part of form_values that is the model's shape (everything but the sequence length, index 9)."""
    return tuple(values[:9]) + tuple(values[10:])


@lru_cache(maxsize=1)
def preset_shapes() -> dict:
    """shape_key -> preset name, for every preset the box offers (the first name wins for equal shapes)."""
    out: dict = {}
    for _, name in PRESET_TITLES:
        out.setdefault(shape_key(preset_values(name)), name)
    return out


def matching_preset(n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult, seq_len=None,
                    *arch) -> str:
    """The preset whose shape the form holds (form order, as preset_values), or CUSTOM; an invalid form is CUSTOM
    too (the summary says what is wrong)."""
    try:
        cfg = make_config(n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult, *arch)
        cfg.validate()
    except (ValueError, TypeError):
        return CUSTOM
    return preset_shapes().get(shape_key(form_values(cfg)), CUSTOM)


def make_config(n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult,
                head_dim=None, mlp="gelu", norm="layernorm", pos_encoding="learned", qkv_bias="auto", n_experts=0,
                moe_top_k=1) -> GPTConfig:
    """GPTConfig from the form; GPTConfig.validate() supplies the plain sentence for impossible shapes."""
    mult = parse_float(ffn_mult, "FFN width multiplier")
    if mult <= 0:
        raise UserError("FFN width multiplier must be above 0 (4 is GPT-2's).")
    if qkv_bias not in ("auto", "on", "off", None):
        raise UserError(f"q/k/v biases must be auto, on or off (got {qkv_bias!r}).")
    d = whole(n_embd, "n_embd")
    head_size = None if head_dim in (None, "") else whole(head_dim, "head_dim")
    if head_size is not None and head_size < 0:
        raise UserError(f"head_dim must be a positive whole number, or 0 for n_embd / n_head (got {head_dim!r}).")
    head_size = head_size or None  # 0 (or empty) = n_embd / n_head, as in GPT-2
    n_experts = 0 if n_experts in (None, "") else whole(n_experts, "n_experts")
    return GPTConfig(n_layer=whole(n_layer, "n_layer"), n_embd=d, n_head=whole(n_head, "n_head"),
                     n_kv_head=None if n_kv_head in (None, "") else whole(n_kv_head, "n_kv_head"),
                     block_size=whole(block_size, "block_size"), vocab_size=whole(vocab_size, "vocab_size"),
                     n_inner=round(mult * d), bias=bool(bias), tie_weights=bool(tied),
                     head_size=head_size,
                     mlp=mlp or "gelu", norm=norm or "layernorm", pos_encoding=pos_encoding or "learned",
                     qkv_bias={"on": True, "off": False}.get(qkv_bias), n_experts=n_experts,
                     moe_top_k=whole(moe_top_k, "moe_top_k") if n_experts else 1)


def calculate(n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult,
              dtype, optimizer, batch_size, seq_len, tokens, tflops, mfu, *arch):
    """(config, report dict); arch = head_dim, mlp, norm, pos_encoding, qkv_bias, n_experts, moe_top_k.
    Raises ValueError (incl. UserError) with a plain message."""
    cfg = make_config(n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult, *arch)
    seq = cfg.block_size if seq_len in (None, "") else whole(seq_len, "Sequence length")
    report = estimate(cfg, batch_size=whole(batch_size, "Batch size"), seq_len=seq, dtype=dtype,
                      optimizer=optimizer, tokens=whole(tokens, "Training tokens D"),
                      tflops=parse_float(tflops, "Peak TFLOPS"), mfu=parse_float(mfu, "Utilisation (MFU)"))
    return cfg, report


def kv_hide(current, *inputs):
    """Before a calculation: hide the KV chart when this shape's legend differs from the one drawn (kv_plot then
    shows it, drawn afresh); otherwise leave it (no flicker)."""
    try:
        cfg = make_config(*inputs[:9], *inputs[16:])
        cfg.validate()
    except (ValueError, TypeError):
        return gr.skip()
    new = [label for label, _ in kv_lines(cfg)]
    return gr.skip() if shown_labels(current) == new else gr.update(visible=False)


# ---- handlers ------------------------------------------------------------------------------------------
@user_errors
def on_preset(name):
    """Fill the form with a preset's fields (form_values order), and say where they came from. 'custom' keeps the
    fields as they are."""
    if name == CUSTOM:
        return (*[gr.skip()] * len(preset_values(PARAMS["preset"])),
                "A custom shape: type the fields, then press Calculate.")
    return (*preset_values(name), f"Preset **{name}** (sources in tinygpt/config.py).")


def config_status(d: dict, where: str) -> str:
    cfg = from_hf_config(d)
    notes = "".join(f"\n* {n}" for n in hf_config_notes(d))
    return (f"Read the config.json of **{where}** ({hf_family(d)}): {human(count_parameters(cfg)['total'])}"
            f" parameters. The form now holds its shape; press Calculate after changing it.{notes}")


def config_values(d: dict, where: str) -> tuple:
    """form_values of a config.json dict, then a status line (ValueError naming a missing field)."""
    return (*form_values(from_hf_config(d)), config_status(d, where))


@user_errors
def on_config_json(text, file=None):
    """Fill the form from an uploaded config.json (file path) or, without one, the pasted JSON text."""
    if file:
        return config_values(load_config_json(file), "the uploaded file")
    return config_values(parse_config_json(text), "the pasted text")


@user_errors
def on_hub_id(fetch, hub_id):
    """Fill the form from a Hub model's config.json (only that file is downloaded; fetch = fetch_hub_config)."""
    try:
        d = fetch(str(hub_id or "").strip())
    except ConnectionError as e:  # offline: one sentence, not a traceback
        raise UserError(str(e)) from None
    return config_values(d, str(hub_id).strip())


@user_errors
def on_params(n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult,
              dtype, optimizer, batch_size, seq_len, tokens, tflops, mfu, head_dim=None, mlp="gelu",
              norm="layernorm", pos_encoding="learned", qkv_bias="auto", n_experts=0, moe_top_k=1):
    """(summary markdown, breakdown rows, memory table, KV table, report dict); nothing is allocated.
    The architecture options come last (an older call with the first 16 inputs gets GPT-2's)."""
    cfg, r = calculate(n_layer, n_embd, n_head, n_kv_head, block_size, vocab_size, bias, tied, ffn_mult,
                       dtype, optimizer, batch_size, seq_len, tokens, tflops, mfu,
                       head_dim, mlp, norm, pos_encoding, qkv_bias, n_experts, moe_top_k)
    md = config_markdown(cfg, r) + "\n\n" + exercise_answers()
    return md, breakdown_rows(cfg, r), memory_frame(r), kv_frame(cfg, r), json_safe(r)


def on_view(*inputs):
    """on_params for the page: the same five outputs, the KV-cache chart as an update that redraws it for this
    shape's legend (kv_plot)."""
    md, rows, mem, kv, js = on_params(*inputs)
    return md, rows, mem, kv_plot(kv), js


def form_of(inputs: list) -> tuple:
    """The form's values (preset_values order) out of on_params' inputs."""
    shape, run, arch = inputs[:9], inputs[9:16], inputs[16:]
    return (*shape, run[3], *arch)


def on_preset_name(*form):
    """The preset box names the shape the fields hold (or 'custom'); it never refills the fields."""
    return matching_preset(*form)


def on_link_view(*inputs):
    """After a link or the course map filled the form: the results, the preset box naming the shape, and where
    the shape came from. The KV chart was hidden by the link (register(remount=...)): it is shown again, also
    when the link's shape is invalid (the summary then says why)."""
    name = matching_preset(*form_of(inputs))
    source = (f"Preset **{name}** (sources in tinygpt/config.py), from the link." if name != CUSTOM else
              "A custom shape, from the link (no preset has exactly these fields).")
    try:
        return (*on_view(*inputs), name, source)
    except gr.Error as e:
        return (f"**{e.message}**", gr.skip(), gr.skip(), gr.update(visible=True), gr.skip(), name, source)
