"""--batch_sequences: sequences tracked in lockstep (one batched forward per step) give the sequential results."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lib.config import load_experiment
from lib.models import build_model
from lib.models.onnx_export import random_inputs
from lib.test.evaluation.datasets import get_dataset
from lib.test.evaluation.results import read_sequence_boxes, tracker_results_dir
from lib.test.evaluation.running import run_dataset, track_lockstep
from lib.test.tracker import TrackerSpec, build_tracker
from lib.utils.synthetic import SyntheticSpec, write_got10k
from test_eval_helpers import make_env

SPEC = TrackerSpec("lorat", "demo", "random")
LENGTHS = (9, 4, 12, 1, 7)  # joins and leaves at different steps, and a one-frame sequence


@pytest.fixture(scope="module")
def sequences(tmp_path_factory) -> list:
    root = tmp_path_factory.mktemp("got10k")
    names = []
    (root / "val").mkdir()
    for i, n in enumerate(LENGTHS):  # one spec per length (disjoint random streams), gathered in one split
        occluders = (0, 2) if n > 1 else (0, 0)  # the generator's occluder path needs two frames or more
        [name] = write_got10k(root / "parts" / str(i), "val", SyntheticSpec(
            "A", 1, frames=(n, n), image_size=(96, 72), first_index=i, occluders=occluders))
        (root / "parts" / str(i) / "val" / name).rename(root / "val" / f"seq_{i}")
        names.append(f"seq_{i}")
    (root / "val" / "list.txt").write_text("".join(f"{name}\n" for name in names))
    seqs = get_dataset("got10k_val", make_env(root, got10k_path=str(root)))
    assert [s.num_frames for s in seqs] == list(LENGTHS)
    return seqs


def success_auc(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean over IoU thresholds 0, 0.05, ..., 1 of the fraction of frames above it (frames after the first)."""
    a, b = pred[1:], gt[1:]
    w = np.clip(np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    iou = w * h / (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - w * h)
    return float(np.mean([(iou > t).mean() for t in np.linspace(0, 1, 21)])) if len(iou) else 0.0


def test_batched_forward_rows_equal_single_forwards():
    model = build_model(load_experiment("lorat", "demo"), training=False)
    z, x, mask = random_inputs(model, batch=4, seed=3)
    with torch.inference_mode():
        batched = model(z, x, mask)
        for i in range(4):
            single = model(z[i:i + 1], x[i:i + 1], mask[i:i + 1])
            for key in single:
                torch.testing.assert_close(batched[key][i:i + 1], single[key], rtol=0, atol=1e-5)


def test_lockstep_equals_sequential(sequences, tmp_path):
    sequential_dir = tracker_results_dir(tmp_path, "lorat", "demo", 1)
    report = run_dataset(SPEC, sequences, sequential_dir)
    assert not report.failures

    tracker = build_tracker(SPEC)
    batch_sizes = []
    track_batch = tracker.track_batch
    tracker.track_batch = lambda states, images: batch_sizes.append(len(states)) or track_batch(states, images)
    lockstep_dir = tracker_results_dir(tmp_path, "lorat", "demo", 2)
    outcomes = track_lockstep(tracker, sequences, lockstep_dir, batch_sequences=3)
    assert sorted(o.name for o in outcomes) == sorted(s.name for s in sequences)
    assert not [o for o in outcomes if o.error]
    # 3 start (9, 4, 12 frames); the 4-frame one ends after 3 steps and the 1-frame one is finished at once, so
    # the 7-frame one joins; then they leave one by one.
    assert batch_sizes == [3] * 3 + [3] * 5 + [2] + [1] * 2 and sum(batch_sizes) == sum(n - 1 for n in LENGTHS)

    aucs = []
    for seq in sequences:
        a, b = read_sequence_boxes(sequential_dir, seq), read_sequence_boxes(lockstep_dir, seq)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-3)  # files hold 4 decimals
        aucs.append((success_auc(a, seq.ground_truth_rect), success_auc(b, seq.ground_truth_rect)))
    sequential_auc, lockstep_auc = np.mean(aucs, axis=0) * 100
    assert abs(sequential_auc - lockstep_auc) < 0.1


def test_cli_run_with_batch_sequences(sequences, tmp_path):
    results_dir = tmp_path / "results"
    report = run_dataset(SPEC, sequences[:3], results_dir, batch_sequences=2)
    assert not report.failures and len(report.outcomes) == 3
    again = run_dataset(SPEC, sequences[:3], results_dir, batch_sequences=2)  # resumes like the sequential runner
    assert sorted(again.skipped) == sorted(s.name for s in sequences[:3]) and not again.outcomes


def test_a_broken_frame_fails_only_its_sequence(sequences, tmp_path):
    frame = Path(sequences[2].frames[5])
    original = frame.read_bytes()
    frame.write_bytes(b"not a jpeg")
    try:
        outcomes = track_lockstep(build_tracker(SPEC), sequences, tmp_path, batch_sequences=3)
    finally:
        frame.write_bytes(original)
    failed = [o for o in outcomes if o.error]
    assert [o.name for o in failed] == [sequences[2].name] and frame.name in failed[0].error
    assert len(outcomes) == len(sequences)


def test_lockstep_needs_a_batching_tracker_and_one_process(sequences, tmp_path):
    with pytest.raises(ValueError, match="StaticTracker cannot track sequences in lockstep"):
        run_dataset(TrackerSpec("static", "none"), sequences, tmp_path / "a", batch_sequences=2)
    with pytest.raises(ValueError, match="drop --threads"):
        run_dataset(SPEC, sequences, tmp_path / "b", threads=2, batch_sequences=2)
    with pytest.raises(ValueError, match="must be >= 1"):
        run_dataset(SPEC, sequences, tmp_path / "c", batch_sequences=0)


def test_onnxruntime_engine_in_lockstep_follows_eager(sequences, tmp_path):
    """The exported graph (dynamic batch) driven in lockstep gives the eager tracker's boxes."""
    eager_dir, onnx_dir = tmp_path / "eager", tmp_path / "onnx"
    run_dataset(SPEC, sequences[:3], eager_dir)
    tracker = build_tracker(TrackerSpec("lorat", "demo", "random", engine="onnxruntime"))
    assert tracker.precision == "fp32" and tracker.engine.name == "onnxruntime"
    outcomes = track_lockstep(tracker, sequences[:3], onnx_dir, batch_sequences=3)
    assert not [o for o in outcomes if o.error]
    for seq in sequences[:3]:
        np.testing.assert_allclose(read_sequence_boxes(onnx_dir, seq), read_sequence_boxes(eager_dir, seq),
                                   rtol=0, atol=1e-3)
