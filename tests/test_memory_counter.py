"""The CPU peak-memory counter behind benchmarks/train_memory.py, checked on allocations worked out by hand."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("train_memory", ROOT / "benchmarks" / "train_memory.py")
train_memory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_memory)

MB = 2**20


def test_profiled_peak_counts_live_bytes_not_freed_ones():
    existing = torch.ones(8 * MB, dtype=torch.uint8)  # allocated before: not part of the step

    def step() -> None:
        a = torch.ones(3 * MB, dtype=torch.uint8)
        b = torch.ones(2 * MB, dtype=torch.uint8)  # live: 5 MB
        del a
        c = torch.ones(1 * MB, dtype=torch.uint8)  # live: 3 MB
        del b, c
        d = torch.ones(4 * MB, dtype=torch.uint8)  # live: 4 MB
        del d
        existing.add_(1)  # in place on a tensor from before: nothing new

    assert train_memory._profiled_peak_bytes(step) == 5 * MB


def test_shared_storages_count_once():
    base = torch.zeros(1000, dtype=torch.float32)
    views = [base, base[:10], base.view(10, 100)]
    assert train_memory._tensor_bytes(views + [torch.zeros(5, dtype=torch.float64)]) == 4000 + 40
