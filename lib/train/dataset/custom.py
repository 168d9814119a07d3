"""Training on your own data: a folder (or its LMDB, lib/utils/lmdb_store.py) in one of the layouts of
lib/datasets/custom.py (`got10k`, `lasot`, `simple`, `vot`).

Boxes are used as in the files (0-based x, y); frames without the target (absence / occlusion labels, NaN rows) are
invalid and cleaned as every training dataset (lib/train/dataset/base.py).
"""
from __future__ import annotations

import numpy as np

from lib.datasets.custom import read_custom
from lib.train.dataset.base import Track, TrackingDataset, xywh_to_xyxy
from lib.utils.lmdb_store import Store


class CustomFolder(TrackingDataset):
    """Every sequence of a custom dataset folder, read with the parser of its `format`."""

    def __init__(self, store: Store, name: str, format_name: str) -> None:
        super().__init__(store, name)
        self._frames: dict[str, tuple[str, ...]] = {}
        with store.session():  # one LMDB handle for the whole parse
            for seq in read_custom(format_name, store, name):
                valid = np.ones(len(seq.boxes), dtype=bool) if seq.visible is None else seq.visible
                track = Track(xywh_to_xyxy(seq.boxes.xywh), valid, seq.cover)
                self._frames[seq.name] = seq.frames
                self._add_sequence(seq.name, seq.name, [track], store.image_size(seq.frames[0]))

    def frame_relpath(self, location: str, raw_index: int) -> str:
        return self._frames[location][raw_index]
