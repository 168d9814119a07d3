"""Deterministic synthetic tracking data in the native on-disk formats (GOT-10k, LaSOT, TrackingNet, COCO).

Used by the one-command CPU demo (train on domain "A", LoRA-fine-tune on domain "B") and as test fixtures.
Every sequence is a pure function of ``(spec.seed, spec.domain, spec.first_index + index)``: same seed ->
byte-identical files, whatever the number of worker processes.

Annotation conventions (the same for every writer; see ``sequence_labels``):

* The box is the target's full (amodal) extent, clipped to the image wherever the target overlaps the image.
* ``visible_fraction`` = share of the target's pixels inside the image and not hidden by an occluder.
  A frame is *absent* when it is below ``ABSENT_BELOW``; absent frames are out of view (less than
  ``ABSENT_BELOW`` of the target inside the image) or fully occluded (inside, but covered).
* GOT-10k: every frame keeps its box, except frames whose target lies entirely outside the image, which get
  ``-1,-1,-1,-1`` as the official train annotations do for out-of-image targets (got-10k/toolkit issue #10);
  ``cover.label`` = 0 when absent, else ``clip(floor(8 * visible_fraction), 1, 8)`` (8 = fully visible).
* LaSOT: out-of-view frames get ``0,0,0,0`` (LaSOT's own convention); fully occluded frames keep the box.
* TrackingNet has no visibility flags, so every absent frame gets ``0,0,0,0`` (readers treat w = h = 0 as invalid).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

import cv2
import numpy as np

from lib.utils.io import atomic_write_text
from lib.utils.synthetic_render import DOMAINS, RenderedSequence, SceneParams, render_sequence, render_still

ABSENT_BELOW = 0.05
GENERATOR_VERSION = 1
DEMO_MARKER = "synthetic_complete.json"
_STREAM_SEQUENCE, _STREAM_STILL = 0, 1


def _int_pair(name: str, value: Sequence[int], minimum: int) -> tuple[int, int]:
    pair = tuple(int(v) for v in value)
    if len(pair) != 2 or pair[0] < minimum or pair[1] < pair[0]:
        raise ValueError(f"SyntheticSpec.{name} must be (low, high) with {minimum} <= low <= high, got {value!r}")
    return pair  # type: ignore[return-value]


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. ``image_size`` is [W, H]; ``frames`` is the (min, max) sequence length.

    Sequence ``index`` uses the random stream ``first_index + index``: give splits disjoint index ranges
    (same seed) so that they hold different sequences.
    """

    domain: str
    num_sequences: int
    frames: tuple[int, int] = (40, 80)
    image_size: tuple[int, int] = (160, 120)
    seed: int = 0
    first_index: int = 0
    distractors: tuple[int, int] = (1, 3)
    occluders: tuple[int, int] = (0, 2)
    exit_probability: float = 0.3
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise ValueError(f"SyntheticSpec.domain must be one of {sorted(DOMAINS)}, got {self.domain!r}")
        if self.num_sequences < 0 or self.seed < 0 or self.first_index < 0:
            raise ValueError("SyntheticSpec.num_sequences, seed and first_index must be >= 0, got "
                             f"{self.num_sequences}, {self.seed}, {self.first_index}")
        object.__setattr__(self, "frames", _int_pair("frames", self.frames, 1))
        object.__setattr__(self, "distractors", _int_pair("distractors", self.distractors, 0))
        object.__setattr__(self, "occluders", _int_pair("occluders", self.occluders, 0))
        size = tuple(int(v) for v in self.image_size)
        if len(size) != 2 or min(size) < 32:
            raise ValueError(f"SyntheticSpec.image_size must be [W, H] with both >= 32, got {self.image_size!r}")
        object.__setattr__(self, "image_size", size)
        if not 0.0 <= self.exit_probability <= 1.0:
            raise ValueError(f"SyntheticSpec.exit_probability must be in [0, 1], got {self.exit_probability}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"SyntheticSpec.jpeg_quality must be in 1..100, got {self.jpeg_quality}")


def _rng(spec: SyntheticSpec, stream: int, index: int) -> np.random.Generator:
    if not 0 <= index < spec.num_sequences:
        raise IndexError(f"index {index} outside 0..{spec.num_sequences - 1} of {spec}")
    domain_key = int.from_bytes(spec.domain.encode("utf-8"), "little")
    return np.random.default_rng([spec.seed, domain_key, stream, spec.first_index + index])


def render(spec: SyntheticSpec, index: int) -> RenderedSequence:
    """Sequence ``index`` of ``spec`` with all rendering details (writers use this)."""
    rng = _rng(spec, _STREAM_SEQUENCE, index)
    n_frames = int(rng.integers(spec.frames[0], spec.frames[1] + 1))
    params = SceneParams(n_frames, spec.image_size, spec.distractors, spec.occluders, spec.exit_probability)
    return render_sequence(rng, DOMAINS[spec.domain], params)


@dataclass(frozen=True)
class SequenceLabels:
    """Per-frame annotations derived from a rendered sequence (see the module docstring)."""

    boxes: np.ndarray  # (N, 4) xywh: clipped to the image where the target overlaps it, else the full box
    visible_fraction: np.ndarray  # (N,)
    absent: np.ndarray  # (N,) bool
    out_of_view: np.ndarray  # (N,) bool (implies absent)
    outside: np.ndarray  # (N,) bool: box entirely outside the image (implies out_of_view)
    cover: np.ndarray  # (N,) int 0..8
    cut_by_image: np.ndarray  # (N,) bool: the image border cuts the target's box


def sequence_labels(rendered: RenderedSequence, image_size: tuple[int, int]) -> SequenceLabels:
    width, height = image_size
    full = rendered.boxes
    clipped = np.clip(full, 0.0, [width, height, width, height])
    outside = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    xyxy = np.where(outside[:, None], full, clipped)
    boxes = np.column_stack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]])
    absent = rendered.visible < ABSENT_BELOW
    out_of_view = absent & ((rendered.in_view < ABSENT_BELOW) | outside)
    cover = np.where(absent, 0, np.clip(np.floor(8.0 * rendered.visible), 1, 8)).astype(np.int64)
    cut = ~outside & np.any(clipped != full, axis=1)
    return SequenceLabels(boxes, rendered.visible, absent, out_of_view, outside, cover, cut)


