"""Submission zips for the evaluation servers (GOT-10k test, TrackingNet test), built from our result files.

Formats follow the official LoRAT writers (https://github.com/LitingLin/LoRAT, trackit/data/components/
result_collector/handler/external_adaptors/got10k.py and trackingnet.py): boxes are rasterized like upstream
(floor x1, y1; floor(x2 + 1 - 1e-4), floor(y2 + 1 - 1e-4)) unless `rasterize=False`, then written `x,y,w,h`
comma separated; GOT-10k `%.4f` as `<seq>/<seq>_<rep:03d>.txt` + `<seq>/<seq>_time.txt` (`%.8f`, first run);
TrackingNet `%.2f` as flat `<seq>.txt`. The zip is written atomically; the result files are left in place.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from lib.test.evaluation.data import Sequence
from lib.test.evaluation.results import format_boxes, incomplete_results, read_sequence_boxes, read_sequence_times
from lib.utils.boxes import rasterize, xywh_to_xyxy, xyxy_to_xywh
from lib.utils.io import atomic_write_bytes


def _submission_boxes(results_dir: Path, seq: Sequence, rasterize_boxes: bool) -> np.ndarray:
    boxes = read_sequence_boxes(results_dir, seq)
    return xyxy_to_xywh(rasterize(xywh_to_xyxy(boxes)).astype(np.float64)) if rasterize_boxes else boxes


def check_complete(sequences: list[Sequence], results_dirs: list[Path]) -> None:
    """Every sequence of the dataset must have finished result files in every results folder."""
    problems = incomplete_results(results_dirs, sequences)
    if problems:
        raise FileNotFoundError(
            "cannot pack an incomplete submission (run tracking/test.py for these first):\n  " + "\n  ".join(problems)
        )


def write_zip(out_path: Path, entries: dict[str, str]) -> Path:
    """Zip `entries` (name -> text) in the given order and write the archive atomically."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in entries.items():
            archive.writestr(name, text)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_path, buffer.getvalue())
    return out_path


def got10k_entries(sequences: list[Sequence], results_dirs: list[Path], rasterize_boxes: bool = True) -> dict[str, str]:
    """`<seq>/<seq>_001.txt` (one per run, in order) and `<seq>/<seq>_time.txt` (first run) for every sequence."""
    entries = {}
    for seq in sequences:
        for rep, results_dir in enumerate(results_dirs, start=1):
            boxes = _submission_boxes(results_dir, seq, rasterize_boxes)
            entries[f"{seq.name}/{seq.name}_{rep:03d}.txt"] = format_boxes(boxes, "%.4f")
        times = read_sequence_times(results_dirs[0], seq)
        entries[f"{seq.name}/{seq.name}_time.txt"] = "".join(f"{t:.8f}\n" for t in times)
    return entries


def trackingnet_entries(
    sequences: list[Sequence], results_dirs: list[Path], rasterize_boxes: bool = True
) -> dict[str, str]:
    """Flat `<seq>.txt` per sequence; the server takes one run per zip."""
    if len(results_dirs) != 1:
        raise ValueError(f"TrackingNet takes one run per zip, got {len(results_dirs)}; pack each run id separately")
    return {f"{seq.name}.txt": format_boxes(_submission_boxes(results_dirs[0], seq, rasterize_boxes), "%.2f")
            for seq in sequences}


@dataclass(frozen=True)
class SubmissionFormat:
    """How a server wants results: the zip entries, and whether several runs share one zip."""

    entries: Callable[[list[Sequence], list[Path], bool], dict[str, str]]
    all_runs_in_one_zip: bool


PACKERS: dict[str, SubmissionFormat] = {
    "got10k_test": SubmissionFormat(got10k_entries, all_runs_in_one_zip=True),
    "trackingnet": SubmissionFormat(trackingnet_entries, all_runs_in_one_zip=False),
}


def zip_groups(dataset_name: str, run_ids: list[int | None]) -> list[list[int | None]]:
    """Run ids of each zip to write: all together (GOT-10k repetitions) or one zip per run (TrackingNet)."""
    if dataset_name not in PACKERS:
        raise KeyError(f"no submission format for {dataset_name!r}; packable: {', '.join(PACKERS)}")
    return [list(run_ids)] if PACKERS[dataset_name].all_runs_in_one_zip else [[i] for i in run_ids]


def pack_results(dataset_name: str, sequences: list[Sequence], results_dirs: list[Path], out_path: Path,
                 rasterize_boxes: bool = True) -> Path:
    """Check completeness against `sequences`, then write the server zip for `dataset_name` to `out_path`."""
    if dataset_name not in PACKERS:
        raise KeyError(f"no submission format for {dataset_name!r}; packable: {', '.join(PACKERS)}")
    results_dirs = [Path(d) for d in results_dirs]
    check_complete(sequences, results_dirs)
    return write_zip(Path(out_path), PACKERS[dataset_name].entries(sequences, results_dirs, rasterize_boxes))
