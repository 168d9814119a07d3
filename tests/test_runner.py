"""Runner: result files, resume, atomicity, failure isolation (in-process and spawned workers), baselines."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lib.test.evaluation.data import Sequence
from lib.test.evaluation.datasets import get_dataset
from lib.test.evaluation.results import (
    box_file, claim_results_dir, is_finished, read_sequence_boxes, read_sequence_times, time_file, tracker_results_dir,
    write_sequence_result,
)
from lib.test.evaluation.running import run_dataset, track_sequence, worker_device
from lib.test.tracker import TrackerSpec, build_tracker, producer_record
from test_eval_helpers import make_env, make_got10k_split

LENGTHS = {"seq_a": 4, "seq_b": 5, "seq_c": 3}


def _dataset(tmp_path: Path) -> tuple[list[Sequence], dict[str, np.ndarray]]:
    gts = make_got10k_split(tmp_path / "got10k", "val", LENGTHS)
    return get_dataset("got10k_val", make_env(tmp_path, got10k_path=str(tmp_path / "got10k"))), gts


def _corrupt(path: str) -> bytes:
    original = Path(path).read_bytes()
    Path(path).write_bytes(b"not a jpeg")
    return original


def _check_static_result(results_dir: Path, seq: Sequence, gt: np.ndarray) -> None:
    lines = box_file(results_dir, seq).read_text().splitlines()
    assert len(lines) == seq.num_frames
    assert lines[0] == ",".join(f"{v:.4f}" for v in gt[0])
    np.testing.assert_array_equal(read_sequence_boxes(results_dir, seq), np.tile(gt[0], (seq.num_frames, 1)))
    times = read_sequence_times(results_dir, seq)
    assert times.shape == (seq.num_frames,) and np.all(times >= 0)


def _no_temp_files(results_dir: Path) -> bool:
    return not [p for p in results_dir.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("threads", [0, 2])
def test_failure_is_isolated_and_rerun_resumes(tmp_path, threads):
    seqs, gts = _dataset(tmp_path)
    results_dir = tracker_results_dir(tmp_path / "results", "static", "none", run_id=2)
    assert results_dir == tmp_path / "results" / "static" / "none_002"
    original = _corrupt(seqs[1].frames[2])  # seq_b fails mid-sequence (frame 2 of 5)

    report = run_dataset(TrackerSpec("static", "none"), seqs, results_dir, threads=threads)
    assert [f.name for f in report.failures] == ["seq_b"]
    assert "not a jpeg" not in report.failures[0].error and "00000003.jpg" in report.failures[0].error
    assert "Traceback" in report.failures[0].error
    for seq in (seqs[0], seqs[2]):
        _check_static_result(results_dir, seq, gts[seq.name])
    assert not box_file(results_dir, seqs[1]).exists() and not time_file(results_dir, seqs[1]).exists()
    assert _no_temp_files(results_dir)

    Path(seqs[1].frames[2]).write_bytes(original)
    finished_before = box_file(results_dir, seqs[0]).stat().st_mtime_ns
    report = run_dataset(TrackerSpec("static", "none"), seqs, results_dir, threads=threads)
    assert sorted(report.skipped) == ["seq_a", "seq_c"]
    assert [o.name for o in report.outcomes] == ["seq_b"] and not report.failures
    _check_static_result(results_dir, seqs[1], gts["seq_b"])
    assert box_file(results_dir, seqs[0]).stat().st_mtime_ns == finished_before  # not rewritten


def test_incomplete_result_file_is_rerun(tmp_path):
    seqs, gts = _dataset(tmp_path)
    results_dir = tmp_path / "results"
    claim_results_dir(results_dir, producer_record(TrackerSpec("static", "none")))
    seq = seqs[0]
    boxes = np.tile(gts[seq.name][0], (seq.num_frames, 1))
    write_sequence_result(results_dir, seq, boxes, np.zeros(seq.num_frames))
    assert is_finished(results_dir, seq)
    path = box_file(results_dir, seq)
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))  # truncated by some other tool
    assert not is_finished(results_dir, seq)
    report = run_dataset(TrackerSpec("static", "none"), [seq], results_dir)
    assert [o.name for o in report.outcomes] == ["seq_a"]
    _check_static_result(results_dir, seq, gts["seq_a"])


def test_lasot_result_files_are_one_based(tmp_path):
    gt = np.array([[10.0, 20.0, 5.0, 6.0], [11.5, 21.25, 5.0, 6.0]])
    seq = Sequence("cat-1", ("a.jpg", "b.jpg"), "lasot", gt, file_offset=1.0)
    write_sequence_result(tmp_path, seq, gt, np.array([0.5, 0.25]))
    expected = "11.0000,21.0000,5.0000,6.0000\n12.5000,22.2500,5.0000,6.0000\n"  # x, y + 1 (1-based files)
    assert (tmp_path / "lasot" / "cat-1.txt").read_text() == expected
    assert (tmp_path / "lasot" / "cat-1_time.txt").read_text() == "0.50000000\n0.25000000\n"
    np.testing.assert_array_equal(read_sequence_boxes(tmp_path, seq), gt)


def test_write_rejects_wrong_length(tmp_path):
    seq = Sequence("s", ("a.jpg", "b.jpg"), "otb", np.ones((2, 4)))
    with pytest.raises(ValueError, match="1 boxes"):
        write_sequence_result(tmp_path, seq, np.ones((1, 4)), np.ones(2))


class _SpyTracker:
    """Records what the runner passes in; moves its box by one pixel per frame."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.box = None

    def initialize(self, image, box_xywh):
        self.calls.append(("init", image.shape, image.dtype, np.array(box_xywh)))
        self.box = np.array(box_xywh, dtype=float)

    def track(self, image):
        self.calls.append(("track", image.shape))
        self.box = self.box + [1, 0, 0, 0]
        return self.box, 0.5


