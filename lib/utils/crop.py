"""SiamFC-style crops as affine maps ``out = s * in + t`` as upstream builds them
(github.com/LitingLin/LoRAT, ``trackit/core/utils/siamfc_cropping.py`` and
``trackit/core/operator/numpy/bbox/scale_and_translate.py``).

One implementation for training and tracking: the crop parameters, the search-region jitter with its
visibility check, the pixel-aligned crop-and-resize (which returns the parameters it really applied) and the
template foreground mask. Sizes are ``(W, H)``; boxes are continuous ``xyxy``.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from lib.utils import boxes as box_ops

SizeWH = Sequence[int] | np.ndarray


def _size(size_wh: SizeWH) -> np.ndarray:
    size = np.asarray(size_wh)
    if size.shape != (2,) or np.any(size <= 0):
        raise ValueError(f"size must be a positive (W, H) pair, got {size_wh!r}")
    return size


def _base_scale(box: np.ndarray, area_factor: float, output_size: np.ndarray) -> np.ndarray:
    """Isotropic SiamFC scale: context ``p = (f - 1)(w + h)/2``, ``s = sqrt(Wo Ho / ((w + p)(h + p)))``."""
    wh = box_ops.box_size(box)
    padded = wh + (area_factor - 1) * (wh.sum() * 0.5)
    scale = np.sqrt(output_size.prod() / padded.prod())
    return np.repeat(scale, 2)


def _centring_translation(box: np.ndarray, scale: np.ndarray, output_size: np.ndarray) -> np.ndarray:
    """Translation that sends the box centre to the crop centre (``Wo/2, Ho/2``)."""
    return output_size / 2. - box_ops.box_center(box) * scale


def _checked_box(box: box_ops.ArrayLike) -> np.ndarray:
    array = np.array(box, dtype=np.float64)
    if array.shape != (4,) or not box_ops.is_valid(array):
        raise ValueError(f"expected one finite xyxy box with positive area, got {box!r}")
    return array


def siamfc_crop_params(box_xyxy: box_ops.ArrayLike, area_factor: float,
                       output_size: SizeWH) -> tuple[np.ndarray, np.ndarray]:
    """Requested crop ``(scale (2,), translation (2,))`` (float64) centring ``box_xyxy`` with context."""
    box = _checked_box(box_xyxy)
    size = _size(output_size)
    scale = _base_scale(box, area_factor, size)
    return scale, _centring_translation(box, scale, size)


def jittered_search_params(box: box_ops.ArrayLike, area_factor: float, output_size: SizeWH,
                           scale_jitter: float, translation_jitter: float, min_object_size: float,
                           rng: np.random.Generator,
                           max_tries: int = 12) -> tuple[np.ndarray, np.ndarray] | None:
    """Training search-crop parameters with anisotropic scale and translation jitter, or None.

    Per try: ``s = s0 / exp(scale_jitter * standard_normal(2))`` (independent per axis), centring
    translation for that ``s``, plus ``uniform(-1, 1, 2) * translation_jitter * 0.5 * (w sx + h sy)``.
    A try is accepted when the mapped box overlaps the crop with positive area and, once clipped to the crop,
    both sides are at least ``min_object_size``. None after ``max_tries`` failed tries (pair rejected).
    """
    box = _checked_box(box)
    size = _size(output_size)
    base = _base_scale(box, area_factor, size)
    wh = box_ops.box_size(box)
    for _ in range(max_tries):
        scale = base / np.exp(rng.standard_normal(2, dtype=np.float64) * scale_jitter)
        max_shift = (wh * scale).sum() * 0.5 * translation_jitter
        translation = rng.uniform(-1, 1, size=2) * max_shift + _centring_translation(box, scale, size)
        mapped = box_ops.apply_affine(box, scale, translation)
        if not box_ops.intersects_image(mapped, size):
            continue
        if np.any(box_ops.box_size(box_ops.clip_to_image(mapped, size)) < min_object_size):
            continue
        return scale, translation
    return None


def search_params_for_tracking(box: box_ops.ArrayLike, area_factor: float, output_size: SizeWH,
                               min_box_size: float = 10.) -> tuple[np.ndarray, np.ndarray]:
    """Tracker search-crop parameters: the state box enlarged to ``min_box_size`` per side (centre kept)."""
    cxcywh = box_ops.xyxy_to_cxcywh(_checked_box(box))
    cxcywh[2:] = np.maximum(cxcywh[2:], min_box_size)
    return siamfc_crop_params(box_ops.cxcywh_to_xyxy(cxcywh), area_factor, output_size)


def crop_box_to_image(box_in_crop: box_ops.ArrayLike, scale: np.ndarray, translation: np.ndarray,
                      image_size: SizeWH) -> np.ndarray:
    """Map a crop-pixel box back to the frame with the reverse of the *adjusted* crop, clipped to the frame."""
    inverse_scale, inverse_translation = box_ops.invert_affine(scale, translation)
    return box_ops.clip_to_image(box_ops.apply_affine(box_in_crop, inverse_scale, inverse_translation),
                                 _size(image_size))


def image_mean(image: np.ndarray) -> np.ndarray:
    """Per-channel mean of a whole ``HxWx3`` uint8 frame (float32, 0..255): the crop fill colour."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
    return np.asarray(cv2.mean(image)[:3], dtype=np.float32)


