"""Data-parallel training under ``torchrun``: process group, batch sharding, reductions.

With ``WORLD_SIZE > 1`` (set by ``torchrun``) every rank builds the same global batch and
takes its contiguous slice (``torch.tensor_split``). Each rank's loss is weighted by
``local_n · world / global_n``, so the gradient DistributedDataParallel averages is the
gradient of the loss on the global batch, as in a single process. Exceptions: batch-norm
statistics and the warm-up regulariser (ratios over the batch) are computed per rank, and
PGD random starts come from per-rank generators; a model without BN trained with
``reg_lambda = 0`` and a deterministic loss gives the single-process parameters.
Backend: gloo on CPU, nccl on CUDA. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, world size, its device, and whether we own the group."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``cpu`` / ``cuda`` / ``auto`` (CUDA when available) → a torch device."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                "device 'cuda' is not there: CUDA is not available on this machine; use --device cpu or auto"
            )
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return torch.device("cpu")


def pick_device(name: str | None) -> torch.device:
    """A device a user named (``--device``): None/``auto``, ``cpu``, ``cuda`` or ``cuda:N``, checked here.

    Raises:
        ConfigError: an unknown device name, or a CUDA device this machine does not have.
    """
    text = (name or "auto").strip().lower()
    if text in ("auto", "cpu", "cuda"):
        return resolve_device(text)
    kind, _, number = text.partition(":")
    if kind != "cuda" or not number.isdigit():
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if int(number) >= count:
        have = f"only {count} CUDA device(s) (cuda:0..cuda:{count - 1})" if count else "no CUDA device"
        raise ConfigError(f"device {name!r} is not there: this machine has {have}; use --device cpu or auto")
    return torch.device("cuda", int(number))


def init_distributed(device: str) -> DistInfo:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1`` (env:// rendezvous)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
    target = resolve_device(device, local_rank)
    if world <= 1:
        return DistInfo(device=target)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if target.type == "cuda" else "gloo")
        owns = True
    if target.type == "cuda":
        torch.cuda.set_device(target)
    return DistInfo(dist.get_rank(), dist.get_world_size(), target, owns)


def shutdown(info: DistInfo) -> None:
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def shard(info: DistInfo, *tensors: torch.Tensor) -> tuple[list[torch.Tensor], float]:
    """This rank's slice of each global-batch tensor, and its loss weight local_n·world/global_n."""
    if not info.enabled:
        return list(tensors), 1.0
    total = tensors[0].shape[0]
    if total < info.world_size:
        raise ConfigError(
            f"a batch of {total} cannot be split over {info.world_size} ranks; "
            "raise data.batch_size or use fewer processes"
        )
    local = [torch.tensor_split(t, info.world_size)[info.rank] for t in tensors]
    return local, local[0].shape[0] * info.world_size / total


def wrap_ddp(module: nn.Module, info: DistInfo) -> nn.Module:
    """DistributedDataParallel around ``module`` when distributed, else ``module`` itself."""
    if not info.enabled:
        return module
    ids = [info.device.index] if info.device.type == "cuda" else None
    # find_unused_parameters: training-only loss modules can sit idle (e.g. natural epochs).
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)


def no_sync(module: nn.Module, skip: bool):
    """Skip the gradient all-reduce of a non-final accumulation micro-step."""
    if skip and isinstance(module, DistributedDataParallel):
        return module.no_sync()
    return nullcontext()


def all_reduce_sum(info: DistInfo, values: torch.Tensor) -> torch.Tensor:
    """Sum of ``values`` over ranks (a copy; float64 on the rank's device)."""
    out = values.detach().to(info.device, torch.float64).clone()
    if info.enabled:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def any_rank(info: DistInfo, flag: bool) -> bool:
    """True if ``flag`` is true on any rank."""
    if not info.enabled:
        return flag
    return bool(all_reduce_sum(info, torch.tensor([float(flag)])).item() > 0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
