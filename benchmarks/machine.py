"""What machine a benchmark ran on (every benchmark prints this line, since ratios only compare within one run),
and the GPT-2-124M-sized random model several benchmarks share."""
from __future__ import annotations

import os
import sys
import tempfile

# the project root, so `tinygpt` imports however the benchmark was started (python benchmarks/x.py)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux): the same function the Efficiency tab prints."""
    from tinygpt.device import cpu_name as name

    return name()


def describe() -> str:
    import torch

    return (f"CPU: {cpu_name()} · {os.cpu_count()} logical cores · torch {torch.__version__} "
            f"with {torch.get_num_threads()} threads")


def gpt2_sized_dir(prefix: str = "gpt2-124m-") -> str:
    """A random GPT-2-124M-sized transformers checkpoint (GPT2Config() defaults, seed 0) in a temporary directory."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    d = tempfile.mkdtemp(prefix=prefix)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(d)
    return d
