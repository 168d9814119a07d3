"""Deterministic synthetic tracking data in the GOT-10k on-disk format.

Used by the one-command CPU demo (train on domain "A", LoRA-fine-tune on domain "B"); the test suite's writers of
the other formats (LaSOT, TrackingNet, COCO) build on it (tests/fixtures_synthetic.py).
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
"""
from __future__ import annotations

import json
import math
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

import cv2
import numpy as np

from lib.utils.io import atomic_write_text
from lib.utils.synthetic_render import DOMAINS, RenderedSequence, SceneParams, render_sequence

ABSENT_BELOW = 0.05
GENERATOR_VERSION = 1
DEMO_MARKER = "synthetic_complete.json"
STREAM_SEQUENCE, STREAM_STILL = 0, 1  # random streams: sequences, still images (test fixtures)


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
        if self.occluders[1] > 0 and self.frames[0] < 2:
            raise ValueError(f"SyntheticSpec: occluders cross the target after frame 0, so sequences need at least 2 "
                             f"frames; got frames={self.frames} with occluders={self.occluders} (use occluders=(0, 0))")
        size = tuple(int(v) for v in self.image_size)
        if len(size) != 2 or min(size) < 32:
            raise ValueError(f"SyntheticSpec.image_size must be [W, H] with both >= 32, got {self.image_size!r}")
        object.__setattr__(self, "image_size", size)
        if not 0.0 <= self.exit_probability <= 1.0:
            raise ValueError(f"SyntheticSpec.exit_probability must be in [0, 1], got {self.exit_probability}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"SyntheticSpec.jpeg_quality must be in 1..100, got {self.jpeg_quality}")


def rng_for(spec: SyntheticSpec, stream: int, index: int) -> np.random.Generator:
    if not 0 <= index < spec.num_sequences:
        raise IndexError(f"index {index} outside 0..{spec.num_sequences - 1} of {spec}")
    domain_key = int.from_bytes(spec.domain.encode("utf-8"), "little")
    return np.random.default_rng([spec.seed, domain_key, stream, spec.first_index + index])


def render(spec: SyntheticSpec, index: int) -> RenderedSequence:
    """Sequence ``index`` of ``spec`` with all rendering details (writers use this)."""
    rng = rng_for(spec, STREAM_SEQUENCE, index)
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


def run_jobs(function: Callable[[_Job], _Result], jobs: Iterable[_Job], workers: int) -> list[_Result]:
    """Map ``function`` over ``jobs`` in this process (workers <= 1) or in a process pool (order kept)."""
    jobs = list(jobs)
    if workers <= 1 or len(jobs) <= 1:
        return [function(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


def write_jpeg(path: Path, rgb: np.ndarray, quality: int) -> None:
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    path.write_bytes(data.tobytes())


def format_rows(rows: Iterable[Sequence[object]], fmt: str) -> str:
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
        write_jpeg(folder / f"{t + 1:08d}.jpg", frame, spec.jpeg_quality)
    boxes = np.where(labels.outside[:, None], -1.0, labels.boxes)
    (folder / "groundtruth.txt").write_text(format_rows(boxes, "%.4f"))
    (folder / "absence.label").write_text(_column(labels.absent))
    (folder / "cover.label").write_text(_column(labels.cover))
    (folder / "cut_by_image.label").write_text(_column(labels.cut_by_image))
    (folder / "meta_info.ini").write_text(_got10k_meta(spec, index, rendered))


def write_got10k(root: str | Path, split: str, spec: SyntheticSpec, workers: int = 1) -> list[str]:
    """Write ``<root>/<split>/list.txt`` and one GOT-10k folder per sequence (groundtruth for every frame,
    also for ``test``). Returns the sequence names."""
    split_dir = Path(root) / split
    names = [got10k_sequence_name(split, i) for i in range(spec.num_sequences)]
    run_jobs(_write_got10k_sequence, [(split_dir / name, spec, i) for i, name in enumerate(names)], workers)
    split_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(split_dir / "list.txt", "".join(f"{name}\n" for name in names))
    return names


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


PRETRAIN_SEED = 1000  # the pretraining domain's random streams: apart from the demo's seeds 0, 1, 2, ...
PRETRAIN_SEQUENCES = 1200


def pretrain_specs(quick: bool = False) -> dict[str, dict[str, SyntheticSpec]]:
    """The demo backbone's pretraining data (tracking/pretrain_demo_backbone.py): a train split of domain P."""
    plan = DEMO_PLANS[quick]
    count = plan.splits["train"] if quick else PRETRAIN_SEQUENCES
    return {"P": {"train": SyntheticSpec("P", count, plan.frames, seed=PRETRAIN_SEED)}}


def ensure_demo_data(root: str | Path, seed: int = 0, quick: bool = False, workers: int | None = None
                     ) -> dict[str, Path]:
    """Make sure ``<root>/A`` and ``<root>/B`` hold GOT-10k-layout train/val/test splits for this seed/size.
    Full size (2 x 350 sequences, about 42k frames of 160 x 120): under half a minute on 2 cores."""
    return ensure_synthetic_data(root, demo_specs(seed, quick), workers)


def ensure_synthetic_data(root: str | Path, specs: dict[str, dict[str, SyntheticSpec]], workers: int | None = None
                          ) -> dict[str, Path]:
    """Make sure ``<root>/<domain>/<split>`` holds each spec's sequences (GOT-10k layout).

    ``<root>/synthetic_complete.json`` records the specs and is written last; without it (interrupted run) or with
    different specs, the domain folders are deleted and regenerated. Returns {domain: GOT-10k root}.
    """
    root = Path(root)
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
