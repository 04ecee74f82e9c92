"""The floating-point types tinygpt speaks of, in one table: name <-> torch dtype <-> bytes per element.

Names ("fp32", "fp16", "bf16") are what users type (CLI flags, the calculator's radio, JSON reports); torch dtypes
are what tensors hold; bytes per element are what the memory formulas multiply by. Every other module converts
through the helpers here instead of keeping a table of its own.

torch is imported only when a torch dtype is asked for: the calculator (compute.py) reads the byte sizes, and
`python -m tinygpt params` runs, without loading torch.
"""
from __future__ import annotations

# name -> (attribute of the torch module, bytes per element)
TABLE = {
    "fp32": ("float32", 4),  # IEEE single: the default for weights and the CPU's fastest exact path
    "fp16": ("float16", 2),  # IEEE half: 5 exponent bits, overflows above 65,504 (mixed precision keeps fp32 masters)
    "bf16": ("bfloat16", 2),  # bfloat16: fp32's 8 exponent bits, 7 mantissa bits; the "fast mode" on CPUs
}
NAMES = tuple(TABLE)  # ("fp32", "fp16", "bf16")
ELEMENT_BYTES = {name: size for name, (_, size) in TABLE.items()}  # {"fp32": 4, "fp16": 2, "bf16": 2}
FAST = "bf16"  # `sample --dtype bf16`: the CPU's fast mode (on a GPU, tinygpt.device.fast_dtype picks bf16 or fp16)


def check_name(name, allowed=NAMES) -> str:
    """name if it is one of `allowed`, else ValueError in one sentence."""
    if name not in allowed:
        raise ValueError(f"dtype must be one of {', '.join(allowed)} (got {name!r}).")
    return name


def element_bytes(name: str) -> int:
    """Bytes per element of a dtype name: 4 for fp32, 2 for fp16 and bf16."""
    return ELEMENT_BYTES[check_name(name)]


def torch_dtype(name: str):
    """"fp32" -> torch.float32 (and so on); ValueError for an unknown name."""
    import torch

    return getattr(torch, TABLE[check_name(name)][0])


def dtype_name(dtype, default: str | None = None) -> str | None:
    """torch.float32 (or "fp32") -> "fp32"; `default` for any other dtype (torch.float64, torch.int64, ...)."""
    if isinstance(dtype, str):
        return dtype if dtype in TABLE else default
    attr = str(dtype).removeprefix("torch.")  # str(torch.bfloat16) == "torch.bfloat16": no torch import needed
    return next((name for name, (a, _) in TABLE.items() if a == attr), default)


def __getattr__(name):
    # PEP 562: DTYPE_NAMES ({torch.float32: "fp32", ...}) needs torch, so it is built on first use only
    if name == "DTYPE_NAMES":
        return {torch_dtype(n): n for n in NAMES}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
