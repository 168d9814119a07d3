"""Result files: one layout shared by the runner, the analysis and the packers.

`<results_path>/<script>/<config>[_<runid:03d>]/<dataset>/<seq>.txt`: one `x,y,w,h` line per frame, floats
`%.4f`, comma separated, in the dataset's own file convention (`Sequence.file_offset` is added to x, y:
LaSOT files are 1-based like its toolkit and published raw results); `<seq>_time.txt`: seconds per frame.
Both are written atomically, time file first and box file last, so a box file with one line per frame
marks a finished sequence.

`<results_path>/<script>/<config>[_<runid:03d>]/producer.json` records what produced the folder's results
(`lib.test.tracker.producer_record`: tracker, resolved config, weight files with SHA-256, device type, inference
engine and precision). Engines give slightly different numbers (bf16, int8, ...), so like the precision the engine
is part of the producer's identity.
It is written before the first sequence is tracked; results of a different producer are never added to the folder.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from lib.test.evaluation.data import Sequence
from lib.datasets.text import read_box_file
from lib.utils.io import atomic_write_text


PRODUCER_FILE = "producer.json"
# Fields that make two producers different; the others (weight file paths, code version, command) are only shown.
# The GPU index is not recorded: cuda:0 and cuda:1 produce the same results.
PRODUCER_IDENTITY = ("tracker", "config_name", "config", "checkpoint_sha256", "backbone_weights_sha256",
                     "base_checkpoint_sha256", "device", "engine", "precision")
# The subset naming the model (merging run ids of one model run on different devices is fine).
MODEL_IDENTITY = ("tracker", "config_name", "config", "checkpoint_sha256", "backbone_weights_sha256",
                  "base_checkpoint_sha256")


class ResultsConflictError(RuntimeError):
    """The results folder holds results of another (or an unrecorded) producer."""


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


def producer_file(results_dir: Path) -> Path:
    return Path(results_dir) / PRODUCER_FILE


def read_producer(results_dir: Path) -> dict[str, Any] | None:
    """The folder's producer record, None when it has none; an unreadable file is an error naming it."""
    path = producer_file(results_dir)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # also UnicodeDecodeError
        raise ResultsConflictError(f"{path}: not a valid producer record ({exc}); its results cannot be attributed: "
                                   f"rerun with --force to delete them, or use --runid N") from None
    if not isinstance(record, dict):
        raise ResultsConflictError(f"{path}: not a valid producer record (expected a JSON object); rerun with "
                                   f"--force to delete its results, or use --runid N")
    if "engine" not in record:  # written before engines existed: learned trackers ran the eager PyTorch model
        record["engine"] = "eager" if record.get("device") else None
    if isinstance(record.get("config"), dict):
        record["config"] = _in_current_schema(record["config"], path)
    return record


def _in_current_schema(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """A recorded config read with today's schema: fields added since then take their defaults, so a folder written
    before a new (default-valued) option existed still belongs to the same producer. A config that no longer loads
    is kept as recorded (it then differs from any current one, which the conflict message shows)."""
    from lib.config import ConfigError, ExperimentConfig

    try:
        return json.loads(json.dumps(ExperimentConfig.from_dict(config, source=str(path)).to_dict()))
    except ConfigError:
        return config


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}"))
        return out
    return {prefix: value}


def _shown(record: dict[str, Any], field: str) -> Any:
    """A field for a message: hashes shortened and next to their file."""
    if field.endswith("_sha256"):
        file_field = field.removesuffix("_sha256")
        digest = record.get(field)
        return f"{record.get(file_field)} (sha256 {digest[:12]})" if digest else record.get(file_field)
    return record.get(field)


def producer_differences(old: dict[str, Any], new: dict[str, Any],
                         fields: tuple[str, ...] = PRODUCER_IDENTITY) -> list[str]:
    """`field: old -> new` for every identifying field that differs (config keys dotted, e.g. `config.test.amp`)."""
    lines = []
    for field in fields:
        a, b = old.get(field), new.get(field)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            flat_a, flat_b = _flatten(a, field), _flatten(b, field)
            lines += [f"{k}: {flat_a.get(k, '<absent>')} -> {flat_b.get(k, '<absent>')}"
                      for k in sorted(set(flat_a) | set(flat_b)) if flat_a.get(k) != flat_b.get(k)]
        else:
            name = field.removesuffix("_sha256")
            lines.append(f"{name}: {_shown(old, field)} -> {_shown(new, field)}")
    return lines


def describe_producer(record: dict[str, Any] | None) -> str:
    """One line: tracker/config, weights (with short hashes), device and precision, code version."""
    if record is None:
        return "unknown (no producer.json: written before producer records, or by another tool)"
    parts = [f"{record.get('tracker')}/{record.get('config_name')}",
             f"checkpoint {_shown(record, 'checkpoint_sha256')}"]
    if record.get("backbone_weights"):
        parts.append(f"backbone {_shown(record, 'backbone_weights_sha256')}")
    if record.get("base_checkpoint"):
        parts.append(f"base checkpoint {_shown(record, 'base_checkpoint_sha256')}")
    if record.get("device"):
        engine = record.get("engine")
        parts.append(f"{record['device']} {record.get('precision')}"
                     + (f" ({engine} engine)" if engine not in (None, "eager") else ""))
    if record.get("code_version"):
        parts.append(f"code {record['code_version']}")
    return ", ".join(parts)


def _result_files(results_dir: Path) -> list[Path]:
    return sorted(p for p in Path(results_dir).rglob("*.txt") if p.is_file())


def claim_results_dir(results_dir: Path, producer: dict[str, Any], force: bool = False) -> None:
    """Make `results_dir` the home of `producer`'s results before anything is tracked.

    A folder of the same producer is kept (finished sequences are resumed). A folder holding results of another
    producer, or results without a record, is an error naming the differences and the way out; `force` deletes it
    first. A record without any result (a run that failed before finishing a sequence, e.g. on a wrong checkpoint)
    is replaced: there is nothing to mix.
    """
    results_dir = Path(results_dir)
    if force:
        if results_dir.is_dir():
            shutil.rmtree(results_dir)
    else:
        existing = read_producer(results_dir) if results_dir.is_dir() else None
        if existing is not None and not producer_differences(existing, producer):
            return
        found = _result_files(results_dir) if results_dir.is_dir() else []
        if existing is not None and found:
            what = (f"results of another producer: {describe_producer(existing)}\nDifferences (folder -> this run):\n  "
                    + "\n  ".join(producer_differences(existing, producer)))
        elif found:
            what = (f"{len(found)} result file(s) (e.g. {found[0].relative_to(results_dir)}) but no {PRODUCER_FILE} "
                    f"saying what produced them")
        else:
            what = ""
        if what:
            raise ResultsConflictError(
                f"{results_dir} holds {what}\nThis run would be: {describe_producer(producer)}.\n"
                f"Results of different producers are never mixed: write to a separate folder with --runid N, or "
                f"pass --force to delete {results_dir} (every dataset in it) and track again.")
    results_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(producer_file(results_dir), json.dumps(producer, indent=2, sort_keys=True) + "\n")
