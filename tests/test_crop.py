from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib.utils import boxes as B
from lib.utils.crop import (crop_and_resize, crop_box_to_image, image_mean, jittered_search_params,
                            search_params_for_tracking, siamfc_crop_params, template_foreground_mask)


def _reference_crop(image: np.ndarray, scale, translation, output_size, fill):
    """Upstream trackit/core/operator/scale_and_translate.py, literally: whole frame as float32 CHW, NCHW F.interpolate."""
    img = torch.from_numpy(image).permute(2, 0, 1).contiguous().float()
    h, w = img.shape[1:]
    out_w, out_h = output_size
    out = torch.empty(3, out_h, out_w)
    out[:] = torch.tensor(fill, dtype=torch.float32).view(3, 1, 1)
    s, t = np.asarray(scale, np.float64), np.asarray(translation, np.float64)
    ob = np.array([0, 0, w, h], np.float64)
    ob[0::2] = ob[0::2] * s[0] + t[0]
    ob[1::2] = ob[1::2] * s[1] + t[1]
    ob[0::2] = np.clip(ob[0::2], 0, out_w)
    ob[1::2] = np.clip(ob[1::2], 0, out_h)
    ob[2:] += 1 - 1e-4
    ob = np.floor(ob)
    ib = ob.copy()
    ib[0::2] = ib[0::2] * (1 / s[0]) + (-t[0] / s[0])
    ib[1::2] = ib[1::2] * (1 / s[1]) + (-t[1] / s[1])
    ib[2:] += 1 - 1e-4
    ib = np.floor(ib)
    ib[0::2] = np.clip(ib[0::2], 0, w)
    ib[1::2] = np.clip(ib[1::2], 0, h)
    ob, ib = ob.astype(int), ib.astype(int)
    out[:, ob[1]:ob[3], ob[0]:ob[2]] = F.interpolate(
        img[None, :, ib[1]:ib[3], ib[0]:ib[2]], (ob[3] - ob[1], ob[2] - ob[0]), mode='bilinear',
        align_corners=False)[0]
    real_s = (torch.tensor(ob[2:], dtype=torch.float32) - torch.tensor(ob[:2], dtype=torch.float32)) / (
        torch.tensor(ib[2:], dtype=torch.float32) - torch.tensor(ib[:2], dtype=torch.float32))
    real_t = torch.tensor(ob[:2], dtype=torch.float32) - torch.tensor(ib[:2], dtype=torch.float32) * real_s
    return out.permute(1, 2, 0).numpy(), real_s.numpy(), real_t.numpy()


def test_siamfc_params_hand_values():
    # 50x50 box, f=2: p = 50, s = sqrt(112^2 / (100 * 100)) = 1.12; centre (125, 125) -> 56
    scale, translation = siamfc_crop_params([100., 100., 150., 150.], 2.0, (112, 112))
    np.testing.assert_allclose(scale, [1.12, 1.12])
    np.testing.assert_allclose(translation, [56 - 125 * 1.12, 56 - 125 * 1.12])
    # 100x50 box, f=4: p = 3 * 75 = 225 -> s = 224 / sqrt(325 * 275)
    scale, translation = siamfc_crop_params([0., 0., 100., 50.], 4.0, (224, 224))
    s = 224 / np.sqrt(325 * 275)
    np.testing.assert_allclose(scale, [s, s])
    np.testing.assert_allclose(translation, [112 - 50 * s, 112 - 25 * s])
    with pytest.raises(ValueError, match="positive area"):
        siamfc_crop_params([5., 5., 5., 9.], 2.0, (112, 112))


