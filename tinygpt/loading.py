"""load_model: GPT-2 from the Hugging Face Hub cache, a local checkpoint directory, or the embedded model.

If the Hub cannot be reached within a few seconds, asking for a GPT-2 gives the embedded default model
instead, and `model.info.fallback` / `model.info.notice` say so (the UI shows that notice as a banner).

fp32 models take the oneDNN inference path for their nn.Linear layers (tinygpt/kernels.py): checked
once here against F.linear, silently left on the standard path when oneDNN is missing or disagrees.
`model.info.fast_path` holds that check's report. TINYGPT_FASTPATH=0 turns it off, =packed picks packed weights.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import INDEX, WEIGHTS, load_checkpoint
from .device import pick_device
from .hf_config import download_config_json
from .kernels import enable_fast_inference

EMBEDDED_NAME = "tiny-shakespeare"
HUB_MODELS = {  # names users type -> Hub repository
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
}


@dataclass
class ModelInfo:
    name: str  # the name load_model accepts for the model actually loaded
    requested: str  # what was asked for
    fallback: bool  # True when the Hub was unreachable and the embedded model stands in
    notice: str  # one sentence for a banner ("" when there is nothing to say)
    fast_path: dict = field(default_factory=dict)  # enable_fast_inference's report ({} when not attempted)
    device: str = "cpu"  # where the weights live ("cpu", "cuda:0", "mps")


def embedded_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "assets" / EMBEDDED_NAME


def _hub_weights(repo: str, cache_dir=None, local_only: bool = False) -> str:
    """Directory holding config.json and the weights (model.safetensors, or an index and its shards)."""
    from huggingface_hub import hf_hub_download

    def get(name):
        return hf_hub_download(repo, name, local_files_only=local_only, cache_dir=cache_dir)

    get("config.json")
    try:
        return os.path.dirname(get(WEIGHTS))
    except Exception as single_error:  # noqa: BLE001 - a sharded repository has an index instead
        try:
            index = get(INDEX)
        except Exception:  # noqa: BLE001
            raise single_error from None
        with open(index) as f:
            for name in sorted(set(json.load(f)["weight_map"].values())):
                get(name)
        return os.path.dirname(index)


def hub_snapshot(repo: str, timeout: float, cache_dir=None) -> str:
    """Directory with config.json + the weights from the HF cache, downloading if needed.

    The first small file is fetched under `timeout` seconds in a worker thread (a dead network can
    otherwise hang for minutes); once it arrives the network works and the weights are fetched.
    """
    try:  # already cached: no network at all
        return _hub_weights(repo, cache_dir, local_only=True)
    except Exception:  # noqa: BLE001 - not (fully) cached: download below
        pass
    path, err = download_config_json(repo, timeout, cache_dir)
    if path is None:
        why = type(err).__name__ if err else "timed out"
        raise ConnectionError(f"the Hugging Face Hub could not be reached ({why})")
    return _hub_weights(repo, cache_dir)


def fast_path_setting(fast_path: bool | str | None = None) -> str | None:
    """"dense", "packed" or None (standard path): the argument if given, else TINYGPT_FASTPATH (default dense)."""
    if fast_path is None:
        fast_path = os.environ.get("TINYGPT_FASTPATH", "dense")
    if isinstance(fast_path, str):
        value = fast_path.strip().lower()
        if value in ("0", "off", "false", "no", "standard", ""):
            return None
        return "packed" if value == "packed" else "dense"
    return "dense" if fast_path else None


def load_model(name_or_path: str = "gpt2", dtype: torch.dtype = torch.float32, hub_timeout: float = 5.0,
               allow_fallback: bool = True, hub_cache_dir=None, fast_path: bool | str | None = None,
               device: str | torch.device | None = None):
    """Return (model, tokenizer). The model is in eval mode; `model.info` is a ModelInfo.

    name_or_path: "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl" (Hub), "tiny-shakespeare" (embedded),
    or a directory with config.json + model.safetensors (transformers' save_pretrained or ours).
    hub_cache_dir: the Hugging Face cache to use (None = the standard one, HF_HUB_CACHE).
    fast_path: fp32 on the CPU only: None = TINYGPT_FASTPATH (on unless "0"), True/"dense", "packed", or False.
    device: where the weights go (tinygpt.device.pick_device: None = TINYGPT_DEVICE, else auto).
    """
    device = pick_device(device)
    name = str(name_or_path).strip()
    key = name.lower().removeprefix("openai-community/")
    notice, fallback, loaded_name = "", False, name
    if key == EMBEDDED_NAME:
        path, loaded_name = str(embedded_dir()), EMBEDDED_NAME
        if not os.path.exists(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"The embedded model is missing from {path}.")
    elif os.path.isdir(name):
        path = name
    elif key in HUB_MODELS:
        try:
            path, loaded_name = hub_snapshot(HUB_MODELS[key], hub_timeout, hub_cache_dir), key
        except Exception as e:
            if not allow_fallback:
                raise
            path, loaded_name, fallback = str(embedded_dir()), EMBEDDED_NAME, True
            notice = (f"Offline: {key} could not be downloaded ({e}), so the embedded {EMBEDDED_NAME} model is used"
                      " instead.")
    else:
        raise ValueError(f"Unknown model {name!r}: use one of {', '.join([*HUB_MODELS, EMBEDDED_NAME])} "
                         f"or a checkpoint directory.")
    model, tokenizer = load_checkpoint(path, dtype=dtype)
    for p in model.parameters():
        p.requires_grad_(False)  # shared models are read-only; training code re-enables on its own copy
    if fallback:
        c = model.config
        notice += f" It has {c.n_layer} layers, d_model {c.n_embd}, and was trained on Tiny Shakespeare only."
    if device.type != "cpu":
        model.to(device)
    model.info = ModelInfo(name=loaded_name, requested=name, fallback=fallback, notice=notice, device=str(device))
    setting = fast_path_setting(fast_path)
    if setting and dtype == torch.float32 and device.type == "cpu":  # oneDNN is a CPU library
        # under grad (training) FastLinear still calls F.linear, so copies of this model train as usual
        model.info.fast_path = enable_fast_inference(model, packed=setting == "packed")
    return model, tokenizer


class ModelCache:
    """Loads each (name, dtype) once and hands out the same read-only model to every caller.

    device: where every model of this cache lives (None = TINYGPT_DEVICE, else auto: CUDA, MPS, CPU)."""

    def __init__(self, hub_timeout: float = 5.0, device: str | torch.device | None = None):
        self.hub_timeout = hub_timeout
        self.device = pick_device(device)
        self._models: dict = {}
        self._lock = threading.Lock()

    def get(self, name: str, dtype: torch.dtype = torch.float32):
        key = (name, dtype)
        with self._lock:
            if key not in self._models:
                self._models[key] = load_model(name, dtype=dtype, hub_timeout=self.hub_timeout, device=self.device)
            return self._models[key]
