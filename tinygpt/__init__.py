"""tinygpt: a small, readable GPT-2 package for teaching (model, sampling, counting, training, loading).

No UI code and no I/O at import: everything here is a plain function or class.
"""
from .config import GPTConfig, PRESETS
from .model import GPT, KVCache
from .params import count_parameters, parameter_breakdown, approx_parameters
from .compute import estimate, training_memory, activation_bytes, kv_cache_bytes, flops_per_token, gpu_hours
from .sampling import filter_logits, next_token_probs, sample_next_token, generate, generate_stream
from .tokenizer import gpt2_tokenizer, CharTokenizer, GPT2Tokenizer
from .checkpoint import save_checkpoint, load_checkpoint
from .loading import load_model, ModelCache, ModelInfo, EMBEDDED_NAME, HUB_MODELS
from .train import TrainConfig, train, evaluate
from .embeddings import (word_vectors, cosine_matrix, nearest_neighbours, vocab_norms, pca_2d,
                         contextual_similarity)
from .pruning import named_layers, parse_layer_list, perplexity, run_configuration, logit_lens

__all__ = [
    "GPTConfig", "PRESETS", "GPT", "KVCache", "count_parameters", "parameter_breakdown", "approx_parameters",
    "estimate", "training_memory", "activation_bytes", "kv_cache_bytes", "flops_per_token", "gpu_hours",
    "filter_logits", "next_token_probs", "sample_next_token", "generate", "generate_stream", "gpt2_tokenizer",
    "CharTokenizer", "GPT2Tokenizer", "save_checkpoint", "load_checkpoint", "load_model", "ModelCache",
    "ModelInfo", "EMBEDDED_NAME", "HUB_MODELS", "TrainConfig", "train", "evaluate",
    "word_vectors", "cosine_matrix", "nearest_neighbours", "vocab_norms", "pca_2d", "contextual_similarity",
    "named_layers", "parse_layer_list", "perplexity", "run_configuration", "logit_lens",
]
