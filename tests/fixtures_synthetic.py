"""Writers of synthetic datasets in the LaSOT, TrackingNet and COCO layouts, for tests only (the demo needs only
the GOT-10k writer of lib/utils/synthetic.py, whose rendering and labels these share).

Annotation conventions on top of lib/utils/synthetic.py's:

* LaSOT: out-of-view frames get ``0,0,0,0`` (LaSOT's own convention); fully occluded frames keep the box.
* TrackingNet has no visibility flags, so every absent frame gets ``0,0,0,0`` (readers treat w = h = 0 as invalid).
* COCO: still images with several objects and maybe one crowd cluster (``iscrowd = 1``, RLE mask).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from lib.utils.io import atomic_write_text
from lib.utils.synthetic import (GENERATOR_VERSION, STREAM_STILL, SyntheticSpec, format_rows, render, rng_for, run_jobs,
                                 sequence_labels, write_jpeg)
from lib.utils.synthetic_render import BACKGROUNDS, DOMAINS, DomainStyle, Placed, composite, place, random_object


@dataclass(frozen=True)
class StillObject:
    category: str
    mask: np.ndarray  # bool H x W, visible pixels
    iscrowd: bool


def render_still(rng: np.random.Generator, style: DomainStyle, image_size: tuple[int, int],
                 objects: tuple[int, int], crowd_probability: float) -> tuple[np.ndarray, list[StillObject]]:
    """A single detection-style image: several objects (later ones on top) and maybe one crowd cluster
    (a group of small same-shape objects annotated together, drawn first)."""
    frame_w, frame_h = image_size
    canvas = BACKGROUNDS[style.background](rng, frame_w, frame_h, style)
    layers: list[tuple[str, list[Placed], bool]] = []
    if rng.random() < crowd_probability:
        shape, texture = str(rng.choice(style.shapes)), str(rng.choice(style.textures))
        centre = rng.uniform([0.2 * frame_w, 0.2 * frame_h], [0.8 * frame_w, 0.8 * frame_h])
        members = []
        for _ in range(int(rng.integers(4, 8))):
            member = rng.uniform(5.0, 10.0, size=2)
            corner = centre + rng.normal(0.0, 8.0, 2) - member / 2
            sprite = random_object(rng, style, rng.uniform(0.0, 1.0), shape, texture, (member[0], member[1]))
            members.append(place(sprite, np.concatenate([corner, corner + member])))
        layers.append((shape, members, True))
    for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
        shape, texture = str(rng.choice(style.shapes)), str(rng.choice(style.textures))
        base = min(frame_w, frame_h) * rng.uniform(0.12, 0.35)
        aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
        size = np.array([base * math.sqrt(aspect), base / math.sqrt(aspect)])
        corner = rng.uniform(-0.2 * size, np.array([frame_w, frame_h]) - 0.8 * size)
        sprite = random_object(rng, style, rng.uniform(0.0, 1.0), shape, texture, (size[0], size[1]))
        layers.append((shape, [place(sprite, np.concatenate([corner, corner + size]))], False))

    alphas = []
    for _, pieces, _ in layers:
        coverage = np.zeros((frame_h, frame_w), dtype=np.float32)
        for piece in pieces:
            composite(canvas, piece, coverage)
        alphas.append(coverage)
    result, above = [], np.zeros((frame_h, frame_w), dtype=np.float32)
    for (shape, _, crowd), alpha in zip(reversed(layers), reversed(alphas)):
        result.append(StillObject(shape, alpha * (1.0 - above) > 0.5, crowd))
        above += alpha * (1.0 - above)
    result.reverse()
    return np.clip(canvas + 0.5, 0.0, 255.0).astype(np.uint8), result


# ---------------------------------------------------------------------------------------------- LaSOT

def _write_lasot_sequence(job: tuple[Path, SyntheticSpec, int]) -> None:
    folder, spec, index = job
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rendered = render(spec, index)
    labels = sequence_labels(rendered, spec.image_size)
    for t, frame in enumerate(rendered.frames):
        write_jpeg(folder / "img" / f"{t + 1:08d}.jpg", frame, spec.jpeg_quality)
    x0y0 = np.rint(labels.boxes[:, :2])
    x1y1 = np.rint(labels.boxes[:, :2] + labels.boxes[:, 2:])
    boxes = np.column_stack([x0y0 + 1, x1y1 - x0y0]).astype(np.int64)  # 1-based integers
    boxes[labels.out_of_view] = 0
    (folder / "groundtruth.txt").write_text(format_rows(boxes, "%d"))
    full_occlusion = labels.absent & ~labels.out_of_view
    (folder / "full_occlusion.txt").write_text(",".join(str(int(v)) for v in full_occlusion) + "\n")
    (folder / "out_of_view.txt").write_text(",".join(str(int(v)) for v in labels.out_of_view) + "\n")
    (folder / "nlp.txt").write_text(f"{rendered.colour_name} {rendered.texture} {rendered.shape} "
                                    "moving among look-alike shapes\n")


def write_lasot(root: str | Path, spec: SyntheticSpec, classes: Sequence[str], workers: int = 1) -> list[str]:
    """Write ``<root>/<class>/<class>-<k>/`` LaSOT folders; sequence i goes to class ``classes[i % C]`` as
    number ``k = i // C + 1``. Returns the sequence names (``<class>-<k>``)."""
    if not classes or any(not re.fullmatch(r"[A-Za-z0-9_]+", c) for c in classes):
        raise ValueError(f"write_lasot needs non-empty class names made of letters/digits/_, got {classes!r}")
    root = Path(root)
    names, jobs = [], []
    for i in range(spec.num_sequences):
        cls = classes[i % len(classes)]
        names.append(f"{cls}-{i // len(classes) + 1}")
        jobs.append((root / cls / names[-1], spec, i))
    run_jobs(_write_lasot_sequence, jobs, workers)
    return names