def test_tracker_sees_only_the_first_box(tmp_path):
    seqs, gts = _dataset(tmp_path)
    spy = _SpyTracker()
    boxes, times = track_sequence(spy, seqs[0])
    gt = gts["seq_a"]
    assert spy.calls[0][0] == "init" and spy.calls[0][1] == (24, 32, 3) and spy.calls[0][2] == np.uint8
    np.testing.assert_array_equal(spy.calls[0][3], gt[0])
    assert [c for c in spy.calls[1:]] == [("track", (24, 32, 3))] * 3
    np.testing.assert_array_equal(boxes, gt[0] + np.outer(np.arange(4), [1, 0, 0, 0]))
    assert times.shape == (4,)


def test_worker_device_mapping():
    assert [worker_device("cuda", k, 2) for k in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert worker_device("cpu", 3, 2) == "cpu" and worker_device("cuda:1", 0, 4) == "cuda:1"
    with pytest.raises(ValueError, match="num_gpus"):
        worker_device("cuda", 0, 0)


def test_registry_errors():
    with pytest.raises(KeyError, match="registered"):
        build_tracker(TrackerSpec("nope", "x"))
    with pytest.raises(ValueError, match="no weights"):
        build_tracker(TrackerSpec("static", "x", checkpoint="ckpt.pth"))


@pytest.mark.parametrize("script", ["opencv_mil", "opencv_csrt", "opencv_kcf"])
def test_opencv_trackers_follow_a_moving_square(script):
    tracker = build_tracker(TrackerSpec(script, "default"))
    frames = []
    for i in range(16):
        image = np.zeros((96, 128, 3), dtype=np.uint8)
        cv2.rectangle(image, (20 + 2 * i, 30), (20 + 2 * i + 19, 30 + 19), (230, 60, 40), thickness=-1)
        cv2.circle(image, (30 + 2 * i, 40), 4, (20, 200, 250), thickness=-1)
        frames.append(image)
    tracker.initialize(frames[0], np.array([20.0, 30.0, 20.0, 20.0]))
    for image in frames[1:]:
        box, confidence = tracker.track(image)
    assert box.shape == (4,) and confidence in (0.0, 1.0)
    assert abs(box[0] - (20 + 2 * 15)) < 8  # moved 30 px; a static box would be off by 30


def test_opencv_tracker_missing_from_the_build_names_the_contrib_package(monkeypatch):
    monkeypatch.delattr(cv2, "TrackerCSRT_create")
    with pytest.raises(RuntimeError, match="no cv2.TrackerCSRT_create.*pip install opencv-contrib-python-headless"):
        build_tracker(TrackerSpec("opencv_csrt", "default"))


@pytest.mark.parametrize("script", ["static", "opencv_mil", "opencv_csrt", "opencv_kcf"])
def test_baselines_refuse_an_initial_box_outside_the_image(script):
    tracker = build_tracker(TrackerSpec(script, "default"))
    image = np.zeros((24, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="lies outside the 32x24 image"):
        tracker.initialize(image, np.array([32.0, 0.0, 5.0, 5.0]))  # touches the right edge: zero overlap
    tracker.initialize(image, np.array([20.0, 10.0, 10.0, 10.0]))
