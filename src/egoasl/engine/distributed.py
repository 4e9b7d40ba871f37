"""One code path for 1 or N processes: torchrun sets the environment, we read it.

``torchrun --nproc_per_node N -m egoasl.cli train ...`` starts N copies; each calls
:func:`init` which joins the process group (gloo on CPU, nccl on GPU) and trains with
DistributedDataParallel, also when N is 1 (so one GPU checks the whole DDP path). A plain
``egoasl train`` is not launched by torchrun and never touches ``torch.distributed``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun (RANK and WORLD_SIZE set)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether this process is in a process group (launched by torchrun, any world size)."""
        return self.launched


def from_environment() -> DistInfo:
    """Rank and world size as set by torchrun; one process outside a group without it."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")),
                    launched=True)


def init(info: DistInfo, device: torch.device) -> None:
    """Join the process group (gloo on CPU, nccl on GPU); a no-op for one process."""
    if info.enabled and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl", device_id=device)
        else:
            dist.init_process_group(backend="gloo")
        if info.is_main:
            print(f"process group: {dist.get_backend()} backend, world size {info.world_size}, device {device}",
                  flush=True)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / info.world_size


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """``auto`` picks CUDA when available (one GPU per local rank), else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", info.local_rank)
    return device
