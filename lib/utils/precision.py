"""The one table of compute precisions, shared by training (`train.amp`), tracking (`test.amp`) and profiling.

`fp32` runs without autocast; `fp16` / `bf16` run the forward under `torch.autocast` with that dtype (training adds
a gradient scaler for fp16). Weights stay float32 in every case.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from types import MappingProxyType

import torch

AUTOCAST_DTYPES: MappingProxyType[str, torch.dtype | None] = MappingProxyType(
    {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16})
PRECISIONS: tuple[str, ...] = tuple(AUTOCAST_DTYPES)


def autocast(device_type: str, precision: str) -> AbstractContextManager:
    """`torch.autocast` for `precision` on `device_type` (disabled for fp32)."""
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    dtype = AUTOCAST_DTYPES[precision]
    return torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None)
