"""LaSOT layout (LaSOT train / test and the LaSOT extension):
`<class>/<class>-<k>/{groundtruth.txt, full_occlusion.txt, out_of_view.txt, img/%08d.jpg}` (frames 1-based).

A frame is visible when it is neither fully occluded nor out of view. The boxes are returned as in the file
(1-based); the callers apply the dataset's shift (LaSOT train and test: -1, as upstream trackit/LoRAT's loaders;
the extension: none).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib.datasets.frames import check_frame_count, image_names
from lib.datasets.text import BoxFile, read_boxes, read_flags
from lib.utils.lmdb_store import Store


@dataclass(frozen=True)
class LasotSequence:
    boxes: BoxFile
    visible: np.ndarray  # bool (N,)


def sequence_folder(name: str) -> str:
    """`airplane-1` -> `airplane/airplane-1`."""
    return f"{name.rsplit('-', 1)[0]}/{name}"


def order_key(name: str) -> tuple[str, int]:
    """Class, then the number k (upstream's order of LaSOT sequences)."""
    cls, _, number = name.rpartition("-")
    return cls, int(number)


def frame_relpath(location: str, index: int) -> str:
    """Store key of 0-based frame `index` of the sequence at `location`."""
    return f"{location}/img/{index + 1:08d}.jpg"


def read_sequence(store: Store, location: str) -> LasotSequence:
    """Boxes and visibility of the sequence at `location`; its img/ folder must hold one image per box."""
    boxes = read_boxes(store, f"{location}/groundtruth.txt")
    invisible = np.zeros(len(boxes), dtype=bool)
    for flag_file in ("full_occlusion.txt", "out_of_view.txt"):
        invisible |= read_flags(store, f"{location}/{flag_file}", range(2), boxes).astype(bool)
    frames = len(image_names(store, f"{location}/img"))
    check_frame_count(store.describe(location), len(boxes), "groundtruth.txt", frames, "img/")
    return LasotSequence(boxes, ~invisible)
