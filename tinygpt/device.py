"""Where the compute is: one device choice for the app, every tab and every CLI subcommand.

`pick_device()` reads `TINYGPT_DEVICE` (or the `--device` flag the CLI passes in): `auto` (the default) takes
CUDA, then Apple's MPS, then the CPU. The rest of this module answers what changes with the device, in one place:

* `fast_dtype`: the "fast mode" weights. On the CPU bf16 (oneDNN's bf16 kernels, as before); on CUDA bf16 where
  the GPU supports it (Ampere and newer), fp16 on older cards (a T4); fp16 on MPS.
* `autocast`: training on CUDA runs its matmuls in bf16 under `torch.autocast` (the fp32 master weights stay);
  elsewhere it is a no-op, so CPU training is exactly what it was.
* `synchronize` / `reset_peak_memory` / `peak_memory`: GPU kernels run asynchronously, so a timer must wait for
  them; and memory on a GPU is read from the caching allocator (`torch.cuda.max_memory_allocated`), not from the
  process's RSS.

Nothing here touches a GPU at import; every function is cheap on a CPU-only machine.
"""
from __future__ import annotations

import contextlib
import os
import platform
import re

import torch

DEVICE_ENV = "TINYGPT_DEVICE"
CHOICES = "auto, cpu, cuda, cuda:N or mps"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def pick_device(name: str | torch.device | None = None) -> torch.device:
    """The device to load, train, sample and measure on: `name`, else $TINYGPT_DEVICE, else "auto".

    auto = CUDA if a GPU is visible, then MPS (Apple silicon), then the CPU. An unknown name, or a device this
    machine does not have, raises ValueError with one sentence (the CLI and the app show it as is)."""
    if isinstance(name, torch.device):
        return name
    source = "--device"
    if name is None or str(name).strip() == "":
        name, source = os.environ.get(DEVICE_ENV, "auto"), DEVICE_ENV
    text = str(name).strip().lower()
    if text in ("", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not _mps_available():
            raise ValueError(f"{source}={name} asks for Apple's MPS, which this machine does not have: use cpu"
                             " or auto.")
        return torch.device("mps")
    m = re.fullmatch(r"cuda(?::(\d+))?", text)
    if m is None:
        raise ValueError(f"Unknown device {str(name)!r} ({source}): use {CHOICES}.")
    if not torch.cuda.is_available():
        raise ValueError(f"{source}={name} asks for a CUDA GPU, but this machine has none that PyTorch can use"
                         " (a CPU-only build, or no driver): use cpu or auto.")
    index = int(m.group(1)) if m.group(1) is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise ValueError(f"{source}={name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered"
                         f" from 0.")
    return torch.device("cuda", index)


def cpu_name() -> str:
    """The processor's model name (benchmarks print it: a ratio measured on one CPU may not hold on another)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device | str | None = None) -> str:
    """"NVIDIA H100 80GB HBM3 (cuda:0)", "Apple MPS", "CPU: AMD EPYC 7B13 (2 threads)"."""
    device = pick_device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({device})"
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU: {cpu_name()} ({torch.get_num_threads()} threads)"


def fast_dtype(device: torch.device | str | None = None) -> torch.dtype:
    """The 16-bit weights of "fast mode" on this device: bf16 (CPU, CUDA with bf16), else fp16."""
    device = pick_device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device | str | None = None, enabled: bool = True):
    """Mixed precision for a training step: bf16 autocast on CUDA (fp16 where bf16 is unsupported, which then
    also needs a GradScaler: see `needs_grad_scaler`); a no-op context on the CPU and MPS."""
    device = pick_device(device)
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=fast_dtype(device))


def needs_grad_scaler(device: torch.device | str | None = None) -> bool:
    """fp16 autocast (a GPU without bf16) loses small gradients unless the loss is scaled."""
    device = pick_device(device)
    return device.type == "cuda" and fast_dtype(device) == torch.float16


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for the device's queued kernels (a GPU runs asynchronously: time only after this)."""
    device = pick_device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def reset_peak_memory(device: torch.device | str | None = None) -> None:
    device = pick_device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device | str | None = None) -> int | None:
    """Bytes allocated at the peak since `reset_peak_memory` on a CUDA device; None elsewhere (measure RSS)."""
    device = pick_device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device))
    return None


def allocated_memory(device: torch.device | str | None = None) -> int | None:
    """Bytes the CUDA caching allocator holds for tensors now; None on other devices."""
    device = pick_device(device)
    return int(torch.cuda.memory_allocated(device)) if device.type == "cuda" else None


def model_device(model) -> torch.device:
    """The device a model's weights live on (the CPU for a model without parameters)."""
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")