def _filled(size_hw: tuple[int, int], fill_rgb: Sequence[float] | np.ndarray) -> np.ndarray:
    canvas = np.empty((*size_hw, 3), dtype=np.float32)
    canvas[:] = np.asarray(fill_rgb, dtype=np.float32)
    return canvas


def crop_and_resize(image: np.ndarray, scale: np.ndarray, translation: np.ndarray, output_size: SizeWH,
                    fill_rgb: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel-aligned crop (upstream scale_and_translate): returns ``(crop, adjusted_scale, adjusted_translation)``.

    The image rectangle is mapped into the output, clipped and rasterised; that integer output region is mapped
    back and rasterised to an integer input region, which is resized with bilinear interpolation
    (``F.interpolate``, half-pixel centres, no antialias) and pasted over a canvas filled with ``fill_rgb``.
    The returned float32 parameters describe the map actually applied; use them for every box mapping.
    ``crop`` is float32 ``HxWx3`` in 0..255. Only the needed input region is converted to float.
    (cv2.resize INTER_LINEAR was measured against F.interpolate and differs by up to 0.015 on 0..255, over the
    allowed 1e-3, because it computes source coordinates differently; hence torch, in channels-last memory.)
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 image, got {image.dtype} {image.shape}")
    out_w, out_h = (int(v) for v in _size(output_size))
    in_h, in_w = image.shape[:2]
    scale = np.asarray(scale, dtype=np.float64)
    translation = np.asarray(translation, dtype=np.float64)

    out_box = box_ops.apply_affine([0., 0., in_w, in_h], scale, translation)
    out_box = box_ops.rasterize(box_ops.clip_to_image(out_box, (out_w, out_h)))
    in_box = box_ops.apply_affine(out_box, *box_ops.invert_affine(scale, translation))
    in_box = box_ops.clip_to_image(box_ops.rasterize(in_box), (in_w, in_h)).astype(np.int64)

    ox1, oy1, ox2, oy2 = (int(v) for v in out_box)
    ix1, iy1, ix2, iy2 = (int(v) for v in in_box)
    if not (ox1 < ox2 and oy1 < oy2 and ix1 < ix2 and iy1 < iy2):
        # The image does not reach the output: nothing was resampled, so the request itself is the answer.
        return _filled((out_h, out_w), fill_rgb), scale.astype(np.float32), translation.astype(np.float32)

    # HWC uint8 -> NCHW float32 view in channels-last memory: bit-identical to the NCHW kernel, about 2x faster.
    region = torch.from_numpy(image[iy1:iy2, ix1:ix2]).permute(2, 0, 1).unsqueeze(0).float()
    resized = F.interpolate(region, size=(oy2 - oy1, ox2 - ox1), mode='bilinear', align_corners=False)
    resized = np.ascontiguousarray(resized[0].permute(1, 2, 0).numpy())
    if (ox1, oy1, ox2, oy2) == (0, 0, out_w, out_h):
        crop = resized
    else:
        crop = _filled((out_h, out_w), fill_rgb)
        crop[oy1:oy2, ox1:ox2] = resized

    out_f = out_box.astype(np.float32)
    in_f = in_box.astype(np.float32)
    adjusted_scale = (out_f[2:] - out_f[:2]) / (in_f[2:] - in_f[:2])
    adjusted_translation = out_f[:2] - in_f[:2] * adjusted_scale
    return crop, adjusted_scale, adjusted_translation


def template_foreground_mask(box_in_crop_xyxy: box_ops.ArrayLike, crop_size: SizeWH,
                             feat_size: SizeWH) -> np.ndarray:
    """Token-type mask ``(Hf, Wf)`` int64: 1 for every template patch the target box touches (§1.5).

    Training order: clip the crop-space box to the crop, divide by the stride ``crop / feat`` per axis,
    rasterise, fill. Upstream inference instead clips the rasterised feature box to the grid. Because floor is
    monotone, the two orders agree whenever the crop is a whole number of cells (always true in LoRAT: 112/8,
    196/14); they could only differ through rounding of a non-integer stride, so the tracker uses this function.
    """
    crop = _size(crop_size)
    feat = _size(feat_size)
    stride = crop / feat
    box = box_ops.clip_to_image(box_in_crop_xyxy, crop)
    box[0::2] /= stride[0]
    box[1::2] /= stride[1]
    x1, y1, x2, y2 = (int(v) for v in box_ops.rasterize(box))
    mask = np.zeros((int(feat[1]), int(feat[0])), dtype=np.int64)
    mask[y1:y2, x1:x2] = 1
    return mask
