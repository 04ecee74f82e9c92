"""What machine a benchmark ran on: every benchmark prints this line, since ratios only compare within one run."""
from __future__ import annotations

import os
import sys

# the project root, so `tinygpt` imports however the benchmark was started (python benchmarks/x.py)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux): the same function the Efficiency tab prints."""
    from tinygpt.efficiency.measure import cpu_model

    return cpu_model()


def describe() -> str:
    import torch

    return (f"CPU: {cpu_name()} · {os.cpu_count()} logical cores · torch {torch.__version__} "
            f"with {torch.get_num_threads()} threads")
