"""NaN boxes in the ground truth: errors blame the annotation file and line (not the result file), and the
toolkit convention scores them exactly as the LaSOT MATLAB toolkit does."""
from __future__ import annotations

import re

import numpy as np
import pytest

from lib.test.analysis.metrics import OVERLAP_THRESHOLDS, SequenceGT, evaluate_dataset, evaluate_got10k
from lib.test.evaluation.data import Sequence
from lib.test.evaluation.datasets import get_dataset
from test_eval_helpers import make_env, make_got10k_split

BOX = [10.0, 10.0, 10.0, 10.0]


def metric_gt(seq: Sequence) -> SequenceGT:
    """The metric view of a loaded sequence, with the ground truth's file and lines."""
    return SequenceGT(seq.name, seq.ground_truth_rect, visible=seq.visible, image_size=seq.image_size,
                      cover=seq.cover, source=seq.gt_source, lines=seq.gt_lines)


def test_loaded_sequences_know_their_ground_truth_file_and_lines(tmp_path):
    root = tmp_path / "got10k"
    make_got10k_split(root, "val", {"GOT-10k_Val_000001": 4})
    gt_file = root / "val" / "GOT-10k_Val_000001" / "groundtruth.txt"
    rows = gt_file.read_text().splitlines()
    gt_file.write_text("\n".join([rows[0], "", rows[1], rows[2], "", rows[3]]) + "\n")  # blank lines are not rows
    (seq,) = get_dataset("got10k_val", make_env(tmp_path, got10k_path=str(root)))
    assert seq.gt_source == str(gt_file)
    assert seq.gt_lines.tolist() == [1, 3, 4, 6]


def test_nan_ground_truth_in_got10k_val_names_the_annotation_file_and_line(tmp_path):
    root = tmp_path / "got10k"
    make_got10k_split(root, "val", {"GOT-10k_Val_000001": 4})
    gt_file = root / "val" / "GOT-10k_Val_000001" / "groundtruth.txt"
    rows = gt_file.read_text().splitlines()
    rows[2] = "NaN,NaN,NaN,NaN"  # frame 3 (cover 8): scored by the got10k protocol
    gt_file.write_text("\n".join(rows) + "\n")
    (seq,) = get_dataset("got10k_val", make_env(tmp_path, got10k_path=str(root)))
    results = {seq.name: [np.tile([3.0, 4.0, 9.0, 7.0], (4, 1))]}  # a result file without any NaN
    with pytest.raises(ValueError, match=rf"ground truth .* NaN boxes at {re.escape(str(gt_file))}:3 .*annotation") as error:
        evaluate_got10k(results, [metric_gt(seq)])
    assert "result file" not in str(error.value)


def test_got10k_toolkit_itself_gives_nan_for_a_nan_ground_truth_box():
    # Why it is an error: the PyPI toolkit's IoU of a NaN GT box is NaN, so its AO would be NaN.
    import got10k.utils.metrics as toolkit
    import six  # noqa: F401  (the toolkit imports it without declaring it)

    ious = toolkit.rect_iou(np.array([BOX, BOX]), np.array([BOX, [np.nan] * 4]), bound=(64, 48))
    assert ious[0] == pytest.approx(1.0) and np.isnan(ious[1])


def test_toolkit_convention_scores_a_nan_ground_truth_row_as_the_matlab_toolkit():
    # calc_seq_err_robust.m: `idx = sum(rect_anno > 0, 2) == 4` is false for a NaN row, so its IoU is -1 (a failure
    # at every threshold) and its centre errors -1 (hits). Frames 1, 2, 4 are exact: IoU 1, error 0.
    gt = SequenceGT("bike-1", np.array([BOX, BOX, [np.nan] * 4, BOX]), visible=np.ones(4, bool),
                    source="ext/bike/bike-1/groundtruth.txt", lines=np.arange(1, 5))
    pred = np.array([BOX, BOX, [80.0, 80.0, 5.0, 5.0], BOX])
    out = evaluate_dataset("lasot_extension_subset", {"bike-1": [pred]}, [gt])["ope"]
    success = np.where(OVERLAP_THRESHOLDS < 1.0, 3 / 4, 0.0)  # IoU 1 > t for t < 1 on three of four frames
    np.testing.assert_allclose(out["curves"]["success"], success)
    assert out["AUC"] == pytest.approx(100 * 20 * 0.75 / 21)
    assert out["Precision"] == pytest.approx(100.0) and out["NormPrecision"] == pytest.approx(100.0)
