"""Resumable runner: tracks every unfinished sequence of a dataset, in-process or in spawned workers.

Each worker builds its tracker once and reuses it (`initialize` restarts it per sequence); worker `k` uses
GPU `k % num_gpus` when the device is `cuda`. A sequence that raises is reported with its traceback while the
others still run; its files are never written (atomic writes), so a rerun picks it up again and skips the
finished ones. Before tracking, the results folder is claimed for the spec's producer (results.claim_results_dir):
a folder holding another producer's results is refused, never mixed.

With `batch_sequences=N` (in-process only) N sequences are tracked in lockstep by a tracker with `track_batch`: one
batched forward per step, a sequence joining as soon as another one ends (the tracker's `release` is told first). Each sequence's per-frame time is then
the step's time divided by the number of sequences in the step.
"""
from __future__ import annotations

import queue
import time
import traceback
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import cv2
import multiprocessing as mp
import numpy as np
from tqdm import tqdm

from lib.test.evaluation.data import Sequence
from lib.test.evaluation.results import claim_results_dir, is_finished, write_sequence_result
from lib.test.tracker import BatchTracker, Tracker, TrackerSpec, build_tracker, producer_record
from lib.utils.image import read_image

_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class SequenceOutcome:
    name: str
    frames: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class RunReport:
    """What happened: sequences skipped as already finished, and one outcome per attempted sequence."""

    skipped: list[str]
    outcomes: list[SequenceOutcome]

    @property
    def failures(self) -> list[SequenceOutcome]:
        return [o for o in self.outcomes if o.error is not None]


def worker_device(device: str, worker_index: int, num_gpus: int) -> str:
    """`cuda` -> `cuda:<worker_index % num_gpus>`; any other device string is used as given."""
    if device != "cuda":
        return device
    if num_gpus < 1:
        raise ValueError(f"--num_gpus must be >= 1 with --device cuda, got {num_gpus}")
    return f"cuda:{worker_index % num_gpus}"


