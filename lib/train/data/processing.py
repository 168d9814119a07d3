"""LoRAT / LoRATv2 training-sample processing: crops, augmentation, template mask and labels (upstream trackit/LoRAT:
trackit/core/utils/siamfc_cropping.py, trackit/data/methods/siamese_tracker_train/transform/default/ and, for
LoRATv2's several search streams, trackit/data/methods/LoRATv2_train/transform/default/).

The steps and the numpy-Generator draw order follow upstream's training worker exactly, so one seed gives one sample:
search-crop jitter tries (``standard_normal(2)``, ``uniform(-1, 1, 2)`` each) for each search stream in model order,
flip ``random()`` per image (template, then the search streams), colour jitter ``permutation(4)`` + 3 ``uniform`` per
image in the same order, one DeiT-III ``choice(3)`` (+ blur radius) for all images. Images stay ``HxWx3`` float32 in
[0, 1] until the uint8 quantisation of the DeiT-III step, then one lookup table per channel does ``/255`` and the
ImageNet normalisation (bit-identical to torchvision).
"""
from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np
import torch
from PIL import Image, ImageFilter

from lib.utils import boxes as box_ops
from lib.utils.crop import (crop_and_resize, image_mean, jittered_search_params, siamfc_crop_params,
                            template_foreground_mask)
from lib.utils.image import IMAGENET_MEAN, IMAGENET_STD

GRAYSCALE_WEIGHTS = (0.2989, 0.587, 0.114)
BLUR_RADIUS_RANGE = (0.1, 2.0)
NUM_COLOR_OPS = 4  # brightness, contrast, saturation, hue: upstream permutes 4 ops; hue is disabled in LoRAT
ZERO, ONE = np.float32(0), np.float32(1)  # float32 clip bounds keep np.clip on its fast path


# ---- colour jitter: torchvision ``adjust_*`` semantics on float images in [0, 1] (HxWx3 float32) ----

def _blend(image: np.ndarray, other: np.ndarray | np.float32, factor: float) -> np.ndarray:
    out = np.float32(factor) * image
    out += np.float32(1. - factor) * other
    return np.clip(out, ZERO, ONE, out=out)


def grayscale(image: np.ndarray) -> np.ndarray:
    """``0.2989 R + 0.587 G + 0.114 B`` as ``HxWx1`` float32 (torchvision ``rgb_to_grayscale``)."""
    r, g, b = (np.float32(w) * image[..., c] for c, w in enumerate(GRAYSCALE_WEIGHTS))
    return (r + g + b)[..., None]


def adjust_brightness(image: np.ndarray, factor: float) -> np.ndarray:
    out = np.float32(factor) * image
    return np.clip(out, ZERO, ONE, out=out)


def adjust_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    return _blend(image, np.float32(grayscale(image).mean(dtype=np.float32)), factor)


def adjust_saturation(image: np.ndarray, factor: float) -> np.ndarray:
    return _blend(image, grayscale(image), factor)


COLOR_OPS: dict[int, Callable[[np.ndarray, float], np.ndarray]] = {
    0: adjust_brightness, 1: adjust_contrast, 2: adjust_saturation}


def _jitter_range(strength: float) -> tuple[float, float] | None:
    """Factor range ``[max(0, 1 - s), 1 + s]``; None (no draw) for ``s == 0``, as torchvision ColorJitter."""
    if strength < 0:
        raise ValueError(f"colour jitter strength must be >= 0, got {strength}")
    return None if strength == 0 else (max(1. - strength, 0.), 1. + strength)


# ---- DeiT-III 3-augment on 8-bit images (PIL semantics), applied jointly to template and search ----

def _pil_map(images: Sequence[np.ndarray], fn: Callable[[Image.Image], Image.Image]) -> list[np.ndarray]:
    return [np.asarray(fn(Image.fromarray(image))) for image in images]


