"""Checkpoints in Hugging Face GPT-2 format: `config.json` + weights (+ `tokenizer.json`).

Weights are one `model.safetensors`, or, above `max_shard_bytes`, the standard Hugging Face sharded layout:
`model-00001-of-0000N.safetensors` files plus `model.safetensors.index.json` mapping each tensor to its file
(real Hub models are sharded too; a Hugging Face Space also refuses plain files over 10 MB).

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
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
MAX_SHARD_BYTES = 9_000_000  # under a Space's 10 MB limit for plain Git files


def shard_tensors(tensors: dict, max_bytes: int) -> list[dict]:
    """Split {name: tensor} into consecutive groups of at most max_bytes each (a bigger tensor is alone)."""
    shards, current, size = [], {}, 0
    for k, t in tensors.items():
        n = t.numel() * t.element_size()
        if current and size + n > max_bytes:
            shards.append(current)
            current, size = {}, 0
        current[k] = t
        size += n
    if current:
        shards.append(current)
    return shards


def save_checkpoint(model: GPT, tokenizer, out_dir: str, dtype: Optional[torch.dtype] = None,
                    extra: Optional[dict] = None, max_shard_bytes: Optional[int] = MAX_SHARD_BYTES) -> None:
    """Write config.json, the weights (HF key names and layouts) and tokenizer.json.

    Weights above max_shard_bytes (None = never) are written as shards with an index, as save_pretrained does."""
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):  # a re-save must not leave stale weights of the other layout behind
        if f == INDEX or (f.startswith("model") and f.endswith(".safetensors")):
            os.remove(os.path.join(out_dir, f))
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
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    shards = shard_tensors(tensors, max_shard_bytes) if max_shard_bytes and total > max_shard_bytes else [tensors]
    if len(shards) == 1:
        save_file(tensors, os.path.join(out_dir, WEIGHTS), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards, 1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, os.path.join(out_dir, name), metadata={"format": "pt"})
            weight_map.update({k: name for k in shard})
        with open(os.path.join(out_dir, INDEX), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
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


def weight_files(path: str) -> list[str]:
    """The safetensors files of a checkpoint directory: model.safetensors, or the shards its index names."""
    single, index = os.path.join(path, WEIGHTS), os.path.join(path, INDEX)
    if os.path.exists(single):
        return [single]
    if os.path.exists(index):
        with open(index) as f:
            names = sorted(set(json.load(f)["weight_map"].values()))
        files = [os.path.join(path, n) for n in names]
        missing = [n for n, f in zip(names, files) if not os.path.exists(f)]
        if missing:
            raise FileNotFoundError(f"{path} lacks the shard {missing[0]} listed in {INDEX}.")
        return files
    raise FileNotFoundError(f"{path} has no {WEIGHTS} or {INDEX} (only safetensors checkpoints are loaded).")


def load_checkpoint(path: str, dtype: torch.dtype = torch.float32):
    """Load a directory written by save_checkpoint or transformers' save_pretrained -> (model, tokenizer)."""
    from safetensors import safe_open

    config = read_config(path)
    files = weight_files(path)
    with torch.device("meta"):
        model = GPT(config)
    model = model.to_empty(device="cpu").to(dtype)
    if config.tie_weights:
        model.lm_head.weight = model.transformer.wte.weight  # to_empty unties: tie again
    sd = model.state_dict()
    done = set()
    for weights in files:
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
        raise KeyError(f"{path} lacks {len(missing)} tensors, e.g. {missing[:3]}.")
    tok_file = os.path.join(path, "tokenizer.json")
    if os.path.exists(tok_file):
        with open(tok_file) as fh:
            tokenizer = tokenizer_from_dict(json.load(fh))
    else:
        tokenizer = gpt2_tokenizer()
    model.eval()
    return model, tokenizer
