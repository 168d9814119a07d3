"""One check of a `--device` argument, so that asking for a GPU that is not there is a message saying what to use
instead, not a CUDA driver error from deep inside the first tensor copy."""
from __future__ import annotations

import torch


class DeviceError(ValueError):
    """The requested device does not exist on this machine; the message names the ones that do."""


def gpu_names() -> list[str]:
    """`cuda:N (name)` for every GPU PyTorch can use here (empty without CUDA)."""
    if not torch.cuda.is_available():
        return []
    return [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]


def resolve_device(name: str) -> torch.device:
    """`cpu`, `cuda` or `cuda:N` as a `torch.device`, after checking that this machine has it."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise DeviceError(f"device {name!r} is not supported here; use cpu, cuda or cuda:N")
    gpus = gpu_names()
    if not gpus:
        raise DeviceError(f"device {name!r} requested, but PyTorch sees no CUDA GPU on this machine "
                          f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
                          f"run on the CPU with --device cpu")
    if device.index is not None and device.index >= len(gpus):
        raise DeviceError(f"device {name!r} does not exist; this machine has {len(gpus)} GPU(s): {', '.join(gpus)}")
    return device


def check_gpu_count(num_gpus: int) -> None:
    """`--num_gpus` with `--device cuda`: at least 1 and at most the number of GPUs here."""
    gpus = gpu_names()
    if not 1 <= num_gpus <= len(gpus):
        raise DeviceError(f"--num_gpus must be between 1 and the number of GPUs of this machine, {len(gpus)} "
                          f"({', '.join(gpus) or 'none: run with --device cpu'}), got {num_gpus}")
