"""Training dataset registry: name -> where the data lives (local.py fields) and how to parse it.

`build_train_dataset(name, env, use_lmdb)` returns a TrackingDataset reading either the dataset folder or
its LMDB (built by tracking/build_lmdb.py) through the same parser. `synthetic_<domain>_<split>` names read
the GOT-10k layout at `<synthetic_dir>/<domain>/<split>`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lib.train.admin.environment import EnvironmentSettings
from lib.train.dataset.base import SequenceInfo, Track, TrackingDataset
from lib.train.dataset.coco import COCO
from lib.train.dataset.got10k import GOT10k
from lib.train.dataset.lasot import LaSOT
from lib.train.dataset.trackingnet import TrackingNet
from lib.datasets.synthetic import NAME_FORM, domain_dir, is_synthetic_name, parse_synthetic_name
from lib.utils.lmdb_store import Store, open_store


@dataclass(frozen=True)
class DatasetSpec:
    folder_field: str  # EnvironmentSettings field of the dataset folder
    lmdb_field: str  # EnvironmentSettings field of its LMDB
    build: Callable[[Store], TrackingDataset]


TRAIN_DATASETS: dict[str, DatasetSpec] = {
    "lasot_train": DatasetSpec("lasot_dir", "lasot_lmdb_dir", lambda s: LaSOT(s, "lasot_train", "train")),
    "got10k_vottrain": DatasetSpec(
        "got10k_dir", "got10k_lmdb_dir",
        lambda s: GOT10k(s, "got10k_vottrain", "train", "got10k_vot_train_split.txt"),
    ),
    "got10k_train_full": DatasetSpec("got10k_dir", "got10k_lmdb_dir", lambda s: GOT10k(s, "got10k_train_full", "train")),
    "got10k_val": DatasetSpec("got10k_dir", "got10k_lmdb_dir", lambda s: GOT10k(s, "got10k_val", "val")),
    "trackingnet_train": DatasetSpec("trackingnet_dir", "trackingnet_lmdb_dir", lambda s: TrackingNet(s)),
    "coco2017_train": DatasetSpec("coco_dir", "coco_lmdb_dir", lambda s: COCO(s, "coco2017_train", "train2017")),
}


def _build_synthetic(name: str, env: EnvironmentSettings, use_lmdb: bool) -> TrackingDataset:
    parsed = parse_synthetic_name(name)
    if use_lmdb:
        raise ValueError(f"{name}: synthetic datasets are read from folders only; build them without use_lmdb")
    folder = domain_dir(env.require("synthetic_dir"), parsed.domain)
    return GOT10k(open_store(str(folder), use_lmdb=False), name, parsed.split)


def build_train_dataset(name: str, env: EnvironmentSettings, use_lmdb: bool = False) -> TrackingDataset:
    """Build the training dataset registered as `name`, reading folders or LMDBs named in `env`."""
    if is_synthetic_name(name):
        return _build_synthetic(name, env, use_lmdb)
    if name not in TRAIN_DATASETS:
        raise KeyError(
            f"unknown training dataset {name!r}; known: {', '.join(TRAIN_DATASETS)}, {NAME_FORM}"
        )
    spec = TRAIN_DATASETS[name]
    root = env.require(spec.lmdb_field if use_lmdb else spec.folder_field)
    return spec.build(open_store(root, use_lmdb))


__all__ = [
    "COCO", "GOT10k", "LaSOT", "TrackingNet", "SequenceInfo", "Track", "TrackingDataset", "DatasetSpec",
    "TRAIN_DATASETS", "build_train_dataset",
]
