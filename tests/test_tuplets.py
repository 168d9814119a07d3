"""LoRATv2 training samples: the phase-2 frame rule (auxiliary template) and processing with several search streams."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.train.data import processing as P
from lib.train.data.pairs import TrainingPairs
from lib.train.data.processing import LoRATProcessing, collate, stream_keys
from lib.train.data.sampler import (PairDraw, increased_difficulty_frames, job_rng, pair_frames, sample_pair,
                                    tuplet_rule)
from lib.train.dataset.base import SequenceInfo, Track
from test_processing import replay_failed_tries

# phase-2 demo geometry: template 56 px (af 2), reference 84 px (af 4), search 126 px (af 5)
PHASE2 = dict(template_size=(56, 56), search_size=(126, 126), template_area_factor=2.0, search_area_factor=5.0,
              scale_jitter=0.25, translation_jitter=3.0, min_object_size=10.0, reference_streams=[((84, 84), 4.0)])
BOXES = [[100., 80., 160., 130.], [90., 70., 150., 125.], [110., 90., 175., 150.]]  # template, reference, search


class FrameDataset:
    """Sequence s has one track over `lengths[s]` frames with validity `valid[s]`; frame f reads as s * 1000 + f and
    every read is counted."""

    name = "frames"

    def __init__(self, lengths, valid=None):
        self.sequences = [SequenceInfo(f"s{i}", n, (Track(np.tile([1., 2., 30., 40.], (n, 1)),
                                                          np.ones(n, bool) if valid is None else valid[i]),))
                          for i, n in enumerate(lengths)]
        self.reads = []

    def num_sequences(self):
        return len(self.sequences)

    def sequence(self, i):
        return self.sequences[i]

    def read_frame(self, s, f):
        self.reads.append((s, f))
        return np.full((2, 2, 3), s * 1000 + f, dtype=np.int64)

    def frame_location(self, s, f):
        return f"s{s}/{f}"


def frames_of(images, boxes, rng):
    return {"frames": [int(image[0, 0, 0]) % 1000 for image in images], "ids": [id(image) for image in images]}


# ------------------------------------------------------------------------------------------------ frame rules
def test_rule_registry_by_number_of_search_streams():
    assert tuplet_rule(1) is pair_frames and tuplet_rule(2) is increased_difficulty_frames
    with pytest.raises(ValueError, match="no training-frame rule for 3 search streams; known: 1, 2"):
        tuplet_rule(3)


def test_phase2_frames_auxiliary_template_reference_is_z_search_near_z():
    valid = np.ones(600, bool)
    valid[::7] = False
    dataset = FrameDataset([600], [valid])
    pairs = TrainingPairs([dataset], [1], 400, 100, frames_of, seed=4, tuplets=increased_difficulty_frames)
    far = 0
    for i in range(len(pairs)):
        a, z, x = pairs[i]["frames"]
        assert valid[a] and valid[z] and valid[x]
        assert a != z  # the track has other valid frames
        assert x != z and abs(x - z) <= 100  # the SiamFC pair, within max_gap
        far += abs(a - z) > 100
    assert far > 200  # no gap limit: in a 600-frame track most auxiliary frames lie beyond max_gap


def test_phase2_auxiliary_template_is_z_without_another_valid_frame_and_draws_nothing():
    for length, valid in ((1, np.array([True])), (5, np.array([False, False, True, False, False]))):
        rng = np.random.default_rng(0)
        pair = PairDraw(0, 0, 0, int(np.flatnonzero(valid)[0]), int(np.flatnonzero(valid)[0]))
        state = rng.bit_generator.state
        assert increased_difficulty_frames(pair, valid, rng) == (pair.template_frame,) * 3
        assert rng.bit_generator.state == state


def test_phase2_draw_order_pair_then_one_choice_over_other_valid_frames():
    """Upstream: the SiamFC pair (z then x), then `choice` over every valid frame of the track except z, ascending."""
    valid = np.array([True, False, True, True, True, False, True, True])
    dataset = FrameDataset([8], [valid])
    pairs = TrainingPairs([dataset], [1], 16, 2, frames_of, seed=9, tuplets=increased_difficulty_frames)
    for index in range(16):
        got = pairs[index]["frames"]
        rng = job_rng(9, 0, 0, index)
        pair = sample_pair([dataset], 0, 0, 2, rng)
        others = [f for f in range(8) if valid[f] and f != pair.template_frame]
        assert got == [int(rng.choice(np.array(others))), pair.template_frame, pair.search_frame]


def test_pair_rule_draws_nothing_so_lorat_samples_are_unchanged():
    rng = np.random.default_rng(1)
    state = rng.bit_generator.state
    assert pair_frames(PairDraw(0, 0, 0, 3, 7), np.ones(10, bool), rng) == (3, 7)
    assert rng.bit_generator.state == state
    dataset = FrameDataset([30] * 3)
    default = TrainingPairs([dataset], [1], 8, 100, frames_of, seed=2)
    explicit = TrainingPairs([dataset], [1], 8, 100, frames_of, seed=2, tuplets=pair_frames)
    assert [default[i]["frames"] for i in range(8)] == [explicit[i]["frames"] for i in range(8)]


def test_each_distinct_frame_is_read_once_and_passed_as_the_same_array():
    dataset = FrameDataset([1, 1])  # single-frame tracks: a = z = x
    pairs = TrainingPairs([dataset], [1], 4, 100, frames_of, seed=0, tuplets=increased_difficulty_frames)
    sample = pairs[0]
    assert len(dataset.reads) == 1 and len(set(sample["ids"])) == 1


# ------------------------------------------------------------------------------------------------ processing
def _frame(seed: int, h: int = 240, w: int = 320) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _phase2_sample(seed: int, **overrides):
    processing = LoRATProcessing(**{**PHASE2, **overrides})
    return processing([_frame(1), _frame(2), _frame(3)], BOXES, np.random.default_rng(seed))


def test_stream_keys():
    assert stream_keys(1) == ("x",) and stream_keys(2) == ("x_0", "x") and stream_keys(3) == ("x_0", "x_1", "x")


def test_phase2_sample_shapes_and_keys():
    sample = next(s for s in map(_phase2_sample, range(10)) if s is not None)
    assert set(sample) == {"z", "x_0", "x", "z_feat_mask", "search_box", "positive_indices"}
    assert sample["z"].shape == (3, 56, 56) and sample["x_0"].shape == (3, 84, 84)
    assert sample["x"].shape == (3, 126, 126) and sample["x"].dtype == np.float32
    assert sample["z_feat_mask"].shape == (4, 4)
    assert sample["positive_indices"].max() < 81  # the 9 x 9 grid of the 126 px search stream
    batch = collate([sample, _phase2_sample(0) or sample])
    assert batch["x_0"].shape == (2, 3, 84, 84) and batch["x"].shape == (2, 3, 126, 126)
    assert batch["search_boxes"].shape == (2, 4) and batch["z"].dtype == torch.float32


def test_labels_come_from_the_last_stream_and_the_mask_from_the_template():
    """No jitter and (practically) no flip: every crop is centred on its box, so the targets are hand-computable.
    Search: 20 x 20 box, area factor 5 -> 100 px window on 126 px, box [50.4, 75.6] in crop pixels, normalised
    [0.4, 0.6]; 14 px cells 3..5 of the 9 x 9 grid. Template: 20 x 10 box, factor 2 -> 28.3 px window
    on 56 px (scale 1.98), box [8.2, 18.1, 47.8, 37.9]: columns 0..3, rows 1..2 of the 4 x 4 mask. The reference's own (different) box does not enter the labels. The crops
    are pixel-aligned (lib/utils/crop.py), which may move a box by about a pixel: 1/126 of the normalised box."""
    processing = LoRATProcessing(**{**PHASE2, "scale_jitter": 0.0, "translation_jitter": 0.0,
                                    "flip_probability": 1e-12})
    boxes = [[50., 60., 70., 70.], [10., 10., 40., 25.], [150., 100., 170., 120.]]
    sample = processing([_frame(1), _frame(2), _frame(3)], boxes, np.random.default_rng(0))
    np.testing.assert_allclose(sample["search_box"], [0.4, 0.4, 0.6, 0.6], atol=1.2 / 126)
    assert sample["positive_indices"].tolist() == [r * 9 + c for r in (3, 4, 5) for c in (3, 4, 5)]
    mask = np.zeros((4, 4), np.int64)
    mask[1:3, :] = 1
    np.testing.assert_array_equal(sample["z_feat_mask"], mask)


def test_draw_order_reference_then_search_tries_then_three_flips_three_jitters_one_deit():
    processing = LoRATProcessing(**PHASE2)
    checked = 0
    for seed in range(8):
        rng = np.random.default_rng(seed)
        if processing([_frame(1), _frame(2), _frame(3)], BOXES, rng) is None:
            continue
        replay = np.random.default_rng(seed)
        for box, factor, size in ((BOXES[1], 4.0, (84, 84)), (BOXES[2], 5.0, (126, 126))):
            assert P.jittered_search_params(box, factor, size, 0.25, 3.0, 10.0, replay) is not None
        for _ in range(3):  # flips: template, reference, search
            replay.random()
        for _ in range(3):  # colour jitter, same order
            replay.permutation(4)
            for _ in range(3):
                replay.uniform(0.6, 1.4)
        if replay.choice(3) == 2:  # one DeiT-III choice for all three images
            replay.uniform(0.1, 2.0)
        assert rng.bit_generator.state == replay.bit_generator.state
        checked += 1
    assert checked >= 6


def test_a_failing_reference_rejects_the_tuplet_before_any_search_draw():
    processing = LoRATProcessing(**PHASE2)
    frame = _frame(4, 100, 1200)
    rng = np.random.default_rng(3)
    thin = [0., 40., 1000., 41.]  # 1 px high: never 10 px in the crop
    assert processing([frame, frame, frame], [[10., 10., 60., 60.], thin, BOXES[2]], rng) is None
    assert rng.bit_generator.state == replay_failed_tries(np.random.default_rng(3)).bit_generator.state


def test_a_failing_search_rejects_the_tuplet_after_the_reference_tries():
    processing = LoRATProcessing(**PHASE2)
    frame = _frame(4, 100, 1200)
    rng = np.random.default_rng(5)
    reference = [300., 30., 340., 70.]
    assert processing([frame, frame, frame], [[10., 10., 60., 60.], reference, [0., 40., 1000., 41.]], rng) is None
    replay = np.random.default_rng(5)
    assert P.jittered_search_params(reference, 4.0, (84, 84), 0.25, 3.0, 10.0, replay) is not None
    assert rng.bit_generator.state == replay_failed_tries(replay).bit_generator.state


def test_each_frame_is_padded_with_its_own_mean(monkeypatch):
    fills = []
    crop = P.crop_and_resize

    def spy(image, scale, translation, size, fill):
        fills.append(np.asarray(fill).copy())
        return crop(image, scale, translation, size, fill)

    monkeypatch.setattr(P, "crop_and_resize", spy)
    frames = [_frame(1), _frame(2) // 2, _frame(3) // 4]
    processing = LoRATProcessing(**PHASE2)
    sample = next(s for s in (processing(frames, BOXES, np.random.default_rng(i)) for i in range(10))
                  if s is not None)
    assert sample is not None
    for fill, frame in zip(fills[-3:], frames):
        np.testing.assert_allclose(fill, frame.reshape(-1, 3).mean(axis=0), rtol=1e-6)


def test_wrong_number_of_frames_is_an_error():
    with pytest.raises(ValueError, match="expected a template and 2 search-stream frames"):
        LoRATProcessing(**PHASE2)([_frame(1), _frame(2)], BOXES[:2], np.random.default_rng(0))
