"""LaSOT training set: `<root>/<class>/<class>-<k>/{groundtruth.txt, full_occlusion.txt, out_of_view.txt, img/}`.

Boxes are 1-based on disk and shifted by -1 (upstream `bounding_boxes[:, 0:2] -= 1`); frames fully occluded
or out of view are invalid. The frame count is the number of groundtruth rows and frames are
`img/%08d.jpg` (1-based). Sequences are ordered by class, then by the number k, as upstream.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from lib.train.dataset.base import Track, TrackingDataset, parse_int_flags, parse_number_rows, xywh_to_xyxy
from lib.train.dataset.specs import read_split_list
from lib.utils.lmdb_store import Store

SPLIT_FILES = {"train": "lasot_train_split.txt"}


def _order_key(name: str) -> tuple[str, int]:
    cls, _, number = name.rpartition("-")
    return cls, int(number)


class LaSOT(TrackingDataset):
    def __init__(
        self, store: Store, name: str = "lasot_train", split: str = "train", sequence_names: Sequence[str] | None = None
    ) -> None:
        """Sequences of `split`'s list, or exactly `sequence_names` (e.g. a subset) when given."""
        super().__init__(store, name)
        with self.store.session():  # one LMDB handle for the whole parse
            if sequence_names is None:
                if split not in SPLIT_FILES:
                    raise ValueError(f"unknown LaSOT split {split!r}; known: {sorted(SPLIT_FILES)}")
                sequence_names = read_split_list(SPLIT_FILES[split])
            for seq_name in sorted(sequence_names, key=_order_key):
                location = f"{_order_key(seq_name)[0]}/{seq_name}"
                self._load(seq_name, location)

    def _load(self, seq_name: str, location: str) -> None:
        gt_path = f"{location}/groundtruth.txt"
        boxes = parse_number_rows(self.store.read_text(gt_path), self.store.describe(gt_path), 4)
        boxes[:, :2] -= 1.0
        invisible = np.zeros(len(boxes), dtype=bool)
        for flag_file in ("full_occlusion.txt", "out_of_view.txt"):
            path = f"{location}/{flag_file}"
            flags = parse_int_flags(self.store.read_text(path), self.store.describe(path), range(2))
            if len(flags) != len(boxes):
                raise ValueError(
                    f"{self.store.describe(path)} has {len(flags)} flags but {self.store.describe(gt_path)} has "
                    f"{len(boxes)} boxes; the sequence is corrupt, re-download it"
                )
            invisible |= flags.astype(bool)
        image_size = self.store.image_size(self.frame_relpath(location, 0))
        self._add_sequence(seq_name, location, [Track(xywh_to_xyxy(boxes), ~invisible)], image_size)

    def frame_relpath(self, location: str, raw_index: int) -> str:
        return f"{location}/img/{raw_index + 1:08d}.jpg"
