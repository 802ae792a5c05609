"""torch.distributed set-up for ``torchrun``: gloo on CPU, nccl on GPU; a no-op for one process."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of ``t`` over ranks (``t`` itself for one process)."""
        if self.world_size > 1:
            t = t.to(self.device)
            dist.all_reduce(t)
        return t.cpu()


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda: no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup(device: str = "auto") -> Context:
    """Joins the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world_size == 1:
        return Context(device=dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Context(rank=dist.get_rank(), world_size=dist.get_world_size(), device=dev)


def teardown(sync: bool = False) -> None:
    """Leaves the process group. ``sync`` (after a successful run) first waits for every rank:
    a rank that closes its gloo connections while a peer is still finishing its last collective
    can make that peer's gloo thread abort the process (seen once in CI, SIGABRT at exit)."""
    if dist.is_initialized():
        if sync:
            dist.barrier()
        dist.destroy_process_group()
