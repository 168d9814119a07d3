"""Result files: one layout shared by the runner, the analysis and the packers.

`<results_path>/<script>/<config>[_<runid:03d>]/<dataset>/<seq>.txt`: one `x,y,w,h` line per frame, floats
`%.4f`, comma separated, in the dataset's own file convention (`Sequence.file_offset` is added to x, y:
LaSOT files are 1-based like its toolkit and published raw results); `<seq>_time.txt`: seconds per frame.
Both are written atomically, time file first and box file last, so a box file with one line per frame
marks a finished sequence.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lib.test.evaluation.data import Sequence
from lib.test.evaluation.datasets import read_box_file
from lib.utils.io import atomic_write_text


def tracker_results_dir(results_path: str | Path, script: str, config: str, run_id: int | None = None) -> Path:
    """`<results_path>/<script>/<config>` or `.../<config>_<runid:03d>`."""
    folder = config if run_id is None else f"{config}_{run_id:03d}"
    return Path(results_path) / script / folder


def box_file(results_dir: Path, seq: Sequence) -> Path:
    return Path(results_dir) / seq.dataset / f"{seq.name}.txt"


def time_file(results_dir: Path, seq: Sequence) -> Path:
    return Path(results_dir) / seq.dataset / f"{seq.name}_time.txt"


def format_boxes(boxes_xywh: np.ndarray, fmt: str = "%.4f") -> str:
    """Lines `x,y,w,h` (comma separated) with the given number format."""
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    return "".join(",".join(fmt % v for v in row) + "\n" for row in boxes)


def write_sequence_result(results_dir: Path, seq: Sequence, boxes_xywh: np.ndarray, times: np.ndarray) -> None:
    """Atomically write the boxes (0-based internal coordinates) and per-frame times of one sequence."""
    boxes = np.array(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    if len(boxes) != seq.num_frames or len(times) != seq.num_frames:
        raise ValueError(
            f"{seq.dataset}/{seq.name}: {len(boxes)} boxes and {len(times)} times for {seq.num_frames} frames"
        )
    boxes[:, :2] += seq.file_offset
    path = box_file(results_dir, seq)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(time_file(results_dir, seq), "".join(f"{t:.8f}\n" for t in times))
    atomic_write_text(path, format_boxes(boxes))


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def is_finished(results_dir: Path, seq: Sequence) -> bool:
    """Both files exist and the box file has one line per frame."""
    boxes, times = box_file(results_dir, seq), time_file(results_dir, seq)
    return boxes.is_file() and times.is_file() and _count_lines(boxes) == seq.num_frames


def read_sequence_boxes(results_dir: Path, seq: Sequence) -> np.ndarray:
    """Boxes of a finished sequence in internal (0-based) coordinates; wrong length is an error naming the file."""
    path = box_file(results_dir, seq)
    boxes = read_box_file(path)
    if len(boxes) != seq.num_frames:
        raise ValueError(f"{path}: {len(boxes)} boxes for {seq.num_frames} frames; rerun tracking/test.py")
    boxes[:, :2] -= seq.file_offset
    return boxes


def read_sequence_times(results_dir: Path, seq: Sequence) -> np.ndarray:
    """Per-frame seconds of a finished sequence."""
    path = time_file(results_dir, seq)
    if not path.is_file():
        raise FileNotFoundError(f"time file {path} does not exist; rerun tracking/test.py for {seq.name}")
    try:
        return np.asarray([float(v) for v in path.read_text(encoding="utf-8").split()], dtype=np.float64)
    except ValueError:
        raise ValueError(f"{path}: expected one number (seconds) per line") from None


def missing_sequences(results_dir: Path, sequences: list[Sequence]) -> list[str]:
    """Names of the sequences whose result files are absent or incomplete."""
    return [seq.name for seq in sequences if not is_finished(results_dir, seq)]


def incomplete_results(results_dirs: list[Path], sequences: list[Sequence]) -> list[str]:
    """One line per results folder that lacks sequences: `<folder>: N missing: a, b, ...` (empty when complete)."""
    problems = []
    for results_dir in results_dirs:
        missing = missing_sequences(results_dir, sequences)
        if missing:
            problems.append(f"{results_dir / sequences[0].dataset}: {len(missing)} missing: {', '.join(missing)}")
    return problems
