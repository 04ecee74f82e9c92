"""tinygpt: a small, readable GPT-2 package for teaching (model, sampling, counting, training, loading).

No UI code and no I/O at import: everything here is a plain function or class. Where things live:

    config.py      GPTConfig and presets            model.py      GPT, attention, KV cache, layer lists
    sampling.py    temperature/top-k/top-p, entropy, generate      tokenizer.py  GPT-2 BPE and characters
    evaluate.py    log-probs, loss, perplexity      data.py       files, uploads, cleaning, corpora, batches
    train.py       the training loop                finetune.py   trainable copies, fine-tune defaults
    checkpoint.py  save/load (sharded) safetensors  loading.py    load_model: Hub cache / dir / embedded
    params.py, compute.py   the calculator: parameter counts, memory, FLOPs, KV cache
    hf_config.py   a Hugging Face config.json (file, text or Hub id) -> GPTConfig, for the calculator
    interpret/     embeddings, pruning and the logit lens          efficiency/   KV cache, GQA, flash, profile
    moe.py         Mixture-of-Experts load, equal-active dense     beyond/       scaling laws, DPO, toy RLHF
    cli.py         python -m tinygpt ...
"""
from .beyond.dpo import dpo_loss, sequence_logps
from .checkpoint import load_checkpoint, save_checkpoint
from .compute import activation_bytes, estimate, flops_per_token, gpu_hours, kv_cache_bytes, training_memory
from .config import PRESETS, GPTConfig
from .efficiency import convert_kv_heads, flash_attention, kv_cache_measurement, profile_forward
from .evaluate import TokenScores, evaluate, masked_logprobs, ngram_stats, perplexity, target_logprobs, token_logprobs
from .hf_config import fetch_hub_config, from_hf_config
from .interpret.attention import attention_maps
from .interpret.embeddings import (contextual_similarity, cosine_matrix, nearest_neighbours, pca_2d, vocab_norms,
                                   word_vectors)
from .interpret.pruning import logit_lens, named_layers, run_configuration
from .loading import EMBEDDED_NAME, HUB_MODELS, ModelCache, ModelInfo, load_model
from .model import GPT, KVCache, parse_layers
from .moe import dense_equivalent, dense_n_inner, expert_load, token_experts, with_expert_load
from .params import approx_parameters, count_parameters, parameter_breakdown
from .positions import apply_rope, sinusoidal_encoding
from .sampling import (distribution_summary, encode_prompt, entropy, filter_logits, generate, generate_stream,
                       next_token_logits, next_token_probs, sample_next_token)
from .tokenizer import CharTokenizer, GPT2Tokenizer, gpt2_tokenizer
from .train import TrainConfig, train

parse_layer_list = parse_layers  # the earlier name, kept for notebooks that use it

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
]

from .batching import Batcher, Batchers  # noqa: E402 - continuous batching (many requests, one forward pass)

__all__ += ["Batcher", "Batchers"]
