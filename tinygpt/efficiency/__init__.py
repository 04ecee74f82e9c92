"""Efficiency: attention kernels, KV cache, GQA, profiling, fast inference paths."""
from ..kernels import (  # the oneDNN fast path is core (tinygpt/kernels.py); re-exported here
    FastLinear,
    disable_fast_inference,
    enable_fast_inference,
    fast_inference_path,
    fast_linear,
    refresh_fast_inference,
)
from .flash import attention_memory_prediction, flash_attention, flash_attention_trace, standard_attention
from .gqa import compare_kv_heads, convert_kv_heads, uptrain, uptrain_corpus
from .kv_measure import kv_cache_latency, kv_cache_measurement, kv_label
from .measure import check_memory, lengths_offered, measure_attention, mem_available_bytes
from .profile import profile_forward

__all__ = ["attention_memory_prediction", "flash_attention", "flash_attention_trace", "standard_attention",
           "kv_cache_latency", "convert_kv_heads", "kv_cache_measurement", "compare_kv_heads", "kv_label",
           "uptrain", "uptrain_corpus", "measure_attention", "lengths_offered", "mem_available_bytes",
           "check_memory", "profile_forward",
           "FastLinear", "disable_fast_inference", "enable_fast_inference", "fast_inference_path",
           "fast_linear", "refresh_fast_inference"]
