"""Data-parallel training over several processes with PyTorch's own torch.distributed (no home-made cluster code).

Launch any training subcommand with torchrun, on one machine or several, exactly as nanoGPT does:

    torchrun --nproc_per_node 2 -m tinygpt train --text input.txt ...              # 2 processes, this machine
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 -m tinygpt train ...

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in each process; `init()` reads them, joins the process group
(NCCL between CUDA GPUs, gloo between CPU processes) and gives each process its own device (cuda:LOCAL_RANK).
The training loop (tinygpt/train.py) then wraps the model in DistributedDataParallel: every rank computes the
gradient of its own batches, DDP averages the gradients across ranks during backward, and every rank applies the
same update, so the weights stay identical. Without torchrun (WORLD_SIZE unset or 1) nothing here does anything.

Which batches each process sees: the global batch of one optimizer step is world_size × grad_accum micro-batches,
and micro-batch j is drawn from its own random stream seeded by (seed, j) (`stream_seed`). Rank r takes the
streams r·K ... r·K + K − 1. So one process with --grad-accum 2 and two processes with --grad-accum 1 see the
same batches and compute the same step (tested to 1e-5 on the loss and 1e-6 on the final weights).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .device import pick_device


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0  # this process's index among all processes (all nodes)
    world_size: int = 1  # how many processes train together
    local_rank: int = 0  # this process's index on its own machine (which GPU it takes)
    backend: str | None = None  # "nccl" (CUDA) or "gloo" (CPU) once joined; None when alone

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 evaluates, logs and saves; the others only train."""
        return self.rank == 0


SINGLE = DistContext()


def from_env() -> DistContext:
    """RANK / WORLD_SIZE / LOCAL_RANK as torchrun sets them (a lone process: rank 0 of 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return SINGLE
    return DistContext(rank=int(os.environ.get("RANK", "0")), world_size=world,
                       local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def init(device: str | torch.device | None = None) -> tuple[DistContext, torch.device]:
    """Join the torchrun job, if any -> (context, this process's device).

    With several processes on CUDA each takes cuda:LOCAL_RANK and the group talks over NCCL; on the CPU (or
    when --device cpu is asked for) they talk over gloo. Alone, this is just pick_device(device)."""
    ctx = from_env()
    dev = pick_device(device)
    if not ctx.enabled:
        return ctx, dev
    import torch.distributed as dist

    if dev.type == "cuda":
        dev = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        if dev.type == "mps":
            raise ValueError("Several processes on Apple's MPS are not supported by torch.distributed: use"
                             " --device cpu, or one process.")
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(ctx.rank, ctx.world_size, ctx.local_rank, backend), dev


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (at the end of a torchrun job)."""
    if ctx.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def stream_seed(seed: int, stream: int) -> int:
    """The seed of micro-batch stream `stream` (stream 0 uses `seed` itself: a lone run is unchanged)."""
    return (int(seed) + 1_000_003 * int(stream)) % (2 ** 63)


def mean_over_ranks(value: float, ctx: DistContext, device: torch.device | None = None) -> float:
    """The average of a number across all ranks (every rank gets it); the number itself when alone."""
    if not ctx.enabled:
        return float(value)
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64, device=device or "cpu")
    dist.all_reduce(t)
    return float(t.item()) / ctx.world_size


def any_rank(flag: bool, ctx: DistContext, device: torch.device | None = None) -> bool:
    """True on every rank when it is True on any (a Stop seen by one process stops them all together)."""
    if not ctx.enabled:
        return bool(flag)
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device or "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast(obj, ctx: DistContext):
    """Rank 0's Python object on every rank (e.g. the sweep points it chose)."""
    if not ctx.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj, ctx: DistContext) -> list:
    """Every rank's object, in rank order, on every rank."""
    if not ctx.enabled:
        return [obj]
    import torch.distributed as dist

    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def wrap(model, ctx: DistContext, device: torch.device):
    """The model wrapped in DistributedDataParallel (gradients averaged across ranks), or itself when alone.

    find_unused_parameters for Mixture-of-Experts models: an expert that no token of this rank's batch chose
    gets no gradient on this rank, and DDP must be told not to wait for it."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    unused = bool(getattr(model.config, "n_experts", 0))
    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids, find_unused_parameters=unused)
