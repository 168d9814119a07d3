"""Process-group set-up from torchrun's environment: backend and device per rank (no GPU needed)."""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from lib.utils import distributed


@pytest.fixture
def torchrun_store(monkeypatch) -> dist.Store:
    """The key-value store torchrun's agent serves (one for all restarts), as an in-process store."""
    store = dist.HashStore()
    monkeypatch.setattr(dist, "rendezvous", lambda url, rank, world_size, **kw: iter([(store, rank, world_size)]))
    return store


@pytest.fixture
def calls(monkeypatch, torchrun_store) -> dict:
    recorded: dict = {}
    monkeypatch.setattr(dist, "init_process_group",
                        lambda backend, **kw: recorded.update(backend=backend, device_id=kw.get("device_id")))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: recorded.update(set_device=index))
    return recorded


def _torchrun_env(monkeypatch, rank: int, local_rank: int, world: int) -> None:
    for key, value in (("RANK", rank), ("LOCAL_RANK", local_rank), ("WORLD_SIZE", world)):
        monkeypatch.setenv(key, str(value))


def test_gpu_ranks_use_nccl_on_their_local_device(monkeypatch, calls):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    _torchrun_env(monkeypatch, rank=5, local_rank=1, world=8)
    info = distributed.init_distributed()
    assert calls == {"backend": "nccl", "device_id": torch.device("cuda", 1), "set_device": 1}
    assert (info.rank, info.local_rank, info.world_size, info.device) == (5, 1, 8, torch.device("cuda", 1))
    assert info.distributed and not info.is_main


def test_cpu_ranks_use_gloo(monkeypatch, calls):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    _torchrun_env(monkeypatch, rank=0, local_rank=0, world=2)
    info = distributed.init_distributed(force_cpu=True)
    assert calls == {"backend": "gloo", "device_id": None}
    assert info.device == torch.device("cpu") and info.is_main


def test_single_process_starts_no_group(monkeypatch, calls):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    info = distributed.init_distributed()
    assert calls == {} and not info.distributed and info.device == torch.device("cpu")
    assert distributed.all_reduce_mean({"loss": 2.5}, info.device) == {"loss": 2.5}


def test_each_restart_of_the_worker_group_meets_under_its_own_keys(monkeypatch, torchrun_store):
    """torchrun --max-restarts keeps its store: a restarted group must not read the keys of the failed one."""
    stores = []
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: stores.append(kw["store"]))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    _torchrun_env(monkeypatch, rank=0, local_rank=0, world=2)
    for restart in ("0", "1"):
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", restart)
        distributed.init_distributed(force_cpu=True)
    first, restarted = stores
    first.set("rank1_address", "10.0.0.9:4242")  # what a rank of the failed group published
    assert first.check(["rank1_address"]) and not restarted.check(["rank1_address"])
    restarted.set("rank1_address", "10.0.0.9:5353")
    assert first.get("rank1_address") == b"10.0.0.9:4242"


CASES = [((7, 7), True), ((0, 7), False), ((-3, 3), False)]  # per-rank values, whether they agree


def _agreement(rank: int, store_file: str, out: dict) -> None:
    dist.init_process_group("gloo", store=dist.FileStore(store_file, 2), rank=rank, world_size=2)
    try:
        out[rank] = [distributed.same_on_all_ranks(values[rank], torch.device("cpu")) for values, _ in CASES]
    finally:
        dist.destroy_process_group()


def test_ranks_check_that_they_resumed_from_the_same_step(tmp_path):
    """Two gloo processes: a rank that found no checkpoint (step 0) next to one that resumed must be noticed."""
    with torch.multiprocessing.Manager() as manager:
        out = manager.dict()
        torch.multiprocessing.spawn(_agreement, args=(str(tmp_path / "store"), out), nprocs=2)
        expected = [agree for _, agree in CASES]
        assert dict(out) == {0: expected, 1: expected}
