"""Your own data: a folder of sequences in one of the supported layouts (`FORMATS`), read the same way for training
(lib/train/dataset/custom.py) and evaluation (lib/test/evaluation/datasets.py).

Layouts (`root` is the folder given in the experiment YAML or local.py):
- `got10k`: `root/<seq>/{groundtruth.txt, absence.label, [cover.label], 00000001.jpg ...}`, the sequences listed in
  `root/list.txt` (or, without it, every sub-folder holding a groundtruth.txt); a GOT-10k subset folder as it is.
- `lasot`: `root/<class>/<seq>/{groundtruth.txt, full_occlusion.txt, out_of_view.txt, img/00000001.jpg ...}`.
- `simple`: `root/<seq>/{groundtruth.txt, img/*.jpg}` (frames in the numeric order of their names; `list.txt`
  optional as for got10k); a row of `NaN` marks a frame where the target is absent.
- `vot`: a VOT toolkit dataset, `root/list.txt` and `root/<seq>/{sequence, groundtruth.txt, color/00000001.jpg ...}`
  (bounding-box sequences: 4 numbers a row; polygon rows are an error naming the file and line).

`groundtruth.txt` holds one `x,y,w,h` row per frame (commas, tabs or spaces). Custom datasets are used in their
files' coordinates, 0-based x, y (unlike the LaSOT benchmark itself, whose 1-based files are shifted by -1).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from lib.datasets import got10k, lasot
from lib.datasets.frames import check_frame_count, image_names
from lib.datasets.text import BoxFile, read_boxes
from lib.utils.lmdb_store import Store


@dataclass(frozen=True)
class FolderSequence:
    """One sequence of a custom dataset: store keys of its frames and its boxes as in the file."""

    name: str
    frames: tuple[str, ...]
    boxes: BoxFile  # x, y, w, h (0-based), one row per frame
    visible: np.ndarray | None = None  # bool (N,) where the layout has visibility labels
    cover: np.ndarray | None = None  # int (N,) GOT-10k cover levels where present


def _listed_or_found(store: Store, marker: str) -> list[str]:
    """Sequence folders named by `list.txt`, else every sub-folder holding `marker`, in name order."""
    if store.exists("list.txt"):
        return [line.strip() for line in store.read_text("list.txt").splitlines() if line.strip()]
    return sorted(name for name in store.list("") if store.exists(f"{name}/{marker}"))


def _read_got10k(store: Store) -> list[FolderSequence]:
    sequences = []
    for name in _listed_or_found(store, "groundtruth.txt"):
        seq = got10k.read_sequence(store, name)
        sequences.append(FolderSequence(name, seq.frames, seq.boxes, seq.absence == 0, seq.cover))
    return sequences


def _read_lasot(store: Store) -> list[FolderSequence]:
    sequences = []
    for cls in store.list(""):
        try:
            names = store.list(cls)
        except FileNotFoundError:  # a file next to the class folders (a README, list.txt)
            continue
        for name in (n for n in names if store.exists(f"{cls}/{n}/groundtruth.txt")):
            location = f"{cls}/{name}"
            seq = lasot.read_sequence(store, location)
            frames = tuple(lasot.frame_relpath(location, i) for i in range(len(seq.boxes)))
            sequences.append(FolderSequence(name, frames, seq.boxes, seq.visible))
    return sequences


def _read_frame_folder(store: Store, folder: str) -> list[FolderSequence]:
    """`<seq>/groundtruth.txt` and the images of `<seq>/<folder>/` for every sequence."""
    sequences = []
    for name in _listed_or_found(store, "groundtruth.txt"):
        frames = tuple(str(PurePosixPath(name, folder, f)) for f in image_names(store, f"{name}/{folder}"))
        boxes = read_boxes(store, f"{name}/groundtruth.txt")
        check_frame_count(store.describe(name), len(boxes), "groundtruth.txt", len(frames), f"{folder}/")
        sequences.append(FolderSequence(name, frames, boxes))
    return sequences


def _read_simple(store: Store) -> list[FolderSequence]:
    return _read_frame_folder(store, "img")


def _read_vot(store: Store) -> list[FolderSequence]:
    return _read_frame_folder(store, "color")


FORMATS: dict[str, Callable[[Store], list[FolderSequence]]] = {
    "got10k": _read_got10k,
    "lasot": _read_lasot,
    "simple": _read_simple,
    "vot": _read_vot,
}


def read_custom(format_name: str, store: Store, label: str) -> list[FolderSequence]:
    """Every sequence of the custom dataset `label` stored in `format_name` layout; an empty folder is an error."""
    if format_name not in FORMATS:
        raise ValueError(f"custom dataset {label}: unknown format {format_name!r}; use one of: {', '.join(FORMATS)}")
    sequences = FORMATS[format_name](store)
    if not sequences:
        raise FileNotFoundError(
            f"custom dataset {label}: no sequences in {store.describe('')} for format {format_name!r} "
            f"(expected the layout described in lib/datasets/custom.py)"
        )
    return sequences


@dataclass(frozen=True)
class CustomDataset:
    """Where a custom dataset lives and in which layout (an experiment's data entry or local.py's
    `custom_datasets`). Evaluation reads `root`; only training reads `lmdb`."""

    format: str
    root: str
    lmdb: str | None = None  # the folder packed by tracking/build_lmdb.py, for training with data.use_lmdb


def parse_custom_datasets(value: object, source: str) -> dict[str, CustomDataset]:
    """local.py's `custom_datasets = {"my_drones": {"format": "got10k", "root": "/data/my_drones"}}` (an optional
    `"lmdb": "/fast/my_drones_lmdb"` beside `root`), checked."""
    example = "custom_datasets = {'my_drones': {'format': 'got10k', 'root': '/data/my_drones'}}"
    if not isinstance(value, dict):
        raise ValueError(f"{source}: custom_datasets must be a dict such as {example}, got {value!r}")
    parsed = {}
    for name, entry in value.items():
        if not isinstance(name, str) or not isinstance(entry, dict) or not {"format", "root"} <= set(entry) or \
                not set(entry) <= {"format", "root", "lmdb"}:
            raise ValueError(f"{source}: custom_datasets entry {name!r} must be {{'format': ..., 'root': ...}} "
                             f"(and optionally 'lmdb': ...) as in {example}; got {entry!r}")
        if entry["format"] not in FORMATS:
            raise ValueError(f"{source}: custom dataset {name!r} has format {entry['format']!r}; use one of: "
                             f"{', '.join(FORMATS)}")
        for key in ("root", "lmdb"):
            if key in entry and (not isinstance(entry[key], str) or not entry[key]):
                raise ValueError(f"{source}: custom dataset {name!r} needs its folder as a non-empty string {key!r}")
        parsed[name] = CustomDataset(entry["format"], entry["root"], entry.get("lmdb"))
    return parsed
