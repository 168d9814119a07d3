from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image, ImageFilter, ImageOps

from lib.train.data import processing as P
from lib.train.data.processing import LoRATProcessing, collate

B224 = dict(template_size=(112, 112), search_size=(224, 224), template_area_factor=2.0, search_area_factor=4.0,
            scale_jitter=0.25, translation_jitter=3.0, min_object_size=10.0)


def _frame(seed: int, h: int = 240, w: int = 320) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _sample(seed: int, **overrides):
    processing = LoRATProcessing(**{**B224, **overrides})
    return processing([_frame(1), _frame(2)], [[100., 80., 160., 130.], [110., 90., 175., 150.]],
                      np.random.default_rng(seed))


def test_output_contract():
    sample = _sample(0)
    assert set(sample) == {'z', 'x', 'z_feat_mask', 'search_box', 'positive_indices'}
    assert sample['z'].shape == (3, 112, 112) and sample['z'].dtype == np.float32
    assert sample['x'].shape == (3, 224, 224) and sample['x'].dtype == np.float32
    assert sample['z_feat_mask'].shape == (8, 8) and sample['z_feat_mask'].dtype == np.int64
    assert set(np.unique(sample['z_feat_mask'])) == {0, 1}
    assert sample['search_box'].shape == (4,) and sample['search_box'].dtype == np.float32
    box = sample['search_box']
    assert np.all((box >= 0) & (box <= 1)) and box[0] < box[2] and box[1] < box[3]
    pos = sample['positive_indices']
    assert pos.dtype == np.int64 and pos.ndim == 1 and pos.size > 0
    assert np.all(np.diff(pos) > 0) and pos.min() >= 0 and pos.max() < 256
    # normalised pixel values are ImageNet-normalised multiples of 1/255
    mean, std = np.array(P.IMAGENET_MEAN), np.array(P.IMAGENET_STD)
    levels = sample['x'] * std[:, None, None] + mean[:, None, None]
    np.testing.assert_allclose(levels * 255, np.round(levels * 255), atol=1e-3)
    # the template box is centred: the middle cells are foreground, the border ring is background
    assert np.all(sample['z_feat_mask'][3:5, 3:5] == 1)
    assert np.all(sample['z_feat_mask'][[0, -1]] == 0) and np.all(sample['z_feat_mask'][:, [0, -1]] == 0)


def test_same_seed_same_sample_and_different_seed_differs():
    a, b, c = _sample(5), _sample(5), _sample(6)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a['x'], c['x'])


def _cells_overlapped(box_px: np.ndarray, cell: float, grid: int) -> np.ndarray:
    cols = [j for j in range(grid) if j * cell < box_px[2] and (j + 1) * cell > box_px[0]]
    rows = [i for i in range(grid) if i * cell < box_px[3] and (i + 1) * cell > box_px[1]]
    return np.array(sorted(i * grid + j for i in rows for j in cols), dtype=np.int64)


def test_positive_cells_are_exactly_the_cells_the_box_overlaps():
    checked = 0
    for seed in range(40):
        sample = _sample(seed)
        if sample is None:
            continue
        box_px = sample['search_box'].astype(np.float64) * 224
        cells = box_px / 14
        if np.any((np.abs(cells - np.round(cells)) < 1e-3) & (cells > 0.5) & (cells < 15.5)):
            continue  # edge on an inner cell border: the 1e-4 rasterisation margin decides (hand case below)
        np.testing.assert_array_equal(sample['positive_indices'], _cells_overlapped(box_px, 14., 16))
        checked += 1
    assert checked > 25


def test_positive_indices_hand_case():
    # [20, 30, 50, 45] / 14 = [1.43, 2.14, 3.57, 3.21] -> cols 1..3, rows 2..3 of a 16-wide map
    np.testing.assert_array_equal(P.positive_indices(np.array([20., 30., 50., 45.]), (224, 224), (16, 16)),
                                  [33, 34, 35, 49, 50, 51])
    # an edge exactly on a cell border does not enter the next cell: [28, 28, 56, 42] -> cols 2..3, row 2
    np.testing.assert_array_equal(P.positive_indices(np.array([28., 28., 56., 42.]), (224, 224), (16, 16)),
                                  [34, 35])
    with pytest.raises(ValueError, match="no response-map cell"):
        P.positive_indices(np.array([50., 30., 20., 45.]), (224, 224), (16, 16))


def replay_failed_tries(replay: np.random.Generator, tries: int = 12) -> np.random.Generator:
    """The draws of `tries` rejected search-crop jitters (upstream: a scale pair, then a translation pair, per try)."""
    for _ in range(tries):
        replay.standard_normal(2)
        replay.uniform(-1, 1, 2)
    return replay


def test_rejected_search_crop_returns_none_after_twelve_tries():
    processing = LoRATProcessing(**B224)
    rng = np.random.default_rng(3)
    frame = _frame(4, 100, 1200)
    assert processing([frame, frame], [[10., 10., 60., 60.], [0., 40., 1000., 41.]], rng) is None
    assert rng.bit_generator.state == replay_failed_tries(np.random.default_rng(3)).bit_generator.state


def test_rng_draw_order_matches_upstream():
    processing = LoRATProcessing(**B224)
    for seed in range(8):
        rng = np.random.default_rng(seed)
        sample = processing([_frame(1), _frame(2)], [[100., 80., 160., 130.], [110., 90., 175., 150.]], rng)
        if sample is None:
            continue
        replay = np.random.default_rng(seed)
        tries = 0
        probe = np.random.default_rng(seed)
        P.jittered_search_params([110., 90., 175., 150.], 4.0, (224, 224), 0.25, 3.0, 10.0, probe)
        while replay.bit_generator.state != probe.bit_generator.state:
            replay.standard_normal(2)
            replay.uniform(-1, 1, 2)
            tries += 1
            assert tries <= 12
        replay.random(), replay.random()  # flips: template then search
        for _ in range(2):  # colour jitter: template then search
            replay.permutation(4)
            for _ in range(3):
                replay.uniform(0.6, 1.4)
        if replay.choice(3) == 2:
            replay.uniform(0.1, 2.0)
        assert rng.bit_generator.state == replay.bit_generator.state


