"""Box maths shared by training and tracking (numpy only).

Boxes are float arrays of shape ``(..., 4)``. Inside the code they are ``xyxy`` in continuous pixel-edge
coordinates, as upstream converts them (github.com/LitingLin/LoRAT,
``trackit/datasets/base/operator/bbox/``: ``[x, y, w, h]`` -> ``[x, y, x + w, y + h]``, no +-1); ``xywh`` is only the
on-disk format. Every function returns a
new array (float64 unless stated) and never modifies its input.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

ArrayLike = np.ndarray | Sequence[float]

RASTERIZE_EPS = 1e-4


def _as_boxes(boxes: ArrayLike) -> np.ndarray:
    array = np.array(boxes, dtype=np.float64)
    if array.shape[-1:] != (4,):
        raise ValueError(f"boxes must have shape (..., 4), got {array.shape}")
    return array


def xywh_to_xyxy(boxes: ArrayLike) -> np.ndarray:
    """``[x, y, w, h]`` -> ``[x, y, x + w, y + h]`` (no +-1, upstream convention)."""
    out = _as_boxes(boxes)
    out[..., 2:] += out[..., :2]
    return out


def xyxy_to_xywh(boxes: ArrayLike) -> np.ndarray:
    out = _as_boxes(boxes)
    out[..., 2:] -= out[..., :2]
    return out


def xyxy_to_cxcywh(boxes: ArrayLike) -> np.ndarray:
    b = _as_boxes(boxes)
    out = np.empty_like(b)
    out[..., 0] = (b[..., 0] + b[..., 2]) / 2.
    out[..., 1] = (b[..., 1] + b[..., 3]) / 2.
    out[..., 2] = b[..., 2] - b[..., 0]
    out[..., 3] = b[..., 3] - b[..., 1]
    return out


def cxcywh_to_xyxy(boxes: ArrayLike) -> np.ndarray:
    b = _as_boxes(boxes)
    out = np.empty_like(b)
    half_w = b[..., 2] / 2
    half_h = b[..., 3] / 2
    out[..., 0] = b[..., 0] - half_w
    out[..., 1] = b[..., 1] - half_h
    out[..., 2] = b[..., 0] + half_w
    out[..., 3] = b[..., 1] + half_h
    return out


def box_size(boxes: ArrayLike) -> np.ndarray:
    """``(..., 2)`` array of ``(w, h)``."""
    b = _as_boxes(boxes)
    return b[..., 2:] - b[..., :2]


def box_center(boxes: ArrayLike) -> np.ndarray:
    """``(..., 2)`` array of ``(cx, cy)``, computed as ``(x1 + x2) * 0.5`` like upstream."""
    b = _as_boxes(boxes)
    return (b[..., :2] + b[..., 2:]) * 0.5


def box_area(boxes: ArrayLike) -> np.ndarray:
    return np.prod(box_size(boxes), axis=-1)


def clip_to_image(boxes: ArrayLike, size_wh: ArrayLike) -> np.ndarray:
    """Clip every coordinate to ``[0, W] x [0, H]`` (may produce empty boxes)."""
    out = _as_boxes(boxes)
    w, h = float(size_wh[0]), float(size_wh[1])
    np.clip(out[..., 0::2], 0., w, out=out[..., 0::2])
    np.clip(out[..., 1::2], 0., h, out=out[..., 1::2])
    return out


def rasterize(boxes: ArrayLike) -> np.ndarray:
    """End-exclusive integer box: floor(x1), floor(y1), floor(x2 + 1 - 1e-4), floor(y2 + 1 - 1e-4) (int64).

    A box ``[14, 14, 42, 28]`` covers pixels 14..41 x 14..27, i.e. ``[14, 14, 42, 28]``; ``[0.5, 0, 3.2, 1]``
    becomes ``[0, 0, 4, 1]`` (every pixel the box touches).
    """
    out = _as_boxes(boxes)
    out[..., 2:] += 1. - RASTERIZE_EPS
    return np.floor(out).astype(np.int64)


def is_valid(boxes: ArrayLike) -> np.ndarray | bool:
    """Finite and positive area (``x1 < x2`` and ``y1 < y2``)."""
    b = _as_boxes(boxes)
    valid = np.all(np.isfinite(b), axis=-1) & np.all(b[..., :2] < b[..., 2:], axis=-1)
    return bool(valid) if valid.ndim == 0 else valid


def intersection(boxes_a: ArrayLike, boxes_b: ArrayLike) -> np.ndarray:
    """Intersection area (0 when the boxes do not overlap)."""
    a, b = _as_boxes(boxes_a), _as_boxes(boxes_b)
    wh = np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2])
    return np.prod(np.clip(wh, 0., None), axis=-1)


def intersects_image(boxes: ArrayLike, size_wh: ArrayLike) -> np.ndarray | bool:
    """True when the box overlaps ``[0, W] x [0, H]`` with positive area."""
    image_box = np.array([0., 0., float(size_wh[0]), float(size_wh[1])])
    overlap = intersection(boxes, image_box) > 0
    return bool(overlap) if np.ndim(overlap) == 0 else overlap


def iou(boxes_a: ArrayLike, boxes_b: ArrayLike, eps: float = 0.) -> np.ndarray:
    """Continuous-coordinate IoU (area = w * h); union clamped below by ``eps``."""
    inter = intersection(boxes_a, boxes_b)
    union = box_area(boxes_a) + box_area(boxes_b) - inter
    return inter / np.maximum(union, eps)


def giou(boxes_a: ArrayLike, boxes_b: ArrayLike, eps: float = 1e-6) -> np.ndarray:
    """Generalised IoU with ``eps`` guarding union and enclosing area (as the upstream loss)."""
    a, b = _as_boxes(boxes_a), _as_boxes(boxes_b)
    inter = intersection(a, b)
    union = np.maximum(box_area(a) + box_area(b) - inter, eps)
    enclosing_wh = np.maximum(a[..., 2:], b[..., 2:]) - np.minimum(a[..., :2], b[..., :2])
    enclosing = np.maximum(np.prod(enclosing_wh, axis=-1), eps)
    return inter / union - (enclosing - union) / enclosing


def apply_affine(boxes: ArrayLike, scale: ArrayLike, translation: ArrayLike) -> np.ndarray:
    """Map boxes with ``out = s * in + t`` per axis (``s = (sx, sy)``, ``t = (tx, ty)``)."""
    out = _as_boxes(boxes)
    s = np.asarray(scale, dtype=np.float64)
    t = np.asarray(translation, dtype=np.float64)
    out[..., 0::2] = out[..., 0::2] * s[..., None, 0] + t[..., None, 0]
    out[..., 1::2] = out[..., 1::2] * s[..., None, 1] + t[..., None, 1]
    return out


def invert_affine(scale: ArrayLike, translation: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Parameters of the reverse map: ``(1 / s, -t / s)`` in float64 (upstream formula and precision)."""
    s = np.asarray(scale, dtype=np.float64)
    t = np.asarray(translation, dtype=np.float64)
    return 1. / s, -t / s


def hflip(boxes: ArrayLike, width: float) -> np.ndarray:
    """Box of a horizontally flipped image of the given width: ``x1' = W - x2``, ``x2' = W - x1``."""
    b = _as_boxes(boxes)
    out = b.copy()
    out[..., 0] = width - b[..., 2]
    out[..., 2] = width - b[..., 0]
    return out
