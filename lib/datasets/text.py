"""Annotation text files: box rows, integer label files, name lists; every error names the file and line."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lib.utils.lmdb_store import FolderStore, Store

_SEPARATORS = re.compile(r"[,\s]+")


def _fields(line: str) -> list[str]:
    return [field for field in _SEPARATORS.split(line.strip()) if field]


def parse_number_rows(text: str, source: str, columns: int) -> np.ndarray:
    """Numeric rows separated by commas, tabs or spaces (float64, shape (N, columns); `NaN` allowed; blank lines
    skipped). A bad line is an error naming `source`:line."""
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        rows = np.array([_fields(line) for line in lines], dtype=np.float64)
        if rows.ndim == 2 and rows.shape[1] == columns:
            return rows
    except ValueError:
        pass
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = [float(field) for field in _fields(line)]
        except ValueError:
            values = []
        if len(values) != columns:
            raise ValueError(
                f"{source}:{number}: expected {columns} comma-separated numbers, got {line!r}; "
                "fix or re-download that annotation file"
            )
    raise ValueError(f"{source}: no annotation rows found; fix or re-download that annotation file")


def row_line_numbers(text: str) -> np.ndarray:
    """1-based line number of each row `parse_number_rows` returns (blank lines are not rows)."""
    return np.array([n for n, line in enumerate(text.splitlines(), start=1) if line.strip()], dtype=np.int64)


@dataclass(frozen=True)
class BoxFile:
    """The `x, y, w, h` rows of one annotation file, with the file and the line each row came from, so that a
    problem found later (a NaN box when scoring) can still name them."""

    xywh: np.ndarray  # float64 (N, 4), as in the file
    lines: np.ndarray  # int64 (N,), 1-based
    source: str  # the file (or LMDB key) as error messages name it

    def __len__(self) -> int:
        return len(self.xywh)

    def head(self, rows: int) -> BoxFile:
        return BoxFile(self.xywh[:rows], self.lines[:rows], self.source)

    def take(self, index: slice | np.ndarray) -> BoxFile:
        return BoxFile(self.xywh[index], self.lines[index], self.source)


def read_boxes(store: Store, relpath: str, max_rows: int | None = None) -> BoxFile:
    """The `x,y,w,h` rows of `relpath` (the first `max_rows` only when given, e.g. a test set's public frame 0)."""
    text = store.read_text(relpath)
    if max_rows is not None:
        kept = row_line_numbers(text)[:max_rows]
        text = "\n".join(text.splitlines()[: kept[-1]]) if len(kept) else ""
    boxes = parse_number_rows(text, store.describe(relpath), 4)
    return BoxFile(boxes, row_line_numbers(text), store.describe(relpath))


def read_box_file(path: str | Path) -> np.ndarray:
    """The `x,y,w,h` rows of a file on disk (e.g. a result file), float64 (N, 4)."""
    path = Path(path)
    return read_boxes(FolderStore(path.parent), path.name).xywh


def parse_int_flags(text: str, source: str, allowed: range) -> np.ndarray:
    """Integers separated by commas, spaces and/or newlines (LaSOT flags on one line, GOT-10k labels one per line);
    a value outside `allowed` is an error naming `source`:line."""
    values = []
    for number, line in enumerate(text.splitlines(), start=1):
        for field in _fields(line):
            try:
                value = int(field)
            except ValueError:
                value = None
            if value is None or value not in allowed:
                raise ValueError(
                    f"{source}:{number}: expected integers in [{allowed.start}, {allowed.stop - 1}], got {field!r}; "
                    "fix or re-download that annotation file"
                )
            values.append(value)
    return np.asarray(values, dtype=np.int64)


def read_flags(store: Store, relpath: str, allowed: range, rows: BoxFile) -> np.ndarray:
    """A per-frame label file that must have one value per row of the box file `rows`."""
    values = parse_int_flags(store.read_text(relpath), store.describe(relpath), allowed)
    if len(values) != len(rows):
        raise ValueError(
            f"{store.describe(relpath)} has {len(values)} labels but {rows.source} has {len(rows)} boxes; "
            "the sequence is corrupt, re-download it"
        )
    return values


def read_name_list(path: str | Path) -> list[str]:
    """Non-empty, non-comment lines of a sequence list file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sequence list {path} does not exist; restore it from the repository")
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]