@pytest.mark.parametrize("seed", range(6))
def test_crop_matches_literal_upstream_algorithm(seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (int(rng.integers(40, 300)), int(rng.integers(40, 300)), 3), dtype=np.uint8)
    h, w = image.shape[:2]
    box = np.array([rng.uniform(0, w - 3), rng.uniform(0, h - 3), 0, 0])  # dataset boxes lie in the frame
    box[2:] = np.minimum(box[:2] + rng.uniform(3, 150, 2), (w, h))
    params = jittered_search_params(box, 4.0, (224, 224), 0.25, 3.0, 0.0, rng) or siamfc_crop_params(box, 4, (224, 224))
    fill = image_mean(image)
    crop, s, t = crop_and_resize(image, *params, (224, 224), fill)
    ref_crop, ref_s, ref_t = _reference_crop(image, *params, (224, 224), fill)
    assert crop.dtype == np.float32 and crop.shape == (224, 224, 3)
    np.testing.assert_array_equal(s, ref_s)
    np.testing.assert_array_equal(t, ref_t)
    np.testing.assert_allclose(crop, ref_crop, atol=1e-3, rtol=0)


def test_bright_rectangle_lands_inside_mapped_box():
    image = np.full((360, 480, 3), 20, dtype=np.uint8)
    image[120:170, 200:260] = 250  # object pixels = box [200, 120, 260, 170]
    box = np.array([200., 120., 260., 170.])
    for factor, size in ((2.0, (112, 112)), (4.0, (224, 224)), (5.0, (378, 378))):
        crop, s, t = crop_and_resize(image, *siamfc_crop_params(box, factor, size), size, image_mean(image))
        mapped = B.apply_affine(box, s, t)
        bright_y, bright_x = np.nonzero(crop[..., 0] > 135)
        assert bright_x.min() >= mapped[0] - 1 and bright_x.max() + 1 <= mapped[2] + 1
        assert bright_y.min() >= mapped[1] - 1 and bright_y.max() + 1 <= mapped[3] + 1
        # bilinear blends over one source pixel (s output pixels) at each edge; deeper inside it is pure object
        x1, y1 = np.ceil(mapped[:2] + s + 0.5).astype(int)
        x2, y2 = np.floor(mapped[2:] - s - 0.5).astype(int)
        assert x2 - x1 > 40 and y2 - y1 > 30
        np.testing.assert_allclose(crop[y1:y2, x1:x2, 0], 250, atol=1e-3)
        # object centred in the crop, side ratio given by the area factor
        np.testing.assert_allclose(B.box_center(mapped), np.array(size) / 2, atol=1.0)


def test_adjusted_params_describe_the_resampling_exactly():
    """On a linear ramp, bilinear output at pixel u equals ((u + 0.5) - t') / s' - 0.5 of the source."""
    ramp = np.zeros((200, 250, 3), dtype=np.uint8)
    ramp[..., 0] = np.arange(250)[None, :]
    ramp[..., 1] = np.arange(200)[:, None]
    rng = np.random.default_rng(3)
    for _ in range(10):
        scale = rng.uniform(0.5, 3.0, 2)
        translation = 56 - rng.uniform(60, 140, 2) * scale
        crop, s, t = crop_and_resize(ramp, scale, translation, (112, 112), (0, 0, 0))
        np.testing.assert_allclose(s, scale, rtol=2 / (112 / scale.max()))  # differs by < 1 pixel over the crop
        centres = np.arange(112) + 0.5
        expect_x = (centres - t[0]) / s[0] - 0.5
        expect_y = (centres - t[1]) / s[1] - 0.5
        # away from the frame border, and not the first/last crop pixel (F.interpolate clamps at the region edge)
        border = np.zeros(112, dtype=bool)
        border[[0, -1]] = True
        inside_x = (expect_x > 1) & (expect_x < 248) & ~border
        inside_y = (expect_y > 1) & (expect_y < 198) & ~border
        np.testing.assert_allclose(crop[inside_y][:, inside_x, 0], np.broadcast_to(
            expect_x[inside_x], (inside_y.sum(), inside_x.sum())), atol=2e-3)
        np.testing.assert_allclose(crop[inside_y][:, inside_x, 1], np.broadcast_to(
            expect_y[inside_y, None], (inside_y.sum(), inside_x.sum())), atol=2e-3)


def test_integer_params_are_kept_and_copy_pixels():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    crop, s, t = crop_and_resize(image, np.array([1., 1.]), np.array([-10., -20.]), (64, 48), (0, 0, 0))
    np.testing.assert_array_equal(s, [1, 1])
    np.testing.assert_array_equal(t, [-10, -20])
    np.testing.assert_array_equal(crop, image[20:68, 10:74].astype(np.float32))


