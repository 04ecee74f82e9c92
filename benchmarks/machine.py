"""What machine a benchmark ran on: every benchmark prints this line, since ratios only compare within one run."""
from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> str:
    import torch

    return (f"CPU: {cpu_name()} · {os.cpu_count()} logical cores · torch {torch.__version__} "
            f"with {torch.get_num_threads()} threads")