# ----------------------------------------------------------------------------------------- TrackingNet

def trackingnet_sequence_name(spec: SyntheticSpec, index: int) -> str:
    return f"synthetic{spec.domain}_{spec.first_index + index:06d}_0"


def _write_trackingnet_sequence(job: tuple[Path, SyntheticSpec, int, bool]) -> None:
    chunk_dir, spec, index, first_only = job
    name = trackingnet_sequence_name(spec, index)
    frames_dir = chunk_dir / "frames" / name
    frames_dir.mkdir(parents=True, exist_ok=True)
    rendered = render(spec, index)
    labels = sequence_labels(rendered, spec.image_size)
    for t, frame in enumerate(rendered.frames):
        write_jpeg(frames_dir / f"{t}.jpg", frame, spec.jpeg_quality)
    boxes = np.where(labels.absent[:, None], 0.0, labels.boxes)
    (chunk_dir / "anno" / f"{name}.txt").write_text(format_rows(boxes[:1] if first_only else boxes, "%.4f"))


def write_trackingnet(root: str | Path, spec: SyntheticSpec, chunk: str = "TRAIN_0", workers: int = 1) -> list[str]:
    """Write chunk ``TRAIN_<k>`` or ``TEST`` under ``root``: ``anno/<seq>.txt`` (TEST: first frame only) and
    ``frames/<seq>/<i>.jpg`` (0-based, unpadded). Returns the sequence names."""
    if not re.fullmatch(r"TRAIN_\d+|TEST", chunk):
        raise ValueError(f"TrackingNet chunk must be 'TRAIN_<k>' or 'TEST', got {chunk!r}")
    chunk_dir = Path(root) / chunk
    (chunk_dir / "anno").mkdir(parents=True, exist_ok=True)
    run_jobs(_write_trackingnet_sequence, [(chunk_dir, spec, i, chunk == "TEST") for i in range(spec.num_sequences)],
         workers)
    return [trackingnet_sequence_name(spec, i) for i in range(spec.num_sequences)]


# ----------------------------------------------------------------------------------------------- COCO

def rle_encode(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE (column-major runs, starting with a run of zeros) as used for iscrowd=1."""
    flat = mask.flatten(order="F").astype(np.int8)
    boundaries = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(boundaries).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"counts": counts, "size": [int(mask.shape[0]), int(mask.shape[1])]}


def _polygons(mask: np.ndarray) -> list[list[float]]:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [[float(v) + 0.5 for v in c.reshape(-1)] for c in contours if len(c) >= 3]


def _coco_image(job: tuple[Path, SyntheticSpec, int, tuple[int, int], float]) -> list[dict]:
    """Render and save image ``index``; return its annotations (without ids)."""
    image_dir, spec, index, objects, crowd_probability = job
    rng = rng_for(spec, STREAM_STILL, index)
    image, items = render_still(rng, DOMAINS[spec.domain], spec.image_size, objects, crowd_probability)
    write_jpeg(image_dir / f"{spec.first_index + index + 1:012d}.jpg", image, spec.jpeg_quality)
    annotations = []
    for item in items:
        area = int(item.mask.sum())
        polygons = [] if item.iscrowd else _polygons(item.mask)
        if area < 16 or not (item.iscrowd or polygons):
            continue
        ys, xs = np.nonzero(item.mask)
        bbox = [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())]
        annotations.append({"category": item.category, "bbox": bbox, "area": float(area),
                            "iscrowd": int(item.iscrowd),
                            "segmentation": rle_encode(item.mask) if item.iscrowd else polygons})
    return annotations


def write_coco(root: str | Path, spec: SyntheticSpec, objects: tuple[int, int] = (2, 5),
               crowd_probability: float = 0.3, split: str = "train2017", workers: int = 1) -> Path:
    """Write ``spec.num_sequences`` images to ``<root>/images/<split>/`` and
    ``<root>/annotations/instances_<split>.json``; categories are the domain's shapes. Returns the json path."""
    root = Path(root)
    image_dir = root / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    shapes = DOMAINS[spec.domain].shapes
    categories = [{"id": i + 1, "name": s, "supercategory": DOMAINS[spec.domain].family} for i, s in enumerate(shapes)]
    per_image = run_jobs(_coco_image, [(image_dir, spec, i, objects, crowd_probability)
                                   for i in range(spec.num_sequences)], workers)
    images, annotations = [], []
    for i, found in enumerate(per_image):
        image_id = spec.first_index + i + 1
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": spec.image_size[0],
                       "height": spec.image_size[1]})
        for annotation in found:
            category = annotation.pop("category")
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": shapes.index(category) + 1, **annotation})
    document = {"info": {"description": f"synthetic domain {spec.domain}", "version": str(GENERATOR_VERSION)},
                "licenses": [], "images": images, "annotations": annotations, "categories": categories}
    path = root / "annotations" / f"instances_{split}.json"
    atomic_write_text(path, json.dumps(document))
    return path
