"""Efficiency: attention kernels, KV cache, GQA, profiling, fast inference paths."""
from .fastpath import (
    FastLinear,
    disable_fast_inference,
    enable_fast_inference,
    fast_linear,
    refresh_fast_inference,
)

__all__ = ["FastLinear", "disable_fast_inference", "enable_fast_inference", "fast_linear", "refresh_fast_inference"]
