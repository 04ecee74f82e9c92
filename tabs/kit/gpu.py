"""ZeroGPU Spaces: a Hugging Face Space on ZeroGPU hardware lends a GPU to a handler only while a function wrapped
in `spaces.GPU(duration=...)` runs. Elsewhere (a laptop, a CPU Space, a GPU Space that holds its GPU) the wrapper
must not exist: `gpu(duration)` is then the identity, and `wrap_handlers` leaves every handler as it is.

ZeroGPU is recognised by the SPACES_ZERO_GPU variable its hardware sets. `app.py` calls `wrap_handlers(demo)` once
the tabs are built: the handlers in GPU_SECONDS (by api_name) get the GPU for at most that many seconds per call.
"""
from __future__ import annotations

import os

# api_name -> the longest a call may hold the ZeroGPU (seconds): the run caps of the budget plus model loading
GPU_SECONDS = {
    "sample": 60, "prune": 90, "attention": 60, "attention_head": 30, "embeddings": 30, "positions": 30,
    "kv_cache": 60, "gqa": 120, "gqa_uptrain": 300, "flash_benchmark": 300, "profile": 120,
    "finetune": 300, "train": 600, "dpo": 300, "rlhf": 600, "rlhf_ppo": 600, "scaling": 600, "moe_routing": 30,
}


def on_zerogpu(env=None) -> bool:
    """True on ZeroGPU hardware (SPACES_ZERO_GPU set to anything but an empty, "0" or "false" value)."""
    value = (os.environ if env is None else env).get("SPACES_ZERO_GPU")
    return value is not None and value.strip().lower() not in ("", "0", "false", "no")


def gpu(duration: int, env=None):
    """A decorator: `spaces.GPU(duration=duration)` on ZeroGPU, the identity everywhere else."""
    if not on_zerogpu(env):
        return lambda fn: fn
    import spaces  # pinned in requirements.txt; imported only where it is used

    return spaces.GPU(duration=duration)


def wrap_handlers(demo, seconds: dict = GPU_SECONDS, env=None) -> list[str]:
    """On ZeroGPU, wrap the built app's GPU-heavy handlers (by api_name) -> the api_names wrapped ([] elsewhere)."""
    if not on_zerogpu(env):
        return []
    wrapped = []
    for block_fn in demo.fns.values():
        name = getattr(block_fn, "api_name", None)
        if name in seconds and block_fn.fn is not None:
            block_fn.fn = gpu(seconds[name], env)(block_fn.fn)
            wrapped.append(name)
    return wrapped
