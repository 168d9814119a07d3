"""Per-worker throughput of the training data path: JPEG decode (cv2) + LoRATProcessing at B-224 sizes.

Runs in ONE process with one OpenCV/torch thread, i.e. what one data-loader worker does on one core:

    python -m benchmarks.data_pipeline --samples 500   (from the repository root)
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from lib.train.data.processing import LoRATProcessing

FRAME_SIZE = (1280, 720)  # (W, H)
B224 = dict(template_size=(112, 112), search_size=(224, 224), template_area_factor=2.0, search_area_factor=4.0,
            scale_jitter=0.25, translation_jitter=3.0, min_object_size=10.0)


def write_frames(folder: Path, count: int, rng: np.random.Generator) -> list[tuple[Path, np.ndarray]]:
    """Video-like frames (smooth background, flat shapes, sensor noise) saved as quality-90 JPEGs, with a box."""
    width, height = FRAME_SIZE
    frames = []
    for index in range(count):
        coarse = rng.integers(0, 256, (9, 16, 3), dtype=np.uint8)
        image = cv2.resize(coarse, FRAME_SIZE, interpolation=cv2.INTER_CUBIC)
        for _ in range(20):
            x, y = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
            w, h = int(rng.integers(20, 300)), int(rng.integers(20, 300))
            cv2.rectangle(image, (x, y), (x + w, y + h), [int(v) for v in rng.integers(0, 256, 3)], -1)
        image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
        path = folder / f"{index:04d}.jpg"
        if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90]):
            raise OSError(f"could not write {path}")
        size = rng.uniform(30, 250, 2)
        top_left = rng.uniform(0, (width - size[0], height - size[1]))
        frames.append((path, np.concatenate([top_left, top_left + size])))
    return frames


def decode(path: Path) -> np.ndarray:
    """RGB uint8; decodes straight to RGB when this OpenCV has IMREAD_COLOR_RGB."""
    rgb_flag = getattr(cv2, 'IMREAD_COLOR_RGB', None)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR if rgb_flag is None else rgb_flag)
    if image is None:
        raise OSError(f"could not decode {path}")
    return image if rgb_flag is not None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def run(samples: int, num_frames: int, seed: int) -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    processing = LoRATProcessing(**B224)
    with tempfile.TemporaryDirectory() as tmp:
        frames = write_frames(Path(tmp), num_frames, rng)
        for path, _ in frames[:4]:  # warm the page cache and lazy initialisations
            decode(path)
        decode_time = process_time = 0.
        produced = rejected = 0
        start = time.perf_counter()
        while produced < samples:
            z_index, x_index = rng.choice(num_frames, 2, replace=False)
            t0 = time.perf_counter()
            z_image, x_image = decode(frames[z_index][0]), decode(frames[x_index][0])
            t1 = time.perf_counter()
            sample = processing(z_image, frames[z_index][1], x_image, frames[x_index][1], rng)
            t2 = time.perf_counter()
            decode_time += t1 - t0
            process_time += t2 - t1
            if sample is None:
                rejected += 1
            else:
                produced += 1
        total = time.perf_counter() - start
    print(f"{produced} samples ({rejected} rejected pairs) from {num_frames} {FRAME_SIZE[0]}x{FRAME_SIZE[1]} JPEGs")
    print(f"decode {decode_time / produced * 1e3:.2f} ms/sample, processing {process_time / produced * 1e3:.2f} "
          f"ms/sample")
    print(f"throughput: {produced / total:.1f} samples/s per worker process (1 core)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--samples', type=int, default=500)
    parser.add_argument('--frames', type=int, default=16)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    run(args.samples, args.frames, args.seed)


if __name__ == '__main__':
    main()
