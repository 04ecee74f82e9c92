"""Efficiency: attention kernels, KV cache, GQA, profiling, fast inference paths."""
from .kvcache import kv_cache_latency

__all__ = ["kv_cache_latency"]
