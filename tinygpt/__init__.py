"""tinygpt: a small, readable GPT-2 package for teaching (model, sampling, counting, training, loading).

No UI code and no I/O at import: everything here is a plain function or class. Where things live:

    config.py      GPTConfig and presets            model.py      GPT, attention, KV cache, layer lists
    sampling.py    temperature/top-k/top-p, entropy, generate      tokenizer.py  GPT-2 BPE and characters
    evaluate.py    log-probs, loss, perplexity      data.py       files, uploads, cleaning, corpora, batches
    train.py       the training loop                finetune.py   trainable copies, fine-tune defaults
    checkpoint.py  save/load (sharded) safetensors  loading.py    load_model: Hub cache / dir / embedded
    params.py, compute.py   the calculator: parameter counts, memory, FLOPs, KV cache
    hf_config.py   a Hugging Face config.json (file, text or Hub id) -> GPTConfig, for the calculator
    defaults.py    every action's default settings  dtypes.py     fp32/fp16/bf16 <-> torch dtypes <-> bytes
    kernels.py     the oneDNN fast path for fp32 inference          batching.py   many requests, one forward pass
    moe.py         Mixture-of-Experts load, equal-active dense     positions.py  sinusoidal table, RoPE
    interpret/     embeddings, pruning and the logit lens          efficiency/   KV cache, GQA, flash, profile
    device.py      the device choice (CUDA, MPS, CPU)               distributed.py  torchrun / DDP training
    beyond/        scaling laws, DPO, toy RLHF                      cli/          python -m tinygpt ...

The modules above the subpackages are the core; interpret/, efficiency/ and beyond/ build on it, never the reverse.

`import tinygpt` loads nothing but this file: every name below is imported from its module on first use (PEP 562),
so `python -m tinygpt params` and `import tinygpt.compute` never load torch, and nothing loads a subpackage (or
transformers, matplotlib, gradio) that it does not use.
"""
from __future__ import annotations

import importlib
import sys
import types

# public name -> the module (relative to this package) that defines it
_HOME = {
    **dict.fromkeys(("GPTConfig", "PRESETS"), ".config"),
    **dict.fromkeys(("GPT", "KVCache", "parse_layers"), ".model"),
    **dict.fromkeys(("count_parameters", "parameter_breakdown", "approx_parameters"), ".params"),
    **dict.fromkeys(("estimate", "training_memory", "activation_bytes", "kv_cache_bytes", "flops_per_token",
                     "gpu_hours"), ".compute"),
    **dict.fromkeys(("filter_logits", "next_token_probs", "sample_next_token", "generate", "generate_stream",
                     "encode_prompt", "next_token_logits", "entropy", "distribution_summary"), ".sampling"),
    **dict.fromkeys(("gpt2_tokenizer", "CharTokenizer", "GPT2Tokenizer"), ".tokenizer"),
    **dict.fromkeys(("save_checkpoint", "load_checkpoint"), ".checkpoint"),
    **dict.fromkeys(("load_model", "ModelCache", "ModelInfo", "EMBEDDED_NAME", "HUB_MODELS"), ".loading"),
    **dict.fromkeys(("TrainConfig", "train"), ".train"),
    **dict.fromkeys(("evaluate", "perplexity", "token_logprobs", "TokenScores", "ngram_stats", "target_logprobs",
                     "masked_logprobs"), ".evaluate"),
    **dict.fromkeys(("word_vectors", "cosine_matrix", "nearest_neighbours", "vocab_norms", "pca_2d",
                     "contextual_similarity"), ".interpret.embeddings"),
    **dict.fromkeys(("named_layers", "run_configuration", "logit_lens"), ".interpret.pruning"),
    "attention_maps": ".interpret.attention",
    **dict.fromkeys(("from_hf_config", "fetch_hub_config"), ".hf_config"),
    **dict.fromkeys(("convert_kv_heads", "kv_cache_measurement", "profile_forward", "flash_attention"), ".efficiency"),
    **dict.fromkeys(("expert_load", "with_expert_load", "dense_n_inner", "dense_equivalent", "token_experts"), ".moe"),
    **dict.fromkeys(("sinusoidal_encoding", "apply_rope"), ".positions"),
    **dict.fromkeys(("dpo_loss", "sequence_logps"), ".beyond.dpo"),
    **dict.fromkeys(("Batcher", "Batchers"), ".batching"),  # continuous batching (many requests, one forward pass)
    **dict.fromkeys(("pick_device", "device_name", "fast_dtype"), ".device"),  # where the compute is
}
_ALIASES = {"parse_layer_list": "parse_layers"}  # the earlier name, kept for notebooks that use it

__all__ = [
    "GPTConfig", "PRESETS", "GPT", "KVCache", "parse_layers", "parse_layer_list",
    "count_parameters", "parameter_breakdown", "approx_parameters",
    "estimate", "training_memory", "activation_bytes", "kv_cache_bytes", "flops_per_token", "gpu_hours",
    "filter_logits", "next_token_probs", "sample_next_token", "generate", "generate_stream", "encode_prompt",
    "next_token_logits", "entropy", "distribution_summary",
    "gpt2_tokenizer", "CharTokenizer", "GPT2Tokenizer", "save_checkpoint", "load_checkpoint", "load_model",
    "ModelCache", "ModelInfo", "EMBEDDED_NAME", "HUB_MODELS", "TrainConfig", "train",
    "evaluate", "perplexity", "token_logprobs", "TokenScores", "ngram_stats",
    "word_vectors", "cosine_matrix", "nearest_neighbours", "vocab_norms", "pca_2d", "contextual_similarity",
    "named_layers", "run_configuration", "logit_lens",
    "from_hf_config", "fetch_hub_config",
    "convert_kv_heads", "kv_cache_measurement", "profile_forward", "flash_attention",
    "expert_load", "with_expert_load", "dense_n_inner", "dense_equivalent", "token_experts",
    "attention_maps", "sinusoidal_encoding", "apply_rope",
    "target_logprobs", "masked_logprobs", "dpo_loss", "sequence_logps",
    "Batcher", "Batchers", "pick_device", "device_name", "fast_dtype",
]


def __getattr__(name: str):
    """Import a public name from its module on first use (then it is a plain attribute), or a submodule by name."""
    target = _ALIASES.get(name, name)
    if target in _HOME:
        value = getattr(importlib.import_module(_HOME[target], __name__), target)
        globals()[name] = value
        return value
    try:  # `tinygpt.loading` without `import tinygpt.loading` worked while every module was imported eagerly
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    # Importing tinygpt.train (or tinygpt.evaluate) binds the submodule to the package attribute of the same name;
    # the package's `train` and `evaluate` are the functions, as they were when this file imported them eagerly.
    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and _HOME.get(name) == f".{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
