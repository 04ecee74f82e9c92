"""Checkpoints in Hugging Face GPT-2 format: `config.json` + `model.safetensors` (+ `tokenizer.json`).

GPT-2's checkpoint stores its Linear layers as `Conv1D`, i.e. weights of shape (in, out): those four kinds
of matrices are transposed on the way in and out. Everything else is copied as it is, with shape asserts.
Loading copies one tensor at a time from a memory-mapped file into a model built on the meta device, so
there is never a second full copy of the weights in memory.
"""
from __future__ import annotations

import json
import os
from typing import Optional

import torch

from .config import GPTConfig
from .model import GPT
from .tokenizer import gpt2_tokenizer, tokenizer_from_dict

# HF stores these as Conv1D (in, out); nn.Linear wants (out, in)
TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Buffers in old HF checkpoints that are not parameters
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def save_checkpoint(model: GPT, tokenizer, out_dir: str, dtype: Optional[torch.dtype] = None,
                    extra: Optional[dict] = None) -> None:
    """Write config.json, model.safetensors (HF key names and layouts) and tokenizer.json."""
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    tensors = {}
    for k, v in model.state_dict().items():
        if model.config.tie_weights and k == "lm_head.weight":
            continue  # tied: stored once, as wte (as save_pretrained does)
        t = v.detach()
        if k.endswith(TRANSPOSED):
            t = t.t()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[k] = t.contiguous().clone()  # our names are HF's: transformer.h.0.ln_1.weight, ...
    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    cfg = model.config.to_hf_dict()
    if extra:
        cfg["tinygpt"].update(extra)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(out_dir, "tokenizer.json"), "w") as f:
        json.dump(tokenizer.to_dict(), f)


def read_config(path: str) -> GPTConfig:
    with open(os.path.join(path, "config.json")) as f:
        return GPTConfig.from_hf_dict(json.load(f))


def load_checkpoint(path: str, dtype: torch.dtype = torch.float32):
    """Load a directory written by save_checkpoint or transformers' save_pretrained -> (model, tokenizer)."""
    from safetensors import safe_open

    config = read_config(path)
    weights = os.path.join(path, "model.safetensors")
    if not os.path.exists(weights):
        raise FileNotFoundError(f"{path} has no model.safetensors (only safetensors checkpoints are loaded).")
    with torch.device("meta"):
        model = GPT(config)
    model = model.to_empty(device="cpu").to(dtype)
    if config.tie_weights:
        model.lm_head.weight = model.transformer.wte.weight  # to_empty unties: tie again
    sd = model.state_dict()
    done = set()
    with safe_open(weights, framework="pt") as f:
        for key in f.keys():
            if key.endswith(IGNORED_SUFFIXES):
                continue
            ours = key if key in sd else ("transformer." + key if "transformer." + key in sd else None)
            if ours is None:
                if key == "lm_head.weight" and config.tie_weights:
                    continue
                raise KeyError(f"Unexpected tensor {key!r} in {weights}.")
            t = f.get_tensor(key)
            if ours.endswith(TRANSPOSED):
                t = t.t()
            assert t.shape == sd[ours].shape, f"{key}: checkpoint {tuple(t.shape)} vs model {tuple(sd[ours].shape)}"
            with torch.no_grad():
                sd[ours].copy_(t)
            done.add(ours)
            del t
    missing = [k for k in sd if k not in done and not (k == "lm_head.weight" and config.tie_weights)]
    if missing:
        raise KeyError(f"{weights} lacks {len(missing)} tensors, e.g. {missing[:3]}.")
    tok_file = os.path.join(path, "tokenizer.json")
    if os.path.exists(tok_file):
        with open(tok_file) as fh:
            tokenizer = tokenizer_from_dict(json.load(fh))
    else:
        tokenizer = gpt2_tokenizer()
    model.eval()
    return model, tokenizer
