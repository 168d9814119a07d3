"""Per-epoch sequence picking and template/search pair sampling, as upstream (trackit/LoRAT:
trackit/data/sampling/per_sequence/random/sampler.py, trackit/data/sampling/utils/dataset_sampling_weight.py,
trackit/data/methods/siamese_tracker_train/worker.py), with the same numpy draw order so a (seed, rank, epoch, job index) gives the same pair.

* `SequencePicker`: each dataset gets `int(w * samples_per_epoch)` slots (the last one the remainder), filled
  by concatenated random permutations of its sequences; all slots are then permuted globally. One generator
  seeded once with `seed` is advanced by one shuffle per epoch (epoch e = the (e+1)-th shuffle), identical on
  every rank.
* `sample_pair`: track `integers(0, n)` if several; template `choice(valid frames)`; search
  `choice(valid frames within [z - max_gap, z + max_gap], z excluded)`, falling back to the template frame.
* `sample_replacement`: `choice(n_datasets, p=weights)`, `integers(0, n_sequences)`, then `sample_pair`.
* Tuplets (LoRATv2, upstream trackit/data/methods/LoRATv2_train/temporal_training_tuplet_sampling/): after the
  pair, a `TupletRule` picks the frame of every model input, the template then each search stream in model order.
  `TUPLET_RULES` is keyed by the number of search streams: one stream is the pair itself (template z, search x);
  two streams add an auxiliary template frame a = `choice(valid frames of the track except z)` with no gap limit
  (a = z when there is none, without a draw) and give (template a, reference z, search x).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Protocol, Sequence

import numpy as np

from lib.train.dataset.base import SequenceInfo


class PairSource(Protocol):
    """What the sampler needs from a dataset (lib.train.dataset.TrackingDataset satisfies it)."""

    name: str

    def num_sequences(self) -> int: ...

    def sequence(self, index: int) -> SequenceInfo: ...


@dataclass(frozen=True)
class PairDraw:
    """One sampled training pair: both frames come from the same track of one sequence."""

    dataset_index: int
    sequence_index: int
    track_index: int
    template_frame: int
    search_frame: int


def normalise_weights(weights: Sequence[float]) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 1 or len(weights) == 0 or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"dataset weights must be non-negative with a positive sum, got {weights.tolist()}")
    return weights / weights.sum()


def samples_per_dataset(weights: np.ndarray, samples_per_epoch: int) -> np.ndarray:
    """Upstream's split of the epoch: `int(w * total)` each, the last dataset gets the remainder."""
    counts = (weights * samples_per_epoch).astype(np.int64)
    counts[-1] = samples_per_epoch - counts[:-1].sum()
    return counts


def job_rng(seed: int, rank: int, epoch: int, job_index: int) -> np.random.Generator:
    """The per-sample generator upstream uses: seed tuple (seed, rank, epoch, is_train=1, job_index)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence((seed, rank, epoch, 1, job_index))))


class SequencePicker:
    """The epoch's list of (dataset index, sequence index), one entry per sample of the epoch."""

    def __init__(self, num_sequences: Sequence[int], weights: np.ndarray, samples_per_epoch: int, seed: int) -> None:
        if any(n <= 0 for n in num_sequences):
            raise ValueError(f"every dataset needs at least one sequence, got sizes {list(num_sequences)}")
        self.num_sequences = list(num_sequences)
        self.counts = samples_per_dataset(weights, samples_per_epoch)
        self.seed = seed
        self._rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
        self._shuffles_done = 0
        self._plan: tuple[np.ndarray, np.ndarray] | None = None

    def _shuffle(self) -> tuple[np.ndarray, np.ndarray]:
        dataset_indices, sequence_indices = [], []
        for index, (n, count) in enumerate(zip(self.num_sequences, self.counts)):
            chunks, filled = [], 0
            base = np.arange(n, dtype=np.int64)
            while filled < count:
                chunk = copy.copy(base)
                self._rng.shuffle(chunk)
                chunks.append(chunk)
                filled += n
            sequence_indices.append(np.concatenate(chunks)[:count] if chunks else base[:0])
            dataset_indices.append(np.full(count, index, dtype=np.int64))
        datasets = np.concatenate(dataset_indices)
        sequences = np.concatenate(sequence_indices)
        order = self._rng.permutation(len(datasets))
        return datasets[order], sequences[order]

    def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(dataset indices, sequence indices) of `epoch`; advancing forward is incremental."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if epoch + 1 < self._shuffles_done:
            self._rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed)))
            self._shuffles_done = 0
        while self._shuffles_done < epoch + 1:
            self._plan = self._shuffle()
            self._shuffles_done += 1
        return self._plan


def other_valid_frames(valid: np.ndarray, z: int, max_gap: int | None) -> np.ndarray:
    """Valid frames of a track within `max_gap` of frame `z` (None: anywhere), `z` itself excluded, ascending."""
    length = len(valid)
    begin, end = (0, length) if max_gap is None else (max(z - max_gap, 0), min(z + max_gap + 1, length))
    mask = valid[begin:end].copy()
    mask[z - begin] = False
    return np.arange(begin, end)[mask]


