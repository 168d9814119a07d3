"""Common pieces of the training datasets: sequence records and annotation cleaning (parsing: lib/datasets).

Every dataset class exposes the small interface the pair sampler uses: `name`, `num_sequences()`,
`sequence(i) -> SequenceInfo`, `read_frame(seq_i, frame_i) -> RGB uint8`, `frame_location(seq_i, frame_i)`.
Annotations are parsed eagerly at construction (text only; image sizes from the first frame's header) and
cleaned exactly as upstream's training filters (upstream trackit/LoRAT: config/_dataset/train.yaml):
xywh -> continuous xyxy; valid boxes clipped to the image; a box whose clipped area is not positive becomes
invalid; tracks with no valid box are dropped; sequences left without tracks are dropped; leading and
trailing frames where no track is valid are trimmed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib.utils.lmdb_store import Store


@dataclass(frozen=True)
class Track:
    """One object through a sequence: `boxes` float64 (N,4) xyxy continuous, `valid` bool (N,).

    `cover` (GOT-10k only) is the per-frame visible-ratio level 0..8 from cover.label, else None.
    """

    boxes: np.ndarray
    valid: np.ndarray
    cover: np.ndarray | None = None


@dataclass(frozen=True)
class SequenceInfo:
    name: str
    frame_count: int
    tracks: tuple[Track, ...]


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    out = np.array(boxes, dtype=np.float64, copy=True)
    out[:, 2:] += out[:, :2]
    return out


def clean_sequence(
    name: str, tracks: list[Track], image_size: tuple[int, int]
) -> tuple[SequenceInfo, int] | None:
    """Apply upstream's cleaning to raw xyxy tracks; returns (sequence, first kept raw frame) or None."""
    width, height = image_size
    kept = []
    for track in tracks:
        boxes = track.boxes.copy()
        valid = track.valid & np.isfinite(boxes).all(axis=1)
        clipped = boxes[valid]
        clipped[:, 0::2] = np.clip(clipped[:, 0::2], 0.0, width)
        clipped[:, 1::2] = np.clip(clipped[:, 1::2], 0.0, height)
        boxes[valid] = clipped
        positive = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        valid[np.flatnonzero(valid)[~positive]] = False
        if valid.any():
            kept.append(Track(boxes, valid, track.cover))
    if not kept:
        return None
    annotated = np.logical_or.reduce([track.valid for track in kept])
    first = int(np.argmax(annotated))
    last = len(annotated) - int(np.argmax(annotated[::-1]))
    trimmed = tuple(
        Track(t.boxes[first:last], t.valid[first:last], None if t.cover is None else t.cover[first:last]) for t in kept
    )
    return SequenceInfo(name, last - first, trimmed), first


class TrackingDataset:
    """Cleaned sequences plus a way to locate their frames in a store. Subclasses fill it in `__init__`."""

    name: str

    def __init__(self, store: Store, name: str) -> None:
        self.name = name
        self.store = store
        self._sequences: list[SequenceInfo] = []
        self._frame_keys: list[tuple[str, int]] = []  # (sequence location, first kept raw frame)

    def frame_relpath(self, location: str, raw_index: int) -> str:
        """Store key of raw frame `raw_index` of the sequence stored at `location`."""
        raise NotImplementedError

    def _add_sequence(self, name: str, location: str, tracks: list[Track], image_size: tuple[int, int]) -> None:
        cleaned = clean_sequence(name, tracks, image_size)
        if cleaned is not None:
            sequence, first = cleaned
            self._sequences.append(sequence)
            self._frame_keys.append((location, first))

    def num_sequences(self) -> int:
        return len(self._sequences)

    def sequence(self, index: int) -> SequenceInfo:
        return self._sequences[index]

    def _key(self, seq_index: int, frame_index: int) -> str:
        sequence = self._sequences[seq_index]
        if not 0 <= frame_index < sequence.frame_count:
            raise IndexError(f"{self.name}/{sequence.name}: frame {frame_index} outside [0, {sequence.frame_count})")
        location, first = self._frame_keys[seq_index]
        return self.frame_relpath(location, first + frame_index)

    def frame_location(self, seq_index: int, frame_index: int) -> str:
        """Where the frame lives (file path or LMDB key), for logs and error messages."""
        return self.store.describe(self._key(seq_index, frame_index))

    def read_frame(self, seq_index: int, frame_index: int) -> np.ndarray:
        return self.store.read_image(self._key(seq_index, frame_index))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, sequences={self.num_sequences()})"