def track_sequence(tracker: Tracker, seq: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Run `tracker` over `seq`: boxes (N, 4) xywh (row 0 = the init box) and seconds per frame (N,).

    Only the frame-0 box is given to the tracker; timing covers the tracker calls, not image decoding.
    """
    boxes = np.empty((seq.num_frames, 4), dtype=np.float64)
    times = np.empty(seq.num_frames, dtype=np.float64)
    boxes[0] = seq.init_box()
    image = read_image(seq.frames[0])
    start = time.perf_counter()
    tracker.initialize(image, boxes[0].copy())
    times[0] = time.perf_counter() - start
    for i in range(1, seq.num_frames):
        image = read_image(seq.frames[i])
        start = time.perf_counter()
        box, _confidence = tracker.track(image)
        times[i] = time.perf_counter() - start
        boxes[i] = _checked_box(box, i)
    return boxes, times


def _checked_box(box: Any, frame: int) -> np.ndarray:
    box = np.asarray(box, dtype=np.float64)
    if box.shape != (4,):
        raise ValueError(f"tracker returned a box of shape {box.shape} on frame {frame}, expected (4,) x,y,w,h")
    return box


def run_sequence(tracker: Tracker, seq: Sequence, results_dir: Path) -> SequenceOutcome:
    """Track one sequence and write its result files; any exception becomes the outcome's error text."""
    try:
        boxes, times = track_sequence(tracker, seq)
        write_sequence_result(results_dir, seq, boxes, times)
    except Exception:
        return SequenceOutcome(seq.name, error=f"{seq.dataset}/{seq.name}:\n{traceback.format_exc()}")
    return SequenceOutcome(seq.name, seq.num_frames, float(times.sum()))


def _build(spec: TrackerSpec, device: str) -> Tracker:
    return build_tracker(replace(spec, device=device))


def _worker_main(index: int, spec: TrackerSpec, device: str, results_dir: Path, tasks, messages) -> None:
    """Worker process loop: ('start', index, name) then ('done', index, outcome) per sequence."""
    # Workers run side by side, about one per core: OpenCV's own thread pool on top of that only contends (OpenCV's
    # MIL tracked a sequence in 1.4 s with one thread and 3.4 s with two on a 2-core machine; docs/benchmarks.md).
    cv2.setNumThreads(1)
    tracker = None
    build_error = None
    while (seq := tasks.get()) is not None:
        messages.put(("start", index, seq.name))
        if tracker is None and build_error is None:
            try:
                tracker = _build(spec, device)
            except Exception:
                build_error = (
                    f"building tracker {spec.script}/{spec.config} on {device} failed:\n{traceback.format_exc()}"
                )
        if build_error is not None:
            outcome = SequenceOutcome(seq.name, error=f"{seq.dataset}/{seq.name}: {build_error}")
        else:
            outcome = run_sequence(tracker, seq, results_dir)
        messages.put(("done", index, outcome))


def _progress(total: int) -> tqdm:
    return tqdm(total=total, unit="seq", dynamic_ncols=True)


def _record(bar: tqdm, outcomes: list[SequenceOutcome], outcome: SequenceOutcome) -> None:
    outcomes.append(outcome)
    frames = sum(o.frames for o in outcomes)
    seconds = sum(o.seconds for o in outcomes)
    bar.set_postfix(fps=f"{frames / seconds:.1f}" if seconds > 0 else "-", failed=len([o for o in outcomes if o.error]))
    bar.update(1)


def _run_in_process(spec: TrackerSpec, todo: list[Sequence], results_dir: Path, device: str) -> list[SequenceOutcome]:
    outcomes: list[SequenceOutcome] = []
    tracker = _build(spec, device)
    with _progress(len(todo)) as bar:
        for seq in todo:
            _record(bar, outcomes, run_sequence(tracker, seq, results_dir))
    return outcomes


@dataclass
class _Slot:
    """A sequence being tracked in lockstep: its tracker state and the results so far (`frame`: next to track)."""

    seq: Sequence
    boxes: np.ndarray
    times: np.ndarray
    state: Any = None
    frame: int = 1


def _error(seq: Sequence) -> SequenceOutcome:
    return SequenceOutcome(seq.name, error=f"{seq.dataset}/{seq.name}:\n{traceback.format_exc()}")


def _start_slot(tracker: BatchTracker, seq: Sequence) -> _Slot:
    slot = _Slot(seq, np.empty((seq.num_frames, 4)), np.empty(seq.num_frames))
    slot.boxes[0] = seq.init_box()
    image = read_image(seq.frames[0])
    start = time.perf_counter()
    slot.state = tracker.start(image, slot.boxes[0].copy())
    slot.times[0] = time.perf_counter() - start
    return slot


def _finish_slot(slot: _Slot, results_dir: Path) -> SequenceOutcome:
    try:
        write_sequence_result(results_dir, slot.seq, slot.boxes, slot.times)
    except Exception:
        return _error(slot.seq)
    return SequenceOutcome(slot.seq.name, slot.seq.num_frames, float(slot.times.sum()))


def track_lockstep(tracker: BatchTracker, sequences: list[Sequence], results_dir: Path, batch_sequences: int,
                   report: Callable[[SequenceOutcome], None] = lambda outcome: None) -> list[SequenceOutcome]:
    """Track up to `batch_sequences` sequences at once, one `track_batch` call per step; sequences join as others
    end. A sequence whose frame cannot be read or whose result is invalid fails alone; a failing batched step
    fails the sequences in it. `report` is called with each outcome as it comes."""
    if not hasattr(tracker, "track_batch"):
        raise ValueError(f"{type(tracker).__name__} cannot track sequences in lockstep (no track_batch); run "
                         f"without --batch_sequences")
    outcomes: list[SequenceOutcome] = []

    def done(outcome: SequenceOutcome) -> None:
        outcomes.append(outcome)
        report(outcome)

    def end(slot: _Slot, outcome: SequenceOutcome) -> None:
        tracker.release(slot.state)  # e.g. LoRATv2 frees the sequence's KV-cache slot for the next one
        done(outcome)

    waiting, active = deque(sequences), []
    while waiting or active:
        while waiting and len(active) < batch_sequences:
            seq = waiting.popleft()
            try:
                slot = _start_slot(tracker, seq)
            except Exception:
                done(_error(seq))
                continue
            if slot.frame == seq.num_frames:  # a one-frame sequence is finished at once and frees its place
                end(slot, _finish_slot(slot, results_dir))
            else:
                active.append(slot)
        stepping, images = [], []
        for slot in active:
            try:
                images.append(read_image(slot.seq.frames[slot.frame]))
                stepping.append(slot)
            except Exception:
                end(slot, _error(slot.seq))
        if not stepping:
            active = []
            continue
        start = time.perf_counter()
        try:
            results = tracker.track_batch([s.state for s in stepping], images)
        except Exception:
            for slot in stepping:
                end(slot, _error(slot.seq))
            active = []
            continue
        seconds = (time.perf_counter() - start) / len(stepping)
        active = []
        for slot, (box, _confidence) in zip(stepping, results):
            try:
                slot.boxes[slot.frame] = _checked_box(box, slot.frame)
            except ValueError:
                end(slot, _error(slot.seq))
                continue
            slot.times[slot.frame] = seconds
            slot.frame += 1
            if slot.frame == slot.seq.num_frames:
                end(slot, _finish_slot(slot, results_dir))
            else:
                active.append(slot)
    return outcomes


def _run_lockstep(spec: TrackerSpec, todo: list[Sequence], results_dir: Path, device: str,
                  batch_sequences: int) -> list[SequenceOutcome]:
    outcomes: list[SequenceOutcome] = []
    tracker = _build(spec, device)
    with _progress(len(todo)) as bar:
        track_lockstep(tracker, todo, results_dir, batch_sequences, lambda outcome: _record(bar, outcomes, outcome))
    return outcomes


def _run_workers(
    spec: TrackerSpec, todo: list[Sequence], results_dir: Path, threads: int, num_gpus: int
) -> list[SequenceOutcome]:
    ctx = mp.get_context("spawn")
    tasks, messages = ctx.Queue(), ctx.Queue()
    num_workers = min(threads, len(todo))
    for seq in todo:
        tasks.put(seq)
    for _ in range(num_workers):
        tasks.put(None)
    workers = [
        ctx.Process(
            target=_worker_main,
            args=(k, spec, worker_device(spec.device, k, num_gpus), results_dir, tasks, messages),
            name=f"tracking-worker-{k}",
        )
        for k in range(num_workers)
    ]
    for w in workers:
        w.start()
    outcomes: list[SequenceOutcome] = []
    pending = {seq.name for seq in todo}
    in_flight: dict[int, str] = {}
    try:
        with _progress(len(todo)) as bar:
            while pending:
                try:
                    kind, index, payload = messages.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    for index, name in list(in_flight.items()):
                        if not workers[index].is_alive() and workers[index].exitcode != 0:
                            message = f"{name}: worker {index} died (exit code {workers[index].exitcode}) on it"
                            del in_flight[index]
                            pending.discard(name)
                            _record(bar, outcomes, SequenceOutcome(name, error=message))
                    if not any(w.is_alive() for w in workers):
                        for name in sorted(pending):
                            message = f"{name}: no worker process left to run it"
                            _record(bar, outcomes, SequenceOutcome(name, error=message))
                        pending.clear()
                    continue
                if kind == "start":
                    in_flight[index] = payload
                else:
                    in_flight.pop(index, None)
                    pending.discard(payload.name)
                    _record(bar, outcomes, payload)
    finally:
        for w in workers:
            w.join(timeout=5)
            if w.is_alive():
                w.terminate()
                w.join()
    return outcomes


def run_dataset(
    spec: TrackerSpec, sequences: list[Sequence], results_dir: Path, threads: int = 0, num_gpus: int = 1,
    force: bool = False, batch_sequences: int = 1,
) -> RunReport:
    """Run `spec` (resolved, see lib.test.tracker.resolve_spec) on every sequence whose result files are not
    finished yet (threads=0: in this process; batch_sequences > 1: that many in lockstep, in this process).

    Raises `ResultsConflictError` when `results_dir` holds results of another producer; `force` deletes them first.
    """
    if batch_sequences < 1:
        raise ValueError(f"--batch_sequences must be >= 1, got {batch_sequences}")
    if batch_sequences > 1 and threads > 0:
        raise ValueError("--batch_sequences tracks its sequences in this process; drop --threads (or use "
                         "--batch_sequences 1)")
    results_dir = Path(results_dir)
    claim_results_dir(results_dir, producer_record(spec), force)
    finished = [is_finished(results_dir, seq) for seq in sequences]
    skipped = [seq.name for seq, done in zip(sequences, finished) if done]
    todo = [seq for seq, done in zip(sequences, finished) if not done]
    if not todo:
        return RunReport(skipped, [])
    if batch_sequences > 1:
        outcomes = _run_lockstep(spec, todo, results_dir, worker_device(spec.device, 0, num_gpus), batch_sequences)
    elif threads <= 0:
        outcomes = _run_in_process(spec, todo, results_dir, worker_device(spec.device, 0, num_gpus))
    else:
        outcomes = _run_workers(spec, todo, results_dir, threads, num_gpus)
    return RunReport(skipped, outcomes)
