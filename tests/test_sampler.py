from __future__ import annotations

import logging

import numpy as np
import pytest

from lib.train.data.pairs import TrainingPairs
from lib.train.data.sampler import (
    PairSampler, SequencePicker, job_rng, normalise_weights, sample_frames, samples_per_dataset,
)
from lib.train.dataset import GOT10k
from lib.train.dataset.base import SequenceInfo, Track
from lib.utils.lmdb_store import FolderStore
from tests.test_datasets_fixtures import make_got10k


class FakeDataset:
    """In-memory dataset: sequence i has `lengths[i]` frames; frame f of sequence s reads as value s*1000+f."""

    def __init__(self, name, lengths, valid=None, tracks_per_seq=1, broken=()):
        self.name = name
        self.broken = set(broken)
        self.sequences = []
        for i, n in enumerate(lengths):
            v = np.ones(n, bool) if valid is None else valid[i]
            boxes = np.tile([1.0, 2.0, 3.0, 4.0], (n, 1)) + i
            self.sequences.append(SequenceInfo(f"{name}{i}", n, tuple(Track(boxes, v) for _ in range(tracks_per_seq))))

    def num_sequences(self):
        return len(self.sequences)

    def sequence(self, i):
        return self.sequences[i]

    def read_frame(self, s, f):
        if (s, f) in self.broken:
            raise ValueError(f"{self.name}/{s}/{f}.jpg could not be decoded")
        return np.full((2, 2, 3), s * 1000 + f, dtype=np.int64)

    def frame_location(self, s, f):
        return f"{self.name}/{s}/{f}.jpg"


def test_weights_and_counts_hand_worked():
    np.testing.assert_allclose(normalise_weights([1, 1, 1, 1]), [0.25] * 4)
    assert samples_per_dataset(normalise_weights([1, 1, 1, 1]), 131072).tolist() == [32768] * 4
    assert samples_per_dataset(normalise_weights([1, 2]), 10).tolist() == [3, 7]  # int(3.33) = 3, rest to last
    with pytest.raises(ValueError, match="non-negative"):
        normalise_weights([1, -1])


def test_sequence_picker_plan():
    picker = SequencePicker([3, 5], normalise_weights([1, 3]), 40, seed=7)
    datasets, sequences = picker.plan(0)
    assert (datasets == 0).sum() == 10 and (datasets == 1).sum() == 30
    # concatenated permutations: dataset 0 (10 slots, 3 seqs) uses each sequence 3 or 4 times, dataset 1 each 6.
    assert sorted(np.bincount(sequences[datasets == 0])) == [3, 3, 4]
    assert np.bincount(sequences[datasets == 1]).tolist() == [6] * 5
    p2 = tuple(a.copy() for a in picker.plan(2))
    assert not np.array_equal(p2[1], sequences) or not np.array_equal(p2[0], datasets)
    fresh = SequencePicker([3, 5], normalise_weights([1, 3]), 40, seed=7)
    np.testing.assert_array_equal(fresh.plan(2)[1], p2[1])
    np.testing.assert_array_equal(picker.plan(0)[1], sequences)  # going back resets the generator
    # upstream: one default_rng(seed), every epoch one shuffle pass
    rng = np.random.default_rng(7)
    chunks = []
    for _ in range(4):
        chunk = np.arange(3)
        rng.shuffle(chunk)
        chunks.append(chunk)
    first = np.concatenate(chunks)[:10]
    chunks = []
    for _ in range(6):
        chunk = np.arange(5)
        rng.shuffle(chunk)
        chunks.append(chunk)
    order = rng.permutation(40)
    expected = np.concatenate([first, np.concatenate(chunks)[:30]])[order]
    np.testing.assert_array_equal(sequences, expected)


def test_job_rng_matches_upstream_seeding():
    a = job_rng(42, 1, 3, 17).random(4)
    b = np.random.Generator(np.random.PCG64((42, 1, 3, 1, 17))).random(4)  # upstream: PCG64(rng_seed + (job,))
    np.testing.assert_array_equal(a, b)


def test_sample_frames_properties():
    rng = np.random.default_rng(0)
    valid = rng.random(600) > 0.3
    valid[:50] = False
    for _ in range(3000):
        z, x = sample_frames(valid, 100, rng)
        assert valid[z] and valid[x] and abs(z - x) <= 100
        assert z != x  # plenty of valid frames within reach
    lonely = np.zeros(400, bool)
    lonely[[10, 300]] = True  # the other valid frame is out of reach -> template reused
    assert all(z == x for z, x in (sample_frames(lonely, 100, rng) for _ in range(50)))
    assert sample_frames(np.array([True]), 100, rng) == (0, 0)


