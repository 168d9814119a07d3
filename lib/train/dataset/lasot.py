"""LaSOT training set (layout: lib/datasets/lasot.py).

Boxes are 1-based on disk and shifted by -1 (upstream trackit/LoRAT's LaSOT loader subtracts 1 from x, y); frames
fully occluded or out of view are invalid. Sequences are ordered by class, then by the number k, as upstream.
"""
from __future__ import annotations

from collections.abc import Sequence

from lib.datasets import lasot
from lib.train.dataset.base import Track, TrackingDataset, xywh_to_xyxy
from lib.train.dataset.specs import read_split_list
from lib.utils.lmdb_store import Store

SPLIT_FILES = {"train": "lasot_train_split.txt"}


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
            for seq_name in sorted(sequence_names, key=lasot.order_key):
                self._load(seq_name, lasot.sequence_folder(seq_name))

    def _load(self, seq_name: str, location: str) -> None:
        sequence = lasot.read_sequence(self.store, location)
        boxes = sequence.boxes.xywh.copy()
        boxes[:, :2] -= 1.0
        image_size = self.store.image_size(self.frame_relpath(location, 0))
        self._add_sequence(seq_name, location, [Track(xywh_to_xyxy(boxes), sequence.visible)], image_size)

    def frame_relpath(self, location: str, raw_index: int) -> str:
        return lasot.frame_relpath(location, raw_index)
