"""GOT-10k layout (GOT-10k train / val / test and the synthetic datasets): `<subset>/list.txt` and
`<subset>/<seq>/{groundtruth.txt, absence.label, cover.label, %08d.jpg}` (frames 1-based).

absence.label (0/1) marks frames without the target; cover.label (0..8) is the visible-ratio level. The test
subset publishes only the first box, so its sequences have no labels and are not checked against their frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from lib.datasets.frames import check_frame_count, image_names
from lib.datasets.text import BoxFile, read_boxes, read_flags
from lib.utils.lmdb_store import Store


@dataclass(frozen=True)
class Got10kSequence:
    boxes: BoxFile  # x, y, w, h as in the file (GOT-10k is 0-based)
    frames: tuple[str, ...]  # store keys of the frames, in numeric order
    absence: np.ndarray | None = None  # int (N,); None for first-row-only sequences
    cover: np.ndarray | None = None  # int (N,); None where cover.label is absent


def sequence_names(store: Store, subset: str) -> list[str]:
    """The sequence folders of `subset`, as its list.txt names them."""
    return [line.strip() for line in store.read_text(f"{subset}/list.txt").splitlines() if line.strip()]


def frame_relpath(location: str, index: int) -> str:
    """Store key of 0-based frame `index` of the sequence at `location`."""
    return f"{location}/{index + 1:08d}.jpg"


def read_sequence(store: Store, location: str, first_row_only: bool = False, require_cover: bool = False
                  ) -> Got10kSequence:
    """The sequence at `location`. Full sequences must have one image and one absence (and cover) label per box;
    `first_row_only` reads the frame-0 box alone (the test subset)."""
    frames = tuple(str(PurePosixPath(location, name)) for name in image_names(store, location))
    if first_row_only:
        return Got10kSequence(read_boxes(store, f"{location}/groundtruth.txt", max_rows=1), frames)
    boxes = read_boxes(store, f"{location}/groundtruth.txt")
    check_frame_count(store.describe(location), len(boxes), "groundtruth.txt", len(frames), "the folder")
    absence = read_flags(store, f"{location}/absence.label", range(2), boxes)
    cover_path = f"{location}/cover.label"
    has_cover = require_cover or store.exists(cover_path)
    cover = read_flags(store, cover_path, range(9), boxes) if has_cover else None
    return Got10kSequence(boxes, frames, absence, cover)
