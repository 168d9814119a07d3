"""TrackingNet layout: `<chunk>/anno/<video>.txt` and `<chunk>/frames/<video>/<i>.jpg` (frames 0-based, unpadded
names). TRAIN chunks annotate every frame; the TEST chunk publishes the first box only."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from lib.datasets.frames import check_frame_count, image_names
from lib.datasets.text import BoxFile, read_boxes
from lib.utils.lmdb_store import Store


@dataclass(frozen=True)
class TrackingNetSequence:
    boxes: BoxFile
    frames: tuple[str, ...]  # store keys of the frames, in numeric order


def video_names(store: Store, chunk: str) -> list[str]:
    """Videos of `chunk`, in sorted annotation-file order (upstream)."""
    return [name[: -len(".txt")] for name in store.list(f"{chunk}/anno") if name.endswith(".txt")]


def frame_folder(chunk: str, video: str) -> str:
    return f"{chunk}/frames/{video}"


def frame_relpath(location: str, index: int) -> str:
    """Store key of 0-based frame `index` of the frame folder `location`."""
    return f"{location}/{index}.jpg"


def read_sequence(store: Store, chunk: str, video: str, first_row_only: bool = False) -> TrackingNetSequence:
    """A video's boxes and frames; a fully annotated video must have one image per box."""
    folder = frame_folder(chunk, video)
    frames = tuple(str(PurePosixPath(folder, name)) for name in image_names(store, folder))
    anno = f"{chunk}/anno/{video}.txt"
    boxes = read_boxes(store, anno, max_rows=1 if first_row_only else None)
    if not first_row_only:
        check_frame_count(store.describe(folder), len(boxes), store.describe(anno), len(frames), "its frame folder")
    return TrackingNetSequence(boxes, frames)
