from __future__ import annotations

import numpy as np
import pytest

from lib.utils import boxes as B


def test_format_conversions_hand_values_and_round_trip():
    xywh = np.array([10., 20., 30., 40.])
    xyxy = B.xywh_to_xyxy(xywh)
    np.testing.assert_array_equal(xyxy, [10, 20, 40, 60])
    np.testing.assert_array_equal(B.xyxy_to_xywh(xyxy), xywh)
    np.testing.assert_array_equal(B.xyxy_to_cxcywh(xyxy), [25, 40, 30, 40])
    np.testing.assert_array_equal(B.cxcywh_to_xyxy([25, 40, 30, 40]), xyxy)
    rng = np.random.default_rng(0)
    many = rng.uniform(0, 100, (50, 4))
    np.testing.assert_allclose(B.xyxy_to_xywh(B.xywh_to_xyxy(many)), many, atol=1e-12)
    np.testing.assert_allclose(B.cxcywh_to_xyxy(B.xyxy_to_cxcywh(many)), many, atol=1e-12)
    assert xywh.tolist() == [10., 20., 30., 40.]  # inputs untouched


def test_rasterize_matches_upstream_rule():
    # floor(x1), floor(y1), floor(x2 + 1 - 1e-4), floor(y2 + 1 - 1e-4)
    np.testing.assert_array_equal(B.rasterize([14., 14., 42., 28.]), [14, 14, 42, 28])
    np.testing.assert_array_equal(B.rasterize([0.5, 0.2, 3.2, 1.0]), [0, 0, 4, 1])
    np.testing.assert_array_equal(B.rasterize([-0.5, 1.99, 3.00005, 3.0002]), [-1, 1, 3, 4])
    assert B.rasterize([1.5, 1.5, 2.5, 2.5]).dtype == np.int64


def test_clip_validity_and_image_intersection():
    np.testing.assert_array_equal(B.clip_to_image([-5, 3, 120, 90], (100, 80)), [0, 3, 100, 80])
    assert B.is_valid([0, 0, 1, 1])
    assert not B.is_valid([0, 0, 0, 1])
    assert not B.is_valid([0, 0, np.nan, 1])
    assert not B.is_valid([0, 0, np.inf, 1])
    np.testing.assert_array_equal(B.is_valid([[0, 0, 1, 1], [2, 0, 1, 1]]), [True, False])
    assert B.intersects_image([-10, -10, 0.5, 0.5], (10, 10))
    assert not B.intersects_image([-10, -10, 0, 5], (10, 10))  # touching an edge is no overlap
    assert not B.intersects_image([10, 0, 20, 5], (10, 10))


def test_iou_and_giou_hand_values():
    a, b = [0., 0., 2., 2.], [1., 1., 3., 3.]
    assert B.iou(a, b) == pytest.approx(1 / 7)
    assert B.giou(a, b) == pytest.approx(1 / 7 - 2 / 9, abs=1e-6)
    assert B.iou(a, a) == pytest.approx(1.0)
    assert B.giou(a, a) == pytest.approx(1.0, abs=1e-6)
    far = [10., 10., 11., 11.]
    assert B.iou(a, far) == 0
    assert B.giou(a, far) == pytest.approx(5 / 121 - 1, abs=1e-6)  # 0 - (121 - 5) / 121
    np.testing.assert_allclose(B.iou(np.array([a, a]), np.array([b, a])), [1 / 7, 1.0])


def test_affine_apply_and_inverse_round_trip():
    box = np.array([10., 20., 50., 80.])
    scale, translation = np.array([2., 0.5]), np.array([-3., 7.])
    mapped = B.apply_affine(box, scale, translation)
    np.testing.assert_array_equal(mapped, [17, 17, 97, 47])
    inverse = B.invert_affine(scale, translation)
    np.testing.assert_allclose(B.apply_affine(mapped, *inverse), box, atol=1e-12)
    batched = B.apply_affine(np.array([box, box]), np.array([scale, [1., 1.]]), np.array([translation, [0., 0.]]))
    np.testing.assert_array_equal(batched, [[17, 17, 97, 47], box])


def test_hflip_hand_value_and_involution():
    np.testing.assert_array_equal(B.hflip([10., 5., 30., 25.], 100), [70, 5, 90, 25])
    rng = np.random.default_rng(1)
    top_left = rng.uniform(0, 32, (20, 2))
    boxes = np.concatenate([top_left, top_left + rng.uniform(1, 32, (20, 2))], axis=1)
    flipped = B.hflip(boxes, 64)
    np.testing.assert_allclose(B.hflip(flipped, 64), boxes, atol=1e-12)
    assert np.all(B.is_valid(flipped))
    np.testing.assert_allclose(B.box_size(flipped), B.box_size(boxes), atol=1e-12)


def test_bad_shape_is_rejected():
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        B.xywh_to_xyxy([1., 2., 3.])