def test_flip_mirrors_images_boxes_and_labels():
    # flip probability 1 and 1e-12 draw the same numbers, so both samples share every other random choice
    flipped, plain = _sample(11, flip_probability=1.0), _sample(11, flip_probability=1e-12)
    assert flipped is not None and plain is not None
    step = 1 / (255 * 0.229)
    for key in ('z', 'x'):
        diff = np.abs(flipped[key] - plain[key][:, :, ::-1])
        assert diff.max() <= 1.01 * step  # at most one 8-bit level (summation order of the contrast mean)
        assert np.mean(diff > 0) < 1e-3
    b = plain['search_box']
    np.testing.assert_allclose(flipped['search_box'], [1 - b[2], b[1], 1 - b[0], b[3]], atol=1e-6)
    np.testing.assert_array_equal(flipped['z_feat_mask'], plain['z_feat_mask'][:, ::-1])
    rows, cols = np.divmod(plain['positive_indices'], 16)
    np.testing.assert_array_equal(flipped['positive_indices'], np.sort(rows * 16 + (15 - cols)))


def test_colour_jitter_ops_match_torchvision():
    rng = np.random.default_rng(12)
    for _ in range(5):
        image = rng.random((37, 53, 3), dtype=np.float32)
        tensor = torch.from_numpy(image).permute(2, 0, 1)
        factor = float(rng.uniform(0.6, 1.4))
        for ours, theirs in ((P.adjust_brightness, TF.adjust_brightness), (P.adjust_contrast, TF.adjust_contrast),
                             (P.adjust_saturation, TF.adjust_saturation)):
            expected = theirs(tensor, factor).permute(1, 2, 0).numpy()
            np.testing.assert_allclose(ours(image, factor), expected, atol=1e-6, rtol=0)
        # flipped (strided) input as produced by the horizontal flip
        np.testing.assert_array_equal(P.adjust_saturation(image[:, ::-1], 1.3),
                                      TF.adjust_saturation(tensor.flip(-1), 1.3).permute(1, 2, 0).numpy())


def test_quantise_and_normalise_match_torchvision():
    rng = np.random.default_rng(13)
    image = rng.random((20, 30, 3), dtype=np.float32)
    image[0, 0] = 1.0
    image[0, 1] = 3 / 255  # x/255*255 may land just under an integer: truncation keeps upstream's quirk
    tensor = torch.from_numpy(image).permute(2, 0, 1)
    pil = TF.to_pil_image(tensor, mode='RGB')
    np.testing.assert_array_equal(P.quantize(image), np.asarray(pil))
    expected = T.Normalize(P.IMAGENET_MEAN, P.IMAGENET_STD)(TF.to_tensor(pil)).numpy()
    np.testing.assert_array_equal(LoRATProcessing(**B224).normalise(P.quantize(image)), expected)


def test_deit3_ops_match_pil():
    rng = np.random.default_rng(14)
    images = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), rng.integers(0, 256, (30, 20, 3), dtype=np.uint8)]
    pils = [Image.fromarray(image) for image in images]
    for ours, pil in zip(P.deit_grayscale(images, rng), pils):
        np.testing.assert_array_equal(ours, np.asarray(T.Grayscale(3)(pil)))
    for ours, pil in zip(P.deit_solarize(images, rng), pils):
        np.testing.assert_array_equal(ours, np.asarray(ImageOps.solarize(pil)))
    radius = np.random.default_rng(15).uniform(0.1, 2.0)
    for ours, pil in zip(P.deit_blur(images, np.random.default_rng(15)), pils):
        np.testing.assert_array_equal(ours, np.asarray(pil.filter(ImageFilter.GaussianBlur(radius))))


def test_collate():
    samples = [_sample(seed) for seed in range(4)]
    samples = [s for s in samples if s is not None][:3]
    batch = collate(samples)
    n = len(samples)
    assert batch['z'].shape == (n, 3, 112, 112) and batch['z'].dtype == torch.float32
    assert batch['x'].shape == (n, 3, 224, 224)
    assert batch['z_feat_mask'].shape == (n, 8, 8) and batch['z_feat_mask'].dtype == torch.int64
    assert batch['search_boxes'].shape == (n, 4)
    counts = [len(s['positive_indices']) for s in samples]
    assert batch['positive_batch_idx'].tolist() == sum(([i] * c for i, c in enumerate(counts)), [])
    assert batch['positive_map_idx'].tolist() == np.concatenate([s['positive_indices'] for s in samples]).tolist()
    assert batch['positive_map_idx'].dtype == torch.int64 and batch['positive_batch_idx'].dtype == torch.int64
    assert batch['num_positives'].shape == (1,) and batch['num_positives'].dtype == torch.float32
    assert batch['num_positives'].item() == sum(counts)
    with pytest.raises(ValueError, match="empty"):
        collate([])


def test_bad_configuration_is_rejected():
    with pytest.raises(ValueError, match="multiple of the patch stride"):
        LoRATProcessing(**{**B224, 'search_size': (230, 224)})
    with pytest.raises(ValueError, match="positive area"):
        LoRATProcessing(**B224)([_frame(1), _frame(2)], [[5., 5., 5., 9.], [110., 90., 175., 150.]],
                                np.random.default_rng(0))
