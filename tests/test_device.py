"""lib/utils/device.py: a device that is not there is a message saying what to use (CLIs: no CUDA driver error)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lib.utils.device import DeviceError, check_gpu_count, resolve_device

ROOT = Path(__file__).resolve().parents[1]


def _fake_gpus(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: f"FakeGPU{index}")


def test_cuda_without_a_gpu_says_to_use_the_cpu(monkeypatch):
    _fake_gpus(monkeypatch, 0)
    assert resolve_device("cpu") == torch.device("cpu")
    for name in ("cuda", "cuda:0"):
        with pytest.raises(DeviceError, match="no CUDA GPU.*--device cpu"):
            resolve_device(name)


def test_gpu_index_is_checked_against_the_gpus_present(monkeypatch):
    _fake_gpus(monkeypatch, 2)
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match=r"'cuda:2' does not exist; this machine has 2 GPU\(s\): "
                                          r"cuda:0 \(FakeGPU0\), cuda:1 \(FakeGPU1\)"):
        resolve_device("cuda:2")
    check_gpu_count(2)
    for bad in (0, 3):
        with pytest.raises(DeviceError, match=f"between 1 and .* 2 .*got {bad}"):
            check_gpu_count(bad)


def test_unknown_device_names():
    with pytest.raises(DeviceError, match="use cpu, cuda or cuda:N"):
        resolve_device("gpu")
    with pytest.raises(DeviceError, match="not supported"):
        resolve_device("meta")


def test_profile_model_reports_a_missing_gpu_without_a_traceback():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU visible, whatever this machine has
    result = subprocess.run([sys.executable, "tracking/profile_model.py", "--config", "demo", "--device", "cuda:0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2 and "--device cpu" in result.stderr and "Traceback" not in result.stderr
