"""torch.distributed helpers: set-up from torchrun's environment, rank queries, averaging of stats."""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(force_cpu: bool = False) -> DistInfo:
    """Read RANK/LOCAL_RANK/WORLD_SIZE (set by torchrun) and start the process group: NCCL on GPUs, gloo on CPU.

    Without torchrun's variables this is a single process on `cuda:0` (or the CPU). Each restart of a worker group
    (torchrun's TORCHELASTIC_RESTART_COUNT) meets under its own key prefix in torchrun's store.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and not force_cpu
    if use_cuda:
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        timeout = timedelta(minutes=30)
        store, _, _ = next(dist.rendezvous("env://", rank, world_size, timeout=timeout))
        # torchrun keeps one key-value store for all restarts of a worker group (--max-restarts); a restarted
        # group that read the keys its failed predecessor left there would wait for peers that are gone
        round_ = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group("nccl" if use_cuda else "gloo", store=dist.PrefixStore(f"lorat/round{round_}", store),
                                rank=rank, world_size=world_size, timeout=timeout,
                                device_id=device if use_cuda else None)
    return DistInfo(rank, local_rank, world_size, device)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def same_on_all_ranks(value: int, device: torch.device) -> bool:
    """Whether every rank passed the same `value` (always True on one process)."""
    if not is_initialized():
        return True
    t = torch.tensor([value, -value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t[0].item() == -t[1].item()


def all_reduce_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average a dict of scalars over all ranks (identity on one process). Every rank must pass the same keys."""
    if not is_initialized() or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


def cleanup() -> None:
    if is_initialized():
        dist.destroy_process_group()
