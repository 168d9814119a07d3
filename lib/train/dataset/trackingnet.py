"""TrackingNet training set (layout: lib/datasets/trackingnet.py). All chunks TRAIN_0..TRAIN_11 form one dataset,
each chunk's videos in sorted annotation-file order (upstream). No occlusion flags: a frame is valid when its clipped
box has area.
"""
from __future__ import annotations

import numpy as np

from lib.datasets import trackingnet
from lib.train.dataset.base import Track, TrackingDataset, xywh_to_xyxy
from lib.utils.lmdb_store import Store

TRAIN_CHUNKS = tuple(f"TRAIN_{k}" for k in range(12))


class TrackingNet(TrackingDataset):
    def __init__(self, store: Store, name: str = "trackingnet_train", chunks: tuple[str, ...] = TRAIN_CHUNKS) -> None:
        super().__init__(store, name)
        with self.store.session():  # one LMDB handle for the whole parse
            for chunk in chunks:
                for video in trackingnet.video_names(store, chunk):
                    self._load(chunk, video)

    def _load(self, chunk: str, video: str) -> None:
        sequence = trackingnet.read_sequence(self.store, chunk, video)
        location = trackingnet.frame_folder(chunk, video)
        image_size = self.store.image_size(self.frame_relpath(location, 0))
        track = Track(xywh_to_xyxy(sequence.boxes.xywh), np.ones(len(sequence.boxes), dtype=bool))
        self._add_sequence(video, location, [track], image_size)

    def frame_relpath(self, location: str, raw_index: int) -> str:
        return trackingnet.frame_relpath(location, raw_index)
