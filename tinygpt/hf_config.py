"""A Hugging Face `config.json` -> GPTConfig for the calculator: GPT-2, LLaMA, Mistral, Qwen2, Gemma, Mixtral.

Only the fields that fix the parameter count and the KV cache are read. For every family the count of the
resulting GPTConfig equals `sum(p.numel())` of the transformers model built from the same config.json
(tests/test_hf_config.py builds them on the meta device, tiny and full size). A config we cannot count
exactly is refused with one sentence naming the field or the architecture, never answered with a wrong number.

    from_hf_config(d)          dict from config.json -> GPTConfig (ValueError naming what is missing)
    hf_config_notes(d)         what the numbers leave out for this config (sliding window, ...)
    load_config_json(path)     a config.json file (or a directory holding one) -> dict
    parse_config_json(text)    pasted JSON text -> dict
    fetch_hub_config(hub_id)   only config.json of a Hub model (no weights), through the Hugging Face cache
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading

from .config import GPTConfig

FAMILIES = ("gpt2", "llama", "mistral", "qwen2", "gemma", "mixtral")
ARCHITECTURES = {"GPT2LMHeadModel": "gpt2", "LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral",
                 "Qwen2ForCausalLM": "qwen2", "GemmaForCausalLM": "gemma", "MixtralForCausalLM": "mixtral"}
# Close relatives whose blocks hold tensors tinygpt's options do not have: refused with the reason.
NOT_COUNTED = {"gemma2": "four norms per block", "gemma3": "four norms per block and q/k norms",
               "gemma3_text": "four norms per block and q/k norms", "qwen3": "q/k norms in every attention layer",
               "qwen3_moe": "q/k norms", "qwen2_moe": "shared experts", "olmo2": "q/k norms"}
# transformers' own default for tie_word_embeddings when config.json leaves it out
TIED_BY_DEFAULT = {"gpt2": True, "llama": False, "mistral": False, "qwen2": False, "gemma": True, "mixtral": False}
MAX_JSON_BYTES = 1_000_000  # a config.json is a few kB; refuse pastes and uploads beyond this
MAX_JSON_DEPTH = 32  # a config.json nests 3 or 4 levels; Python's json parser fails ~1,000 levels deep
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[\w.-]{1,96})?")


def hf_family(d: dict) -> str:
    """The supported family of a config.json dict (from model_type, else architectures), or ValueError."""
    if not isinstance(d, dict):
        raise ValueError("config.json must be a JSON object ({...}) with the model's fields.")
    model_type = d.get("model_type")
    if model_type is None:
        archs = d.get("architectures") or []
        archs = archs if isinstance(archs, list) else [archs]
        known = [ARCHITECTURES[a] for a in archs if a in ARCHITECTURES]
        if known:
            return known[0]
        if archs:
            raise ValueError(f"Unsupported architecture {archs[0]!r}: the calculator reads "
                             f"{', '.join(ARCHITECTURES)} configs.")
        raise ValueError("config.json has no model_type or architectures field, so its architecture is unknown.")
    if model_type in NOT_COUNTED:
        raise ValueError(f"Unsupported architecture {model_type!r}: its blocks have {NOT_COUNTED[model_type]}, "
                         "which this calculator does not count.")
    if model_type not in FAMILIES:
        raise ValueError(f"Unsupported architecture {model_type!r}: the calculator reads "
                         f"{', '.join(FAMILIES)} configs.")
    return model_type


def _get(d: dict, name: str, aliases: tuple = ()):
    for key in (name, *aliases):
        if d.get(key) is not None:
            return d[key]
    return None


def _positive(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"config.json field {name} must be a positive whole number (got {value!r}).")
    return value


def _required(d: dict, family: str, name: str, aliases: tuple = ()) -> int:
    value = _get(d, name, aliases)
    if value is None:
        raise ValueError(f"config.json ({family}) is missing the field {name}, which the count needs.")
    return _positive(value, name)


def _optional(d: dict, name: str, default):
    value = d.get(name)
    return default if value is None else _positive(value, name)


def _flag(d: dict, name: str, default: bool) -> bool:
    value = d.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValueError(f"config.json field {name} must be true or false (got {value!r}).")
    return value


def _gpt2(d: dict) -> GPTConfig:
    sizes = dict(n_embd=_required(d, "gpt2", "n_embd", ("hidden_size",)),
                 n_layer=_required(d, "gpt2", "n_layer", ("num_hidden_layers",)),
                 n_head=_required(d, "gpt2", "n_head", ("num_attention_heads",)),
                 vocab_size=_required(d, "gpt2", "vocab_size"),
                 block_size=_required(d, "gpt2", "n_positions", ("max_position_embeddings",)))
    if d.get("tinygpt"):  # a tinygpt checkpoint: our own options ride along under "tinygpt"
        return GPTConfig.from_hf_dict({**d, **{k: v for k, v in sizes.items() if k != "block_size"},
                                       "n_positions": sizes["block_size"]})
    if d.get("add_cross_attention"):
        raise ValueError("config.json sets add_cross_attention (an encoder-decoder GPT-2), whose cross-attention "
                         "layers this calculator does not count.")
    return GPTConfig(**sizes, n_inner=_optional(d, "n_inner", None),
                     tie_weights=_flag(d, "tie_word_embeddings", True),
                     layer_norm_epsilon=float(d.get("layer_norm_epsilon") or 1e-5))


def _rope_base(d: dict) -> float:
    base = d.get("rope_theta") or (d.get("rope_parameters") or {}).get("rope_theta")
    return float(base) if isinstance(base, (int, float)) and base > 1 else 10000.0


def _llama_like(d: dict, family: str) -> GPTConfig:
    hidden = _required(d, family, "hidden_size")
    n_head = _required(d, family, "num_attention_heads")
    head_dim = _optional(d, "head_dim", None)
    if head_dim is None:
        if family == "gemma":  # transformers' Gemma default is 256, not hidden / heads: insist on the field
            raise ValueError("config.json (gemma) is missing the field head_dim, which the count needs.")
        if hidden % n_head:
            raise ValueError(f"hidden_size ({hidden}) is not divisible by num_attention_heads ({n_head}), so "
                             "config.json must give head_dim.")
        head_dim = hidden // n_head
    # LLaMA's default is one KV head per query head; the others default to a fixed number (Mistral 8, Qwen2 32,
    # Gemma 16) that no real config relies on, so for them the field is required
    n_kv_head = (_optional(d, "num_key_value_heads", n_head) if family == "llama"
                 else _required(d, family, "num_key_value_heads"))
    attention_bias = _flag(d, "attention_bias", False) if family in ("llama", "gemma") else False
    mlp_bias = _flag(d, "mlp_bias", False) if family == "llama" else False
    if attention_bias != mlp_bias:  # tinygpt's `bias` puts a bias on o_proj and on the MLP together
        raise ValueError(f"config.json sets attention_bias={str(attention_bias).lower()} with "
                         f"mlp_bias={str(mlp_bias).lower()}: biases on o_proj but not on the MLP (or the reverse) "
                         "are not counted by this calculator.")
    experts = {}
    if family == "mixtral":
        experts = dict(n_experts=_required(d, family, "num_local_experts"),
                       moe_top_k=_required(d, family, "num_experts_per_tok"))
    return GPTConfig(
        vocab_size=_required(d, family, "vocab_size"), block_size=_required(d, family, "max_position_embeddings"),
        n_layer=_required(d, family, "num_hidden_layers"), n_head=n_head, n_embd=hidden,
        n_kv_head=n_kv_head,
        head_size=None if head_dim * n_head == hidden else head_dim,
        n_inner=_required(d, family, "intermediate_size"), bias=attention_bias,
        qkv_bias=True if family == "qwen2" else None,  # Qwen2: biases on q, k, v only (hard-coded in transformers)
        tie_weights=_flag(d, "tie_word_embeddings", TIED_BY_DEFAULT[family]),
        mlp="gated", norm="rmsnorm", pos_encoding="rope", rope_base=_rope_base(d),
        layer_norm_epsilon=float(d.get("rms_norm_eps") or 1e-6), **experts)


def from_hf_config(d: dict) -> GPTConfig:
    """GPTConfig with the same parameter count and KV cache as the transformers model of this config.json.

    Missing shape fields, unknown architectures and options tinygpt cannot count raise ValueError naming them.
    Optional fields take transformers' own defaults (LLaMA's num_key_value_heads = num_attention_heads, head_dim =
    hidden_size / num_attention_heads except for Gemma, tie_word_embeddings per family, no biases)."""
    family = hf_family(d)
    try:
        return _gpt2(d) if family == "gpt2" else _llama_like(d, family)
    except TypeError as e:  # a field of the wrong JSON type deep inside GPTConfig
        raise ValueError(f"config.json has a field of the wrong type ({e}).") from None


def hf_config_notes(d: dict) -> list[str]:
    """Plain sentences on what the calculator's numbers leave out or treat as equivalent for this config."""
    family = hf_family(d)
    notes = []
    if family == "gemma":
        notes.append("Gemma's MLP is gated GELU (GeGLU) and its RMSNorm scales by 1 + weight: the same parameter "
                     "count as tinygpt's gated SiLU MLP and RMSNorm.")
    window = d.get("sliding_window")
    if family in ("mistral", "mixtral", "qwen2") and isinstance(window, int) and d.get("use_sliding_window", True):
        notes.append(f"sliding_window = {window:,}: a rolling KV cache keeps at most {window:,} positions per layer;"
                     " the KV cache shown keeps every position of the sequence.")
    if d.get("quantization_config"):
        notes.append("The Hub weights are quantized (quantization_config): memory here uses the dtype you choose.")
    return notes


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Do the arrays and objects of a JSON text nest more than `limit` levels deep? Counted without parsing it
    (brackets inside strings do not count), stopping at the first level past the limit."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for ch in _NOT_BRACKET.sub("", _JSON_STRING.sub('""', text)):
        depth = depth + 1 if ch in "[{" else max(depth - 1, 0)
        if depth > limit:
            return True
    return False