def sample_frames(valid: np.ndarray, max_gap: int, rng: np.random.Generator) -> tuple[int, int]:
    """(template, search) frame indices of one track ("interval" mode, no range extension)."""
    length = len(valid)
    candidates = np.arange(length)[valid]
    if len(candidates) == 0:
        raise ValueError("track has no valid frame (datasets must drop such tracks)")
    z = int(rng.choice(candidates))
    if length == 1:
        return z, z
    search_candidates = other_valid_frames(valid, z, max_gap)
    if len(search_candidates) == 0:
        return z, z
    return z, int(rng.choice(search_candidates))


def sample_pair(
    datasets: Sequence[PairSource], dataset_index: int, sequence_index: int, max_gap: int, rng: np.random.Generator
) -> PairDraw:
    sequence = datasets[dataset_index].sequence(sequence_index)
    n_tracks = len(sequence.tracks)
    track_index = int(rng.integers(0, n_tracks)) if n_tracks > 1 else 0
    z, x = sample_frames(sequence.tracks[track_index].valid, max_gap, rng)
    return PairDraw(dataset_index, sequence_index, track_index, z, x)


# The frames of one sample from its pair and the pair's track validity: template, then every search stream.
TupletRule = Callable[[PairDraw, np.ndarray, np.random.Generator], tuple[int, ...]]


def pair_frames(pair: PairDraw, valid: np.ndarray, rng: np.random.Generator) -> tuple[int, ...]:
    """One search stream (LoRAT, LoRATv2 phase 1; upstream's `passthrough`): template z, search x. No draw."""
    return pair.template_frame, pair.search_frame


def increased_difficulty_frames(pair: PairDraw, valid: np.ndarray, rng: np.random.Generator) -> tuple[int, ...]:
    """Two search streams (LoRATv2 phase 2): template a, dynamic reference z, search x. The template a is any other
    valid frame of the track, however far from z, so it is usually further from x than the reference is."""
    candidates = other_valid_frames(valid, pair.template_frame, None)
    aux = int(rng.choice(candidates)) if len(candidates) else pair.template_frame
    return aux, pair.template_frame, pair.search_frame


TUPLET_RULES: MappingProxyType[int, TupletRule] = MappingProxyType({1: pair_frames, 2: increased_difficulty_frames})


def tuplet_rule(num_search_streams: int) -> TupletRule:
    """The frame rule of a model with `num_search_streams` search streams."""
    if num_search_streams not in TUPLET_RULES:
        raise ValueError(f"no training-frame rule for {num_search_streams} search streams; known: "
                         f"{', '.join(map(str, TUPLET_RULES))} (add one to TUPLET_RULES in lib/train/data/sampler.py)")
    return TUPLET_RULES[num_search_streams]


def sample_replacement(
    datasets: Sequence[PairSource], weights: np.ndarray, max_gap: int, rng: np.random.Generator
) -> PairDraw:
    """A fresh pair from a random dataset (by weight) and a uniformly random sequence of it."""
    dataset_index = int(rng.choice(np.arange(len(datasets)), p=weights))
    sequence_index = int(rng.integers(0, datasets[dataset_index].num_sequences()))
    return sample_pair(datasets, dataset_index, sequence_index, max_gap, rng)


class PairSampler:
    """Datasets + weights + epoch plan: the pair for a global job index, and replacement pairs."""

    def __init__(
        self, datasets: Sequence[PairSource], weights: Sequence[float], samples_per_epoch: int, max_gap: int, seed: int
    ) -> None:
        if len(datasets) != len(weights):
            raise ValueError(f"{len(datasets)} datasets but {len(weights)} weights")
        if samples_per_epoch <= 0 or max_gap <= 0:
            raise ValueError(f"samples_per_epoch and max_gap must be positive, got {samples_per_epoch}, {max_gap}")
        self.datasets = list(datasets)
        self.weights = normalise_weights(weights)
        self.samples_per_epoch = samples_per_epoch
        self.max_gap = max_gap
        self.picker = SequencePicker([d.num_sequences() for d in self.datasets], self.weights, samples_per_epoch, seed)

    def pair(self, epoch: int, global_index: int, rng: np.random.Generator) -> PairDraw:
        if not 0 <= global_index < self.samples_per_epoch:
            raise IndexError(f"job index {global_index} outside [0, {self.samples_per_epoch})")
        dataset_indices, sequence_indices = self.picker.plan(epoch)
        return sample_pair(
            self.datasets, int(dataset_indices[global_index]), int(sequence_indices[global_index]), self.max_gap, rng
        )

    def replacement(self, rng: np.random.Generator) -> PairDraw:
        return sample_replacement(self.datasets, self.weights, self.max_gap, rng)
