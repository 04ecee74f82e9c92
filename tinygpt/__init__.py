"""tinygpt: a small, readable GPT-2 package for teaching (model, sampling, counting, training, loading).

No UI code and no I/O at import: everything here is a plain function or class.
"""
from .config import GPTConfig, PRESETS
from .model import GPT, KVCache
from .params import count_parameters, parameter_breakdown, approx_parameters
from .sampling import filter_logits, next_token_probs, sample_next_token, generate, generate_stream
from .tokenizer import gpt2_tokenizer, CharTokenizer, GPT2Tokenizer
from .checkpoint import save_checkpoint, load_checkpoint
from .loading import load_model, ModelCache, ModelInfo, EMBEDDED_NAME, HUB_MODELS
from .train import TrainConfig, train, evaluate

__all__ = [
    "GPTConfig", "PRESETS", "GPT", "KVCache", "count_parameters", "parameter_breakdown", "approx_parameters",
    "filter_logits", "next_token_probs", "sample_next_token", "generate", "generate_stream", "gpt2_tokenizer",
    "CharTokenizer", "GPT2Tokenizer", "save_checkpoint", "load_checkpoint", "load_model", "ModelCache",
    "ModelInfo", "EMBEDDED_NAME", "HUB_MODELS", "TrainConfig", "train", "evaluate",
]