def parse_config_json(text: str, name: str = "config.json") -> dict:
    """A pasted config.json -> dict, with one sentence for empty, oversized, too deeply nested or invalid JSON
    (all refused before the text is parsed)."""
    text = "" if text is None else str(text)
    if not text.strip():
        raise ValueError("Paste the text of a config.json first.")
    size = len(text.encode("utf-8", "replace"))
    if size > MAX_JSON_BYTES:
        raise ValueError(f"{name} is {size:,} bytes, over the {MAX_JSON_BYTES:,}-byte limit for a config.json.")
    if json_too_deep(text):
        raise ValueError(f"{name} nests arrays or objects more than {MAX_JSON_DEPTH} levels deep, the limit here (a "
                         "config.json uses 3 or 4).")
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{name} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}).") from None
    except (RecursionError, ValueError):  # a number too long for Python's int() (nesting was checked above)
        raise ValueError(f"{name} cannot be read as JSON: it holds a number thousands of digits long.") from None
    if not isinstance(d, dict):
        raise ValueError("config.json must be a JSON object ({...}) with the model's fields.")
    return d


def load_config_json(path) -> dict:
    """A config.json file, or a directory holding one (a checkpoint or Hub snapshot), -> dict."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No config.json at {path}.")
    name, size = os.path.basename(path), os.path.getsize(path)
    if size > MAX_JSON_BYTES:  # refused from its size, before it is read
        raise ValueError(f"{name} is {size:,} bytes, over the {MAX_JSON_BYTES:,}-byte limit for a config.json.")
    with open(path, "rb") as f:
        raw = f.read(MAX_JSON_BYTES + 1)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{name} is not UTF-8 text, so it is not a config.json.") from None
    if not text.strip():
        raise ValueError(f"{name} is empty: a config.json holds the model's fields.")
    return parse_config_json(text, name)


def _hub_error(hub_id: str, err) -> str:
    names = {c.__name__ for c in type(err).__mro__} if err is not None else set()
    if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled"}:  # no network, and not in the cache
        names = set()
    if "GatedRepoError" in names:
        return (f"{hub_id} is gated on the Hugging Face Hub (accept its licence and log in), so give its config.json"
                " file instead.")
    if "RepositoryNotFoundError" in names:
        return f"No model {hub_id} on the Hugging Face Hub (or it is private): check the id."
    if names & {"EntryNotFoundError", "RemoteEntryNotFoundError"}:
        return f"{hub_id} has no config.json on the Hugging Face Hub."
    why = type(err).__name__ if err is not None else "timed out"
    return (f"Offline: the config.json of {hub_id} could not be fetched from the Hugging Face Hub ({why}); give its"
            " config.json file instead.")


def download_config_json(repo: str, timeout: float, cache_dir=None):
    """Download repo's config.json into the Hugging Face cache -> (path, None), or (None, the error; None when
    `timeout` seconds passed). A worker thread does it: a dead network can otherwise hang for minutes. Also how
    loading.hub_snapshot learns that the network works before it fetches the weights."""
    from huggingface_hub import hf_hub_download

    # huggingface_hub logs every retry of an unreachable host as a warning; callers report the outcome in one
    # sentence instead (a banner in the UI, one stderr line on the command line)
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    result: dict = {}

    def fetch():
        try:
            result["path"] = hf_hub_download(repo, "config.json", etag_timeout=timeout, cache_dir=cache_dir)
        except Exception as e:  # noqa: BLE001 - offline, DNS failure, gated, not found, ...
            result["error"] = e

    t = threading.Thread(target=fetch, daemon=True)
    t.start()
    t.join(timeout)
    return result.get("path"), result.get("error")


def fetch_hub_config(hub_id: str, timeout: float = 10.0, cache_dir=None) -> dict:
    """config.json of a Hub model (and nothing else: no weights) -> dict, from the Hugging Face cache when it
    is there, else downloaded into it under `timeout` seconds (in a worker thread, since a dead network can
    otherwise hang for minutes). Unreachable Hub -> ConnectionError with one sentence; bad id -> ValueError."""
    from huggingface_hub import hf_hub_download

    hub_id = str(hub_id or "").strip().strip("/")
    if not HUB_ID.fullmatch(hub_id) or ".." in hub_id:
        raise ValueError(f"A Hub id looks like org/name, e.g. mistralai/Mistral-7B-v0.1 (got {hub_id!r}).")
    try:  # already cached: no network at all
        return load_config_json(hf_hub_download(hub_id, "config.json", local_files_only=True, cache_dir=cache_dir))
    except Exception:  # noqa: BLE001 - not cached (or unreadable): download below
        pass
    path, err = download_config_json(hub_id, timeout, cache_dir)
    if path is None:
        message = _hub_error(hub_id, err)
        if message.startswith("Offline"):
            raise ConnectionError(message)
        raise ValueError(message)
    return load_config_json(path)