def test_sample_frames_draw_order():
    valid = np.array([True, False, True, True, True])
    z, x = sample_frames(valid, 2, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    z_expected = rng.choice(np.array([0, 2, 3, 4]))
    cands = [i for i in range(max(z_expected - 2, 0), min(z_expected + 3, 5)) if valid[i] and i != z_expected]
    assert (z, x) == (z_expected, rng.choice(np.array(cands)))


def test_replacement_pairs_follow_dataset_weights():
    datasets = [FakeDataset("a", [5] * 3), FakeDataset("b", [5] * 50), FakeDataset("c", [1] * 2, tracks_per_seq=3)]
    sampler = PairSampler(datasets, [1, 1, 2], 100, 100, seed=0)
    rng = np.random.default_rng(1)
    draws = [sampler.replacement(rng) for _ in range(8000)]
    freq = np.bincount([d.dataset_index for d in draws], minlength=3) / len(draws)
    np.testing.assert_allclose(freq, [0.25, 0.25, 0.5], atol=0.02)
    tracks = np.bincount([d.track_index for d in draws if d.dataset_index == 2], minlength=3)
    assert tracks.min() > 0.25 * tracks.sum()  # track picked uniformly among the image's 3 objects


def identity_processing(images, boxes, rng):
    (z_image, x_image), (z_box, x_box) = images, boxes
    return {"z": int(z_image[0, 0, 0]), "x": int(x_image[0, 0, 0]), "z_box": z_box, "x_box": x_box}


def test_training_pairs_ranks_and_reproducibility():
    datasets = [FakeDataset("a", [50] * 4), FakeDataset("b", [30] * 6)]
    make = lambda rank: TrainingPairs(datasets, [1, 1], 64, 100, identity_processing, seed=3, rank=rank, world_size=2)
    r0, r1 = make(0), make(1)
    assert len(r0) == len(r1) == 32
    assert [r0.global_index(i) for i in range(3)] == [0, 2, 4] and r1.global_index(0) == 1
    r0.set_epoch(1)
    again = make(0)
    again.set_epoch(1)
    for i in range(len(r0)):
        a, b = r0[i], again[i]
        assert (a["z"], a["x"]) == (b["z"], b["x"])
        assert a["z"] // 1000 == a["x"] // 1000 and abs(a["z"] - a["x"]) <= 100  # same sequence, gap bound
    r0.set_epoch(2)
    assert [r0[i]["z"] for i in range(8)] != [again[i]["z"] for i in range(8)]
    with pytest.raises(IndexError):
        r0[32]


def test_rejected_crop_draws_replacement_with_same_rng():
    datasets = [FakeDataset("a", [10] * 3)]
    calls = []

    def reject_first(images, boxes, rng):
        z = images[0]
        calls.append(int(z[0, 0, 0]))
        return None if len(calls) == 1 else {"z": int(z[0, 0, 0])}

    pairs = TrainingPairs(datasets, [1], 8, 100, reject_first, seed=0)
    out = pairs[5]
    rng = job_rng(0, 0, 0, 5)
    first = pairs.sampler.pair(0, 5, rng)
    second = pairs.sampler.replacement(rng)
    assert calls[0] == first.sequence_index * 1000 + first.template_frame
    assert out["z"] == second.sequence_index * 1000 + second.template_frame


def test_unreadable_frames_counted_replaced_and_bounded(caplog):
    broken = {(0, f) for f in range(20)}  # sequence 0 of 10 unreadable
    datasets = [FakeDataset("a", [20] * 10, broken=broken)]
    pairs = TrainingPairs(datasets, [1], 50, 100, identity_processing, seed=1, max_failure_rate=0.5)
    with caplog.at_level(logging.WARNING):
        items = [pairs[i] for i in range(50)]
    assert all(item["z"] // 1000 != 0 for item in items)
    assert pairs.read_failures > 0 and "a/0/" in caplog.text
    strict = TrainingPairs(datasets, [1], 400, 100, identity_processing, seed=1, min_draws_for_failure_check=100)
    with pytest.raises(RuntimeError, match=r"unreadable frames \(more than 1%\)"):
        for i in range(len(strict)):
            strict[i]


def test_training_pairs_on_real_folder_with_corrupt_jpg(tmp_path, caplog):
    make_got10k(str(tmp_path), frames=6)
    (tmp_path / "train" / "GOT-10k_Train_000001" / "00000002.jpg").write_bytes(b"garbage")
    ds = GOT10k(FolderStore(tmp_path), "g", "train")
    pairs = TrainingPairs([ds], [1], 40, 100, identity_processing, seed=0, min_draws_for_failure_check=10**6)
    with caplog.at_level(logging.WARNING):
        items = [pairs[i] for i in range(40)]
    assert len(items) == 40 and pairs.read_failures > 0
    assert "GOT-10k_Train_000001/00000002.jpg" in caplog.text
    np.testing.assert_allclose(items[0]["z_box"][2:] - items[0]["z_box"][:2], [10.25, 8.0])
