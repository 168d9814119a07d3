"""`TrainingPairs`: the torch Dataset of training pairs the DataLoader iterates (one item = one processed pair).

Item `i` of rank `r` is global job `r + i * world_size` of the epoch (the DistributedSampler stride). Its
generator is `job_rng(seed, 0, epoch, job)`: the job index is already global, so leaving the rank out of the
seed makes an epoch's samples identical whatever the number of processes (a 2-GPU run sees the same pairs as a
1-GPU run with the same global batch); the pair comes from the epoch plan, the tuplet rule picks the frame of each
model input from it (`lib/train/data/sampler.py`: the pair itself for one search stream, LoRATv2 phase 2 adds a
template frame), the frames are read (each distinct frame once) and `processing(images, boxes_xyxy, rng)` builds
the sample, lists in model order (template first). When processing rejects the crop (returns None) a replacement
pair is drawn with the same generator, as upstream. An unreadable frame is logged with its location, counted, and
replaced the same way; if more than `max_failure_rate` of the pairs this process has drawn fail (checked after
`min_draws_for_failure_check` draws), an error stops training.

Call `set_epoch(epoch)` before creating each epoch's DataLoader iterator (workers copy the dataset when the
iterator starts, so do not use persistent_workers).
"""
from __future__ import annotations

import logging
from typing import Callable, Protocol, Sequence

import numpy as np
import torch.utils.data

from lib.train.data.sampler import PairDraw, PairSampler, PairSource, TupletRule, job_rng, pair_frames
from lib.train.dataset.base import Track

logger = logging.getLogger(__name__)

Processing = Callable[[Sequence[np.ndarray], Sequence[np.ndarray], np.random.Generator], "dict | None"]


class FrameSource(PairSource, Protocol):
    """A PairSource that can also read frames (lib.train.dataset.TrackingDataset)."""

    def read_frame(self, seq_index: int, frame_index: int) -> np.ndarray: ...

    def frame_location(self, seq_index: int, frame_index: int) -> str: ...


class TrainingPairs(torch.utils.data.Dataset):
    def __init__(
        self,
        datasets: Sequence[FrameSource],
        weights: Sequence[float],
        samples_per_epoch: int,
        max_gap: int,
        processing: Processing,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        max_failure_rate: float = 0.01,
        min_draws_for_failure_check: int = 100,
        max_rejections: int = 1000,
        tuplets: TupletRule = pair_frames,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, world_size={world_size})")
        if samples_per_epoch < world_size:
            raise ValueError(f"samples_per_epoch ({samples_per_epoch}) is smaller than world_size ({world_size})")
        self.sampler = PairSampler(datasets, weights, samples_per_epoch, max_gap, seed)
        self.processing = processing
        self.tuplets = tuplets
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.max_failure_rate = max_failure_rate
        self.min_draws_for_failure_check = min_draws_for_failure_check
        self.max_rejections = max_rejections
        self.epoch = 0
        self.draws = 0  # pairs drawn by this process (first draws and replacements)
        self.read_failures = 0
        self.sampler.picker.plan(0)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's plan (computed here, in the main process, before workers copy the dataset)."""
        self.sampler.picker.plan(epoch)
        self.epoch = epoch

    def __len__(self) -> int:
        return self.sampler.samples_per_epoch // self.world_size

    def global_index(self, index: int) -> int:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} outside [0, {len(self)})")
        return self.rank + index * self.world_size

    def _track(self, pair: PairDraw) -> Track:
        return self.sampler.datasets[pair.dataset_index].sequence(pair.sequence_index).tracks[pair.track_index]

    def _read(self, pair: PairDraw, track: Track,
              frames: tuple[int, ...]) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
        """The images and boxes (of `pair`'s `track`) of `frames`, each distinct frame read once, or None if one is
        unreadable."""
        dataset = self.sampler.datasets[pair.dataset_index]
        images: dict[int, np.ndarray] = {}
        for frame in dict.fromkeys(frames):
            try:
                images[frame] = dataset.read_frame(pair.sequence_index, frame)
            except (OSError, ValueError) as exc:
                self.read_failures += 1
                logger.warning(
                    "skipping unreadable frame %s (%s); drawing a replacement pair (%d of %d draws failed)",
                    dataset.frame_location(pair.sequence_index, frame), exc, self.read_failures, self.draws,
                )
                self._check_failure_rate()
                return None
        return [images[f] for f in frames], [track.boxes[f].copy() for f in frames]

    def _check_failure_rate(self) -> None:
        if self.draws >= self.min_draws_for_failure_check and self.read_failures > self.max_failure_rate * self.draws:
            raise RuntimeError(
                f"{self.read_failures} of the {self.draws} training pairs drawn by this process had unreadable "
                f"frames (more than {self.max_failure_rate:.0%}); the dataset files are damaged or the paths in "
                "local.py are wrong. See the warnings above for the files, then repair or re-extract them."
            )

    def __getitem__(self, index: int) -> dict:
        rng = job_rng(self.seed, 0, self.epoch, self.global_index(index))
        pair = self.sampler.pair(self.epoch, self.global_index(index), rng)
        for _ in range(self.max_rejections):
            self.draws += 1
            track = self._track(pair)
            read = self._read(pair, track, self.tuplets(pair, track.valid, rng))
            sample = None if read is None else self.processing(*read, rng)
            if sample is not None:
                return sample
            pair = self.sampler.replacement(rng)
        raise RuntimeError(
            f"{self.max_rejections} pairs in a row were rejected for job {self.global_index(index)} of epoch "
            f"{self.epoch}; the processing step rejects (almost) every crop, check its settings"
        )