def test_outside_parts_get_the_fill_colour():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)
    fill = np.array([11.5, 22.25, 33.0], dtype=np.float32)
    # image maps to x in [50.3, 200.3], y in [-10, 140]
    crop, s, t = crop_and_resize(image, np.array([1.5, 1.5]), np.array([50.3, -10.]), (224, 224), fill)
    np.testing.assert_array_equal(crop[:, :50], np.broadcast_to(fill, (224, 50, 3)))
    np.testing.assert_array_equal(crop[140:], np.broadcast_to(fill, (84, 224, 3)))
    np.testing.assert_array_equal(crop[:, 201:], np.broadcast_to(fill, (224, 23, 3)))
    assert not np.any(np.all(crop[:140, 50:201] == fill, axis=-1))
    # everything outside the image
    crop, s, t = crop_and_resize(image, np.array([1., 1.]), np.array([300., 0.]), (32, 32), fill)
    np.testing.assert_array_equal(crop, np.broadcast_to(fill, (32, 32, 3)))
    np.testing.assert_array_equal(s, [1, 1])


def test_round_trip_crop_to_image():
    rng = np.random.default_rng(6)
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    box = np.array([150.3, 100.7, 210.2, 180.9])
    crop, s, t = crop_and_resize(image, *search_params_for_tracking(box, 4.0, (224, 224)), (224, 224),
                                 image_mean(image))
    in_crop = B.apply_affine(box, s, t)
    np.testing.assert_allclose(crop_box_to_image(in_crop, s, t, (400, 300)), box, atol=1e-9)
    # a prediction reaching outside the frame is clipped to it
    back = crop_box_to_image([-500., 0., 2000., 224.], s, t, (400, 300))
    assert back[0] == 0 and back[2] == 400


def test_tracking_params_enlarge_small_boxes_only():
    small = np.array([100., 100., 104., 106.])  # 4 x 6, centre (102, 103)
    np.testing.assert_allclose(np.stack(search_params_for_tracking(small, 4.0, (224, 224))),
                               np.stack(siamfc_crop_params([97., 98., 107., 108.], 4.0, (224, 224))))
    large = np.array([10., 20., 60., 45.])
    np.testing.assert_array_equal(np.stack(search_params_for_tracking(large, 4.0, (224, 224))),
                                  np.stack(siamfc_crop_params(large, 4.0, (224, 224))))


def _replay(seed: int, tries: int) -> np.random.Generator:
    rng = np.random.default_rng(seed)
    for _ in range(tries):
        rng.standard_normal(2)
        rng.uniform(-1, 1, 2)
    return rng


