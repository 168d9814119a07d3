"""Training dataset registry: name -> where the data lives (local.py fields) and how to parse it.

`build_train_dataset(name, env, use_lmdb)` returns a TrackingDataset reading either the dataset folder or
its LMDB (built by tracking/build_lmdb.py) through the same parser. `synthetic_<domain>_<split>` names read
the GOT-10k layout at `<synthetic_dir>/<domain>/<split>`.

Your own data (lib/datasets/custom.py) is named either by an experiment's data entry with `format` and `root`
(`{name: my_drones, format: got10k, root: /data/my_drones, weight: 1}`) or by a plain name that local.py's
`custom_datasets` declares. With `use_lmdb` a custom dataset is read from the LMDB it declares beside its root
(`lmdb`, packed by `tracking/build_lmdb.py --custom NAME`); one that declares none is an error.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from lib.config import DatasetEntry
from lib.datasets.custom import CustomDataset
from lib.datasets.synthetic import (
    NAME_FORM,
    domain_dir,
    is_synthetic_name,
    parse_synthetic_name,
)
from lib.train.admin.environment import EnvironmentSettings
from lib.train.dataset.base import SequenceInfo, Track, TrackingDataset
from lib.train.dataset.coco import COCO
from lib.train.dataset.custom import CustomFolder
from lib.train.dataset.got10k import GOT10k
from lib.train.dataset.lasot import LaSOT
from lib.train.dataset.trackingnet import TrackingNet
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


def _custom_spec(entry: DatasetEntry | str, env: EnvironmentSettings) -> CustomDataset | None:
    """The custom folder an entry names (its own `format` + `root` [+ `lmdb`], or local.py's `custom_datasets`),
    else None."""
    if isinstance(entry, DatasetEntry) and (entry.format, entry.root, entry.lmdb) != (None, None, None):
        if entry.format is None or entry.root is None:
            raise ValueError(f"data entry {entry.name!r}: a custom dataset needs both 'format' and 'root' "
                             f"(e.g. {{name: {entry.name}, format: got10k, root: /data/{entry.name}, weight: 1}})")
        return CustomDataset(entry.format, entry.root, entry.lmdb)
    name = entry.name if isinstance(entry, DatasetEntry) else entry
    declared = env.custom_dataset(name)
    if declared is not None and (name in TRAIN_DATASETS or is_synthetic_name(name)):
        raise ValueError(f"{env.source}: custom_datasets declares {name!r}, a registered dataset name; rename it")
    return declared


def _build_custom(name: str, custom: CustomDataset, env: EnvironmentSettings, use_lmdb: bool) -> TrackingDataset:
    """A custom dataset from its folder, or from its LMDB with `use_lmdb`."""
    if not use_lmdb:
        if not os.path.isdir(custom.root):
            raise FileNotFoundError(f"custom dataset {name!r}: folder {custom.root} does not exist; fix its 'root'")
        return CustomFolder(open_store(custom.root, use_lmdb=False), name, custom.format)
    if custom.lmdb is None:
        raise ValueError(
            f"custom dataset {name!r} declares no LMDB, and data.use_lmdb is set: add 'lmdb': '/path/{name}_lmdb' "
            f"beside its 'root' (in {env.source}'s custom_datasets, or `lmdb:` in the data entry), pack it with "
            f"`python tracking/build_lmdb.py --custom {name}` (or --root ROOT --out LMDB), or set data.use_lmdb false"
        )
    return CustomFolder(open_store(custom.lmdb, use_lmdb=True), name, custom.format)


def build_train_dataset(entry: DatasetEntry | str, env: EnvironmentSettings, use_lmdb: bool = False
                        ) -> TrackingDataset:
    """Build the training dataset of a data entry (or a bare name): a custom folder, or the dataset registered
    under that name, reading folders or LMDBs named in `env`."""
    name = entry.name if isinstance(entry, DatasetEntry) else entry
    custom = _custom_spec(entry, env)
    if custom is not None:
        return _build_custom(name, custom, env, use_lmdb)
    if is_synthetic_name(name):
        return _build_synthetic(name, env, use_lmdb)
    if name not in TRAIN_DATASETS:
        raise KeyError(
            f"unknown training dataset {name!r}; known: {', '.join(TRAIN_DATASETS)}, {NAME_FORM}, or your own "
            f"folder (give the entry 'format' and 'root', or declare it in {env.source}'s custom_datasets)"
        )
    spec = TRAIN_DATASETS[name]
    root = env.require(spec.lmdb_field if use_lmdb else spec.folder_field)
    return spec.build(open_store(root, use_lmdb))


__all__ = [
    "COCO",
    "TRAIN_DATASETS",
    "CustomFolder",
    "DatasetSpec",
    "GOT10k",
    "LaSOT",
    "SequenceInfo",
    "Track",
    "TrackingDataset",
    "TrackingNet",
    "build_train_dataset",
]
