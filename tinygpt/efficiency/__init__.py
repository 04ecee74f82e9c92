"""Efficiency: attention kernels, KV cache, GQA, profiling, fast inference paths."""
from .flash import attention_memory_prediction, flash_attention, flash_attention_trace, standard_attention
from .kvcache import kv_cache_latency

__all__ = ["attention_memory_prediction", "flash_attention", "flash_attention_trace", "standard_attention",
           "kv_cache_latency"]