def test_jitter_first_try_follows_the_spec_formula():
    box = np.array([300., 200., 360., 240.])
    params = jittered_search_params(box, 4.0, (224, 224), 0.25, 3.0, 10.0, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    n, u = rng.standard_normal(2), rng.uniform(-1, 1, 2)
    w, h = 60., 40.
    s0 = np.sqrt(224 * 224 / ((w + 1.5 * (w + h)) * (h + 1.5 * (w + h))))
    s = s0 / np.exp(0.25 * n)
    t = 112 - s * np.array([330., 220.]) + u * 1.5 * (w * s[0] + h * s[1])
    visible = B.clip_to_image(np.tile(s, 2) * box + np.tile(t, 2), (224, 224))
    assert np.all(B.box_size(visible) >= 10)  # with this seed the first try is accepted
    np.testing.assert_allclose(params[0], s, rtol=1e-12)
    np.testing.assert_allclose(params[1], t, rtol=1e-12)


def test_rejection_after_exactly_twelve_tries():
    rng = np.random.default_rng(8)
    # 1000 x 1 box: the 1-px side maps to ~0.1 crop pixels, always under the 10-px minimum
    assert jittered_search_params([0., 0., 1000., 1.], 4.0, (224, 224), 0.25, 3.0, 10.0, rng) is None
    assert rng.bit_generator.state == _replay(8, 12).bit_generator.state
    rng = np.random.default_rng(8)
    assert jittered_search_params([0., 0., 1000., 1.], 4.0, (224, 224), 0.25, 3.0, 10.0, rng, max_tries=3) is None
    assert rng.bit_generator.state == _replay(8, 3).bit_generator.state


def test_accepted_crops_keep_ten_visible_pixels():
    rng = np.random.default_rng(9)
    box = np.array([50., 60., 70., 200.])
    for _ in range(300):
        params = jittered_search_params(box, 4.0, (224, 224), 0.25, 3.0, 10.0, rng)
        if params is None:
            continue
        visible = B.clip_to_image(B.apply_affine(box, *params), (224, 224))
        assert np.all(B.box_size(visible) >= 10)


def test_jitter_statistics():
    box = np.array([100., 100., 180., 140.])
    base, _ = siamfc_crop_params(box, 4.0, (224, 224))
    rng = np.random.default_rng(10)
    log_ratios = np.array([np.log(jittered_search_params(box, 4.0, (224, 224), 0.25, 0.0, 0.0, rng)[0] / base)
                           for _ in range(4000)])
    assert abs(log_ratios.mean()) < 0.015
    assert log_ratios.std() == pytest.approx(0.25, abs=0.01)
    assert abs(np.corrcoef(log_ratios[:, 0], log_ratios[:, 1])[0, 1]) < 0.05  # anisotropic: independent axes

    # translation_jitter 2: max shift = (80 + 40) * 0.936 = 112 px, the box always stays in view -> no rejection
    offsets = []
    for _ in range(3000):
        scale, translation = jittered_search_params(box, 4.0, (224, 224), 0.0, 2.0, 0.0, rng)
        np.testing.assert_allclose(scale, base)
        centred = 112 - scale * B.box_center(box)
        offsets.append((translation - centred) / (0.5 * 2.0 * (80 * scale[0] + 40 * scale[1])))
    offsets = np.array(offsets)
    assert np.all(np.abs(offsets) <= 1)
    assert offsets.min() < -0.99 and offsets.max() > 0.99
    assert abs(offsets.mean()) < 0.03
    assert offsets.std() == pytest.approx(1 / np.sqrt(3), abs=0.02)  # U(-1, 1)


def test_template_mask_hand_cases():
    expected = np.zeros((8, 8), dtype=np.int64)
    expected[1, 1:3] = 1  # [14, 14, 42, 28] / 14 = [1, 1, 3, 2] -> cols 1..2, row 1
    mask = template_foreground_mask([14., 14., 42., 28.], (112, 112), (8, 8))
    assert mask.dtype == np.int64
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(template_foreground_mask([0., 0., 112., 112.], (112, 112), (8, 8)),
                                  np.ones((8, 8), dtype=np.int64))
    # clipped first to [0, 50.5, 30, 112] -> /14 -> [0, 3.6, 2.14, 8] -> rows 3..7, cols 0..2
    expected = np.zeros((8, 8), dtype=np.int64)
    expected[3:8, 0:3] = 1
    np.testing.assert_array_equal(template_foreground_mask([-10., 50.5, 30., 200.], (112, 112), (8, 8)), expected)
    # a box just touching a cell border still marks the cell it enters
    expected = np.zeros((8, 8), dtype=np.int64)
    expected[1, 0:2] = 1
    np.testing.assert_array_equal(template_foreground_mask([13.99, 14., 14.01, 28.], (112, 112), (8, 8)), expected)
    # 196 template / 14x14 grid (378 variants), non-square cell check on [W, H] order
    mask = template_foreground_mask([0., 0., 20., 100.], (196, 98), (14, 7))
    assert mask.shape == (7, 14)
    np.testing.assert_array_equal(np.argwhere(mask.any(axis=0)).ravel(), [0, 1])
    np.testing.assert_array_equal(np.argwhere(mask.any(axis=1)).ravel(), np.arange(7))


def test_image_mean_and_bad_images():
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    image[..., 1] = 255
    image[:2, :, 2] = 10
    np.testing.assert_allclose(image_mean(image), [0, 255, 5])
    with pytest.raises(ValueError, match="uint8"):
        crop_and_resize(image.astype(np.float32), np.ones(2), np.zeros(2), (8, 8), (0, 0, 0))
