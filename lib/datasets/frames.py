"""Frame folders: which image files a sequence has, and the check that they match its annotation."""
from __future__ import annotations

import re

from lib.utils.lmdb_store import Store

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_NUMBER = re.compile(r"\d+")


def _numeric_key(name: str) -> tuple[int, str]:
    numbers = _NUMBER.findall(name.rsplit(".", 1)[0])
    return (int(numbers[-1]) if numbers else -1, name)


def image_names(store: Store, folder: str, numeric: bool = True) -> list[str]:
    """Names of the image files directly in `folder`, sorted by the last number in the name (`numeric`) or by name.

    A listing only (no image is opened), cheap enough to run for every sequence of a dataset.
    """
    names = [name for name in store.list(folder) if name.lower().endswith(IMAGE_SUFFIXES)]
    if not names:
        raise FileNotFoundError(f"frame folder {store.describe(folder)} holds no images; re-extract the dataset")
    return sorted(names, key=_numeric_key) if numeric else sorted(names)


def check_frame_count(sequence: str, annotated: int, annotation: str, frames: int, frame_folder: str) -> None:
    """Frames without a box, or boxes without a frame, are an error naming the sequence and both counts."""
    if annotated != frames:
        raise ValueError(
            f"sequence {sequence}: {annotation} annotates {annotated} frames but {frame_folder} holds {frames} images; "
            "the sequence is incomplete or its annotation was cut, re-extract or re-download it"
        )
