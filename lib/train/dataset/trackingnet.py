"""TrackingNet training set: `<root>/TRAIN_<k>/anno/<video>.txt` and `<root>/TRAIN_<k>/frames/<video>/<i>.jpg`
(frames 0-based, unpadded names). All chunks TRAIN_0..TRAIN_11 form one dataset, each chunk's videos in
sorted annotation-file order (upstream). No occlusion flags: a frame is valid when its clipped box has area.
"""
from __future__ import annotations

import numpy as np

from lib.train.dataset.base import Track, TrackingDataset, parse_number_rows, xywh_to_xyxy
from lib.utils.lmdb_store import Store

TRAIN_CHUNKS = tuple(f"TRAIN_{k}" for k in range(12))


class TrackingNet(TrackingDataset):
    def __init__(self, store: Store, name: str = "trackingnet_train", chunks: tuple[str, ...] = TRAIN_CHUNKS) -> None:
        super().__init__(store, name)
        with self.store.session():  # one LMDB handle for the whole parse
            for chunk in chunks:
                for anno_file in store.list(f"{chunk}/anno"):
                    if anno_file.endswith(".txt"):
                        self._load(chunk, anno_file[: -len(".txt")])

    def _load(self, chunk: str, video: str) -> None:
        path = f"{chunk}/anno/{video}.txt"
        boxes = parse_number_rows(self.store.read_text(path), self.store.describe(path), 4)
        location = f"{chunk}/frames/{video}"
        image_size = self.store.image_size(self.frame_relpath(location, 0))
        track = Track(xywh_to_xyxy(boxes), np.ones(len(boxes), dtype=bool))
        self._add_sequence(video, location, [track], image_size)

    def frame_relpath(self, location: str, raw_index: int) -> str:
        return f"{location}/{raw_index}.jpg"