def deit_grayscale(images: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """PIL ``convert('L')`` replicated to 3 channels (a read-only broadcast view, no copy)."""
    return [np.broadcast_to(gray[..., None], (*gray.shape, 3))
            for gray in _pil_map(images, lambda im: im.convert('L'))]


SOLARIZE_LUT = np.array([v if v < 128 else 255 - v for v in range(256)], dtype=np.uint8)


def deit_solarize(images: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """PIL ``ImageOps.solarize`` (threshold 128) as the same 256-entry table, applied with cv2.LUT."""
    return [cv2.LUT(image, SOLARIZE_LUT) for image in images]


def deit_blur(images: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    blur = ImageFilter.GaussianBlur(radius=rng.uniform(*BLUR_RADIUS_RANGE))
    return _pil_map(images, lambda im: im.filter(blur))


DEIT3_OPS: tuple[Callable[[Sequence[np.ndarray], np.random.Generator], list[np.ndarray]], ...] = (
    deit_grayscale, deit_solarize, deit_blur)  # indexed by ``rng.choice(3)`` in upstream order


def quantize(image: np.ndarray) -> np.ndarray:
    """torchvision ``to_pil_image`` on a float image: ``value * 255`` then truncating cast to uint8."""
    return np.ascontiguousarray((image * np.float32(255)).astype(np.uint8))


# ---- labels ----

def positive_indices(box_in_crop: np.ndarray, crop_size: Sequence[int], feat_size: Sequence[int]) -> np.ndarray:
    """Row-major flat indices of every response-map cell the (clipped) crop box overlaps (upstream's
    box_with_score_map_label_gen plugin)."""
    scaled = np.array(box_in_crop, dtype=np.float64)
    scaled[0::2] *= feat_size[0] / crop_size[0]
    scaled[1::2] *= feat_size[1] / crop_size[1]
    x1, y1, x2, y2 = (int(v) for v in box_ops.rasterize(scaled))
    rows = np.arange(y1, y2, dtype=np.int64)
    cols = np.arange(x1, x2, dtype=np.int64)
    indices = (rows[:, None] * feat_size[0] + cols[None, :]).ravel()
    if indices.size == 0:
        raise ValueError(f"search box {box_in_crop} covers no response-map cell of a {feat_size} map")
    return indices


def stream_keys(num_streams: int) -> tuple[str, ...]:
    """Sample/batch keys of the search-stream crops in model order: the last (labelled) stream is always 'x', as in
    LoRAT; a stream in front of it (LoRATv2 phase 2: the dynamic reference) is 'x_<index>'."""
    return (*(f'x_{i}' for i in range(num_streams - 1)), 'x')


class LoRATProcessing:
    """Turns a template frame and one frame per search stream (with their boxes) into one training sample.

    LoRAT has one search stream (`search_size`, `search_area_factor`). LoRATv2 phase 2 puts unlabelled streams in
    front of it, `reference_streams` = [(size, area factor)] in model order. Every search stream gets its own jitter
    tries (all with the same scale/translation jitter and minimum size); one failing stream rejects the sample.
    Labels come from the last stream only, the template mask from the template.
    """

    def __init__(self, *, template_size: Sequence[int], search_size: Sequence[int],
                 template_area_factor: float, search_area_factor: float,
                 scale_jitter: float, translation_jitter: float, min_object_size: float,
                 reference_streams: Sequence[tuple[Sequence[int], float]] = (),
                 patch_stride: int = 14, flip_probability: float = 0.5, color_jitter: float = 0.4,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 max_tries: int = 12) -> None:
        self.template_size = (int(template_size[0]), int(template_size[1]))
        self.template_feat_size = self._feat_size(self.template_size, patch_stride)
        self.stream_sizes = tuple((int(size[0]), int(size[1])) for size, _ in reference_streams) + (
            (int(search_size[0]), int(search_size[1])),)
        self.stream_area_factors = tuple(float(factor) for _, factor in reference_streams) + (search_area_factor,)
        stream_feat_sizes = [self._feat_size(size, patch_stride) for size in self.stream_sizes]
        self.search_size, self.search_feat_size = self.stream_sizes[-1], stream_feat_sizes[-1]
        self.keys = stream_keys(len(self.stream_sizes))
        self.template_area_factor = template_area_factor
        self.scale_jitter = scale_jitter
        self.translation_jitter = translation_jitter
        self.min_object_size = min_object_size
        self.flip_probability = flip_probability
        self.color_ranges = [_jitter_range(color_jitter)] * 3  # brightness, contrast, saturation
        self.max_tries = max_tries
        levels = np.arange(256, dtype=np.float32) / np.float32(255)
        mean32 = np.asarray(mean, dtype=np.float32)
        std32 = np.asarray(std, dtype=np.float32)
        # normalise_lut[c][v] == (v / 255 - mean[c]) / std[c] with torchvision's float32 operations
        self.normalise_lut = [(levels - mean32[c]) / std32[c] for c in range(3)]

    @staticmethod
    def _feat_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
        if size[0] % stride or size[1] % stride:
            raise ValueError(f"crop size {size} is not a multiple of the patch stride {stride}")
        return size[0] // stride, size[1] // stride

    def __call__(self, images: Sequence[np.ndarray], boxes: Sequence[box_ops.ArrayLike],
                 rng: np.random.Generator) -> dict[str, np.ndarray] | None:
        """One sample from the template frame then one frame per search stream (`images`, `boxes` in that order;
        the same array may appear several times), or None when a search stream's tries all fail (draw a
        replacement then)."""
        if len(images) != 1 + len(self.stream_sizes) or len(boxes) != len(images):
            raise ValueError(f"expected a template and {len(self.stream_sizes)} search-stream frames with a box "
                             f"each, got {len(images)} images and {len(boxes)} boxes")
        params = [siamfc_crop_params(boxes[0], self.template_area_factor, self.template_size)]
        for box, factor, size in zip(boxes[1:], self.stream_area_factors, self.stream_sizes):
            stream_params = jittered_search_params(box, factor, size, self.scale_jitter, self.translation_jitter,
                                                   self.min_object_size, rng, self.max_tries)
            if stream_params is None:
                return None
            params.append(stream_params)

        fills: dict[int, np.ndarray] = {}  # each frame is padded with its own mean, computed once per frame
        sizes = (self.template_size, *self.stream_sizes)
        crops, crop_boxes = [], []
        for image, box, (scale, translation), size in zip(images, boxes, params, sizes):
            if id(image) not in fills:
                fills[id(image)] = image_mean(image)
            crop, scale, translation = crop_and_resize(image, scale, translation, size, fills[id(image)])
            crops.append(np.divide(crop, np.float32(255), out=crop))
            crop_boxes.append(box_ops.apply_affine(box, scale, translation))

        for i in range(len(crops)):
            if self.flip_probability > 0 and rng.random() < self.flip_probability:
                crops[i] = crops[i][:, ::-1]
                crop_boxes[i] = box_ops.hflip(crop_boxes[i], crops[i].shape[1])
        crops = [self._color_jitter(crop, rng) for crop in crops]
        quantized = DEIT3_OPS[rng.choice(len(DEIT3_OPS))]([quantize(crop) for crop in crops], rng)

        clipped = [self._clip_box(box, size) for box, size in zip(crop_boxes, sizes)]
        return {
            'z': self.normalise(quantized[0]),
            **{key: self.normalise(image) for key, image in zip(self.keys, quantized[1:])},
            'z_feat_mask': template_foreground_mask(clipped[0], self.template_size, self.template_feat_size),
            'search_box': (clipped[-1] / np.tile(self.search_size, 2)).astype(np.float32),
            'positive_indices': positive_indices(clipped[-1], self.search_size, self.search_feat_size),
        }

    def _color_jitter(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        order = rng.permutation(NUM_COLOR_OPS)
        factors = [None if r is None else float(rng.uniform(r[0], r[1])) for r in self.color_ranges]
        for op_index in order:
            if op_index in COLOR_OPS and factors[op_index] is not None:
                image = COLOR_OPS[op_index](image, factors[op_index])
        return image

    def normalise(self, image: np.ndarray) -> np.ndarray:
        """uint8 ``HxWx3`` -> float32 ``3xHxW`` normalised with the backbone's mean and std."""
        out = np.empty((3, *image.shape[:2]), dtype=np.float32)
        for c in range(3):
            out[c] = self.normalise_lut[c][image[..., c]]
        return out

    @staticmethod
    def _clip_box(box: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        clipped = box_ops.clip_to_image(box, size)
        if not box_ops.is_valid(clipped):
            raise ValueError(f"crop box {box} has no positive-area part inside the {size} crop")
        return clipped


def collate(samples: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stack samples into a batch (every crop key of `stream_keys` the samples have, 'search_box' as
    'search_boxes'); positives are concatenated with their batch index (as upstream's box_with_score_map_label_gen
    plugin)."""
    if len(samples) == 0:
        raise ValueError("cannot collate an empty list of samples")
    positives = [sample['positive_indices'] for sample in samples]
    stacked = {key: key for key in samples[0] if key != 'positive_indices'} | {'search_box': 'search_boxes'}
    return {
        **{batch_key: torch.from_numpy(np.stack([s[key] for s in samples])) for key, batch_key in stacked.items()},
        'positive_batch_idx': torch.from_numpy(
            np.concatenate([np.full(len(p), i, dtype=np.int64) for i, p in enumerate(positives)])),
        'positive_map_idx': torch.from_numpy(np.concatenate(positives).astype(np.int64)),
        'num_positives': torch.tensor([float(sum(len(p) for p in positives))], dtype=torch.float32),
    }
