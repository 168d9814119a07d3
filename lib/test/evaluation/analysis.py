"""Score result files of one or several trackers on a dataset (no cache: numbers always come from the files).

Run ids of one tracker are merged only when their producer records (results.PRODUCER_FILE) name the same model.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lib.test.analysis.metrics import (
    PROTOCOL_METRICS, SequenceGT, benchmark_spec, check_convention, evaluate_dataset,
)
from lib.test.evaluation.data import Sequence
from lib.test.evaluation.results import (
    MODEL_IDENTITY, describe_producer, incomplete_results, producer_differences, read_producer, read_sequence_boxes,
    tracker_results_dir,
)


@dataclass(frozen=True)
class TrackerEntry:
    """One tracker to compare: `run_ids=None` reads `<config>/`, else `<config>_<id:03d>/` for each id."""

    script: str
    config: str
    run_ids: tuple[int, ...] | None = None
    display_name: str | None = None

    @property
    def name(self) -> str:
        if self.display_name:
            return self.display_name
        runs = "" if self.run_ids is None else "_" + "+".join(f"{i:03d}" for i in self.run_ids)
        return f"{self.script}/{self.config}{runs}"

    def results_dirs(self, results_path: str | Path) -> list[Path]:
        ids = [None] if self.run_ids is None else list(self.run_ids)
        return [tracker_results_dir(results_path, self.script, self.config, run_id) for run_id in ids]


class MissingResultsError(FileNotFoundError):
    """A results folder is absent, or some sequences have no (complete) result file; the message says which."""


class MixedProducersError(ValueError):
    """Run ids to merge were produced by different models (config, checkpoint or backbone)."""


def check_results_dirs_exist(entry: TrackerEntry, results_path: str | Path) -> None:
    """Every results folder of `entry` exists; else an error listing the configs that do have results."""
    absent = [d for d in entry.results_dirs(results_path) if not d.is_dir()]
    if not absent:
        return
    script_dir = Path(results_path) / entry.script
    if script_dir.is_dir():
        found = sorted(p.name for p in script_dir.iterdir() if p.is_dir())
        where = f"found: {', '.join(found) or 'nothing'}"
    else:
        scripts = sorted(p.name for p in Path(results_path).iterdir() if p.is_dir()) if Path(results_path).is_dir() \
            else []
        where = f"no results of {entry.script} at all; scripts with results: {', '.join(scripts) or 'none'}"
    names = ", ".join(f"{entry.script}/{d.name}" for d in absent)
    raise MissingResultsError(f"no results for {names} under {script_dir} ({where})")


def producer_summary(entry: TrackerEntry, results_path: str | Path) -> str:
    """One line: the producer of `entry`'s results (per run folder when the runs' records differ at all)."""
    dirs = entry.results_dirs(results_path)
    lines = [describe_producer(read_producer(d)) for d in dirs]
    if len(set(lines)) == 1:
        return f"{entry.name}: {lines[0]}"
    return f"{entry.name}: " + "; ".join(f"{d.name}: {line}" for d, line in zip(dirs, lines))


def check_same_model(entry: TrackerEntry, results_path: str | Path) -> None:
    """Run ids with producer records naming different models are not merged (folders without a record pass)."""
    dirs = entry.results_dirs(results_path)
    records = [(d, r) for d in dirs if (r := read_producer(d)) is not None]
    for d, record in records[1:]:
        differences = producer_differences(records[0][1], record, MODEL_IDENTITY)
        if differences:
            raise MixedProducersError(
                f"{entry.name}: {records[0][0].name} and {d.name} were produced by different models, so their "
                f"scores are not averaged:\n  " + "\n  ".join(differences)
                + "\nScore them as separate trackers (one analysis per run id).")


def load_tracker_results(
    entry: TrackerEntry, sequences: list[Sequence], results_path: str | Path
) -> dict[str, list[np.ndarray]]:
    """{sequence name: one (N, 4) xywh array per run}; any missing or incomplete file is an error naming it."""
    check_results_dirs_exist(entry, results_path)
    check_same_model(entry, results_path)
    dirs = entry.results_dirs(results_path)
    problems = incomplete_results(dirs, sequences)
    if problems:
        raise MissingResultsError(
            f"results of {entry.name} are incomplete (run tracking/test.py for them first):\n  " + "\n  ".join(problems)
        )
    return {seq.name: [read_sequence_boxes(d, seq) for d in dirs] for seq in sequences}


def sequence_gt(seq: Sequence) -> SequenceGT:
    """The metric module's view of a sequence (image size only where the GOT-10k protocol needs it)."""
    needs_size = seq.cover is not None
    return SequenceGT(seq.name, seq.ground_truth_rect, visible=seq.visible,
                      image_size=seq.image_size if needs_size else None, cover=seq.cover,
                      source=seq.gt_source, lines=seq.gt_lines)


def evaluate_trackers(
    dataset_name: str, sequences: list[Sequence], entries: list[TrackerEntry], results_path: str | Path,
    convention: str = "toolkit",
) -> dict[str, dict[str, dict]]:
    """{tracker name: {protocol: evaluator output}} for every entry (all must have complete results).

    `convention` as in `evaluate_dataset`: "toolkit" (official) or "pytracking" (published-table comparison).
    """
    benchmark_spec(dataset_name)  # server-scored / unknown datasets and conventions fail before any file is read
    check_convention(convention)
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"two trackers share a display name: {names}; give them distinct names")
    gts = [sequence_gt(seq) for seq in sequences]
    return {
        e.name: evaluate_dataset(dataset_name, load_tracker_results(e, sequences, results_path), gts, convention)
        for e in entries
    }


def summary_rows(evaluations: dict[str, dict[str, dict]]) -> dict[str, dict[str, float]]:
    """{tracker: {metric: percent}} with the scalar metrics of every protocol (e.g. AO, SR0.5, AUC, ...)."""
    return {
        tracker: {m: float(out[m]) for protocol, out in by_protocol.items() for m in PROTOCOL_METRICS[protocol]}
        for tracker, by_protocol in evaluations.items()
    }