def generate_sequence(spec: SyntheticSpec, index: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """(RGB uint8 frames, xywh float boxes (N, 4), visible fraction (N,)) of sequence ``index``.

    Boxes are clipped to the image where the target overlaps it; where it lies entirely outside, the box is
    its true (outside) position. Frame 0 always shows the whole target.
    """
    rendered = render(spec, index)
    labels = sequence_labels(rendered, spec.image_size)
    return rendered.frames, labels.boxes, labels.visible_fraction


# --------------------------------------------------------------------------------------------- helpers

_Job = TypeVar("_Job")
_Result = TypeVar("_Result")


def _run(function: Callable[[_Job], _Result], jobs: Iterable[_Job], workers: int) -> list[_Result]:
    """Map ``function`` over ``jobs`` in this process (workers <= 1) or in a process pool (order kept)."""
    jobs = list(jobs)
    if workers <= 1 or len(jobs) <= 1:
        return [function(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int) -> None:
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    path.write_bytes(data.tobytes())


def _lines(rows: Iterable[Sequence[object]], fmt: str) -> str:
    return "".join(",".join(fmt % v for v in row) + "\n" for row in rows)


def _column(values: np.ndarray) -> str:
    return "".join(f"{int(v)}\n" for v in values)


def _timestamp(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# -------------------------------------------------------------------------------------------- GOT-10k

def got10k_sequence_name(split: str, index: int) -> str:
    return f"GOT-10k_{split.capitalize()}_{index + 1:06d}"


def _got10k_meta(spec: SyntheticSpec, index: int, rendered: RenderedSequence) -> str:
    # Line order matters: pytracking-style readers take object_class..motion_adverb from lines 6-10.
    style = DOMAINS[spec.domain]
    duration = int(math.ceil(len(rendered.frames) / 10))
    return ("[METAINFO]\n"
            f"url: synthetic://lorat/{spec.domain}/seed{spec.seed}/{spec.first_index + index}\n"
            "begin: 00:00:00\n"
            f"end: {_timestamp(duration)}\n"
            "anno_fps: 10Hz\n"
            f"object_class: {rendered.shape}\n"
            "motion_class: gliding\n"
            f"major_class: {style.family}\n"
            "root_class: synthetic\n"
            f"motion_adverb: {'quickly' if rendered.mean_speed > 0.15 else 'slowly'}\n"
            f"resolution: ({spec.image_size[0]}, {spec.image_size[1]})\n")


def _write_got10k_sequence(job: tuple[Path, SyntheticSpec, int]) -> None:
    folder, spec, index = job
    folder.mkdir(parents=True, exist_ok=True)
    rendered = render(spec, index)
    labels = sequence_labels(rendered, spec.image_size)
    for t, frame in enumerate(rendered.frames):
        _write_jpeg(folder / f"{t + 1:08d}.jpg", frame, spec.jpeg_quality)
    boxes = np.where(labels.outside[:, None], -1.0, labels.boxes)
    (folder / "groundtruth.txt").write_text(_lines(boxes, "%.4f"))
    (folder / "absence.label").write_text(_column(labels.absent))
    (folder / "cover.label").write_text(_column(labels.cover))
    (folder / "cut_by_image.label").write_text(_column(labels.cut_by_image))
    (folder / "meta_info.ini").write_text(_got10k_meta(spec, index, rendered))


def write_got10k(root: str | Path, split: str, spec: SyntheticSpec, workers: int = 1) -> list[str]:
    """Write ``<root>/<split>/list.txt`` and one GOT-10k folder per sequence (groundtruth for every frame,
    also for ``test``). Returns the sequence names."""
    split_dir = Path(root) / split
    names = [got10k_sequence_name(split, i) for i in range(spec.num_sequences)]
    _run(_write_got10k_sequence, [(split_dir / name, spec, i) for i, name in enumerate(names)], workers)
    split_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(split_dir / "list.txt", "".join(f"{name}\n" for name in names))
    return names


# ---------------------------------------------------------------------------------------------- LaSOT

def _write_lasot_sequence(job: tuple[Path, SyntheticSpec, int]) -> None:
    folder, spec, index = job
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rendered = render(spec, index)
    labels = sequence_labels(rendered, spec.image_size)
    for t, frame in enumerate(rendered.frames):
        _write_jpeg(folder / "img" / f"{t + 1:08d}.jpg", frame, spec.jpeg_quality)
    x0y0 = np.rint(labels.boxes[:, :2])
    x1y1 = np.rint(labels.boxes[:, :2] + labels.boxes[:, 2:])
    boxes = np.column_stack([x0y0 + 1, x1y1 - x0y0]).astype(np.int64)  # 1-based integers
    boxes[labels.out_of_view] = 0
    (folder / "groundtruth.txt").write_text(_lines(boxes, "%d"))
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
    _run(_write_lasot_sequence, jobs, workers)
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
        _write_jpeg(frames_dir / f"{t}.jpg", frame, spec.jpeg_quality)
    boxes = np.where(labels.absent[:, None], 0.0, labels.boxes)
    (chunk_dir / "anno" / f"{name}.txt").write_text(_lines(boxes[:1] if first_only else boxes, "%.4f"))


def write_trackingnet(root: str | Path, spec: SyntheticSpec, chunk: str = "TRAIN_0", workers: int = 1) -> list[str]:
    """Write chunk ``TRAIN_<k>`` or ``TEST`` under ``root``: ``anno/<seq>.txt`` (TEST: first frame only) and
    ``frames/<seq>/<i>.jpg`` (0-based, unpadded). Returns the sequence names."""
    if not re.fullmatch(r"TRAIN_\d+|TEST", chunk):
        raise ValueError(f"TrackingNet chunk must be 'TRAIN_<k>' or 'TEST', got {chunk!r}")
    chunk_dir = Path(root) / chunk
    (chunk_dir / "anno").mkdir(parents=True, exist_ok=True)
    _run(_write_trackingnet_sequence, [(chunk_dir, spec, i, chunk == "TEST") for i in range(spec.num_sequences)],
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
    rng = _rng(spec, _STREAM_STILL, index)
    image, items = render_still(rng, DOMAINS[spec.domain], spec.image_size, objects, crowd_probability)
    _write_jpeg(image_dir / f"{spec.first_index + index + 1:012d}.jpg", image, spec.jpeg_quality)
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
    per_image = _run(_coco_image, [(image_dir, spec, i, objects, crowd_probability)
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


# ----------------------------------------------------------------------------------------------- demo

@dataclass(frozen=True)
class DemoPlan:
    """Sizes of the demo data set: sequences per split (same for both domains) and sequence lengths."""

    splits: dict[str, int] = field(default_factory=lambda: {"train": 300, "val": 20, "test": 30})
    frames: tuple[int, int] = (40, 80)


DEMO_PLANS: dict[bool, DemoPlan] = {
    False: DemoPlan(),
    True: DemoPlan({"train": 24, "val": 4, "test": 6}, (24, 36)),
}


def demo_specs(seed: int, quick: bool) -> dict[str, dict[str, SyntheticSpec]]:
    """{domain: {split: spec}}; splits use disjoint index ranges of the same seed."""
    plan = DEMO_PLANS[quick]
    specs: dict[str, dict[str, SyntheticSpec]] = {}
    for domain in ("A", "B"):
        first = 0
        specs[domain] = {}
        for split, count in plan.splits.items():
            specs[domain][split] = SyntheticSpec(domain, count, plan.frames, seed=seed, first_index=first)
            first += count
    return specs


def ensure_demo_data(root: str | Path, seed: int = 0, quick: bool = False, workers: int | None = None
                     ) -> dict[str, Path]:
    """Make sure ``<root>/A`` and ``<root>/B`` hold GOT-10k-layout train/val/test splits for this seed/size.

    ``<root>/synthetic_complete.json`` is written last; without it (interrupted run) or with different
    settings, both domain folders are deleted and regenerated. Returns {domain: GOT-10k root}.
    Full size (2 x 350 sequences, about 42k frames of 160 x 120): about 1 to 1.5 minutes on 2 cores.
    """
    root = Path(root)
    specs = demo_specs(seed, quick)
    marker = root / DEMO_MARKER
    expected = json.dumps({"generator_version": GENERATOR_VERSION,
                           "specs": {d: {s: asdict(spec) for s, spec in splits.items()} for d, splits in specs.items()}},
                          sort_keys=True, indent=1) + "\n"
    paths = {domain: root / domain for domain in specs}
    if marker.is_file() and marker.read_text() == expected:
        return paths
    marker.unlink(missing_ok=True)
    for path in paths.values():
        if path.exists():
            shutil.rmtree(path)
    workers = workers if workers is not None else (os.cpu_count() or 1)
    for domain, splits in specs.items():
        for split, spec in splits.items():
            write_got10k(paths[domain], split, spec, workers=workers)
    atomic_write_text(marker, expected)
    return paths
