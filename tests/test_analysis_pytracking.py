"""OPE metrics in the pytracking convention (pytracking `calc_seq_err_robust`, stark_behavior=True,
exclude_invalid_frames=False = LoRAT's one_pass_evaluation_compatible), against
the default toolkit convention, on hand-worked tiny sequences; plus the API / CLI switch."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lib.test.analysis.metrics import (
    CENTER_THRESHOLDS,
    NORM_CENTER_THRESHOLDS,
    OVERLAP_THRESHOLDS,
    SequenceGT,
    evaluate_dataset,
    pytracking_sequence_curves,
)
from lib.test.evaluation.analysis import TrackerEntry, evaluate_trackers
from lib.test.evaluation.datasets import get_dataset
from lib.test.evaluation.results import tracker_results_dir, write_sequence_result
from test_eval_helpers import make_env, write_boxes, write_local_file

ROOT = Path(__file__).resolve().parents[1]
BOX = [10.0, 10.0, 10.0, 10.0]  # pixels 10..19 in x and y, centre (14.5, 14.5)
FAR_BOX = [100.0, 100.0, 10.0, 10.0]  # far from the origin, so a zero (padded) box misses it at every threshold


def seq(name: str, boxes, visible=None) -> SequenceGT:
    return SequenceGT(name, np.array(boxes, dtype=float), None if visible is None else np.array(visible))


def count_curve(values, thresholds, above: bool) -> np.ndarray:
    """Independent re-statement of the counting rule: #(v > t) for IoU, #(v <= d) for errors, over len(values)."""
    values = np.asarray(values, dtype=float)
    return np.array([np.sum(values > t) if above else np.sum(values <= t) for t in thresholds]) / len(values)


def both(dataset: str, results, gts) -> tuple[dict, dict]:
    """(toolkit, pytracking) OPE outputs of one dataset."""
    return (evaluate_dataset(dataset, results, gts)["ope"],
            evaluate_dataset(dataset, results, gts, convention="pytracking")["ope"])


def test_lasot_with_absent_frames_equals_the_toolkit():
    # On 'lasot' pytracking (extract_results.py) equals the MATLAB toolkit exactly. Random integer GT with
    # x, y > 0 (valid for both rules), ~15 % absent frames, zero-width predictions (repaired by both) and 2 runs.
    rng = np.random.default_rng(7)
    gts, results = [], {}
    for k in range(6):
        n = int(rng.integers(30, 80))
        boxes = np.column_stack([rng.integers(5, 200, n), rng.integers(5, 200, n),
                                 rng.integers(10, 80, n), rng.integers(10, 80, n)]).astype(float)
        visible = rng.random(n) > 0.15
        visible[0] = True
        gts.append(SequenceGT(f"s{k}", boxes, visible=visible))
        runs = []
        for _ in range(2):
            pred = boxes + rng.normal(0, 6, boxes.shape)
            pred[:, 2:] = np.abs(pred[:, 2:]) + 1
            pred[rng.random(n) < 0.05, 2] = 0.0
            runs.append(pred)
        results[f"s{k}"] = runs
    assert sum((~g.visible).sum() for g in gts) > 20  # the absent-frame rules are exercised
    toolkit, pytracking = both("lasot", results, gts)
    for key in ("success", "precision", "norm_precision"):
        np.testing.assert_array_equal(pytracking["curves"][key], toolkit["curves"][key])
    assert pytracking["per_sequence"] == toolkit["per_sequence"]
    for metric in ("AUC", "OP50", "OP75", "Precision", "NormPrecision"):
        assert pytracking[metric] == toolkit[metric]
    # Without the 'lasot' branch (LaSOT-ext), the same data gets the NP quirk: absent frames become NP hits.
    ext = evaluate_dataset("lasot_extension_subset", results, gts, convention="pytracking")["ope"]
    assert ext["AUC"] == pytracking["AUC"] and ext["Precision"] == pytracking["Precision"]
    assert ext["NormPrecision"] > pytracking["NormPrecision"] + 5


def test_lasot_extension_absent_frames_are_normalised_precision_hits():
    # 4 frames of BOX, frames 3 and 4 absent. Frame 2: pred 1 px right -> inclusive IoU 9*10 / (200 - 90) = 0.818
    # (> 0.80, not > 0.85), centre error 1 px, normalised 1/10 = 0.1. Frame 3 far off, frame 4 perfect: absent
    # frames are failures for IoU and P in both conventions; NP: toolkit failure, pytracking -1 = a hit.
    gt = seq("ext-1", [BOX] * 4, visible=[True, True, False, False])
    pred = np.array([[300.0, 300.0, 5.0, 5.0], [11.0, 10.0, 10.0, 10.0], [90.0, 90.0, 10.0, 10.0], BOX])
    toolkit, pytracking = both("lasot_extension_subset", {"ext-1": [pred]}, [gt])
    expected_success = np.r_[np.full(17, 0.5), np.full(3, 0.25), 0.0]  # frame 1 (:= GT) and frame 2 up to 0.80
    for out in (toolkit, pytracking):
        np.testing.assert_array_equal(out["curves"]["success"], expected_success)
        assert out["AUC"] == pytest.approx(100 * (17 * 0.5 + 3 * 0.25) / 21)
        assert out["curves"]["precision"][0] == 0.25 and out["Precision"] == 50.0
    assert toolkit["curves"]["norm_precision"][0] == 0.25 and toolkit["NormPrecision"] == 50.0
    assert pytracking["curves"]["norm_precision"][0] == 0.75  # frame 1 (error 0) + the two absent frames
    assert pytracking["NormPrecision"] == 100.0
    # The same sequence as LaSOT: the 'lasot' branch resets the absent frames to failures.
    assert evaluate_dataset("lasot", {"ext-1": [pred]}, [gt], convention="pytracking")["ope"]["NormPrecision"] == 50.0


def test_tnl2k_border_boxes_are_scored_and_empty_boxes_are_np_hits():
    # Frame 2: GT at x = -2 (w, h > 0), perfect prediction. Frame 3: empty GT (a TNL2K absent frame), prediction
    # far off. Frame 4: GT at y = -3, prediction 30 px right (IoU 0, error 30 px, normalised 3).
    # pytracking (w, h > 0 rule, no absent flags): frame 2 IoU 1 and error 0; frame 3 invalid -> IoU / P failure,
    # NP hit; frame 4 scored normally -> failure everywhere. -> S(t < 1) = 2/4, P = 2/4, NP = 3/4.
    # toolkit: frames 2 and 4 have a coordinate <= 0 -> IoU failures, P / NP hits; frame 3 absent -> failure
    # everywhere. -> S(t < 1) = 1/4, P = NP = 3/4.
    gt = seq("tnl", [BOX, [-2.0, 10.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0], [5.0, -3.0, 10.0, 10.0]])
    pred = np.array([BOX, [-2.0, 10.0, 10.0, 10.0], [60.0, 60.0, 10.0, 10.0], [35.0, -3.0, 10.0, 10.0]])
    toolkit, pytracking = both("tnl2k", {"tnl": [pred]}, [gt])
    np.testing.assert_array_equal(pytracking["curves"]["success"],
                                  count_curve([1, 1, -1, 0], OVERLAP_THRESHOLDS, above=True))
    np.testing.assert_array_equal(pytracking["curves"]["precision"],
                                  count_curve([0, 0, np.inf, 30], CENTER_THRESHOLDS, above=False))
    np.testing.assert_array_equal(pytracking["curves"]["norm_precision"],
                                  count_curve([0, 0, -1, 3], NORM_CENTER_THRESHOLDS, above=False))
    assert pytracking["AUC"] == pytest.approx(100 * 0.5 * 20 / 21)
    assert pytracking["Precision"] == 50.0 and pytracking["NormPrecision"] == 75.0
    np.testing.assert_array_equal(toolkit["curves"]["success"], np.r_[np.full(20, 0.25), 0.0])
    np.testing.assert_array_equal(toolkit["curves"]["precision"], np.full(51, 0.75))
    assert toolkit["Precision"] == 75.0 and toolkit["NormPrecision"] == 75.0


def test_zero_size_predictions_take_the_previous_repaired_box():
    # Frame 2: pred 2 px right -> inter 8x10 = 80, union 120 -> IoU 2/3, error 2 px. Frames 3 (w = 0) and
    # 4 (h = 0) copy frame 2's box (a chain). Without the repair they would have IoU 0.
    gt = seq("a", [BOX] * 4)
    pred = np.array([BOX, [12.0, 10.0, 10.0, 10.0], [50.0, 50.0, 0.0, 10.0], [50.0, 50.0, 10.0, 0.0]])
    curves = pytracking_sequence_curves(pred, gt)
    np.testing.assert_array_equal(curves.success, count_curve([1, 2 / 3, 2 / 3, 2 / 3], OVERLAP_THRESHOLDS, True))
    np.testing.assert_array_equal(curves.precision, count_curve([0, 2, 2, 2], CENTER_THRESHOLDS, above=False))
    assert pred[2, 2] == 0.0  # the caller's array is not modified


def test_uav_nan_gt_frames_are_precision_hits_and_block_the_repair():
    # Frame 2 GT is NaN (UAV123's absent frames): invalid -> IoU failure; 'uav' sets the centre error to -1 (a
    # hit), other datasets to +inf; NP -1 (a hit) everywhere. Its zero-size prediction is not repaired (NaN GT
    # row), so frame 3 (zero-size, valid GT) copies [50,50,0,0]: IoU 0, centre (49.5, 49.5) vs (14.5, 14.5)
    # -> 35*sqrt(2) = 49.5 px, normalised 4.95: failures.
    gt = seq("u", [BOX, [np.nan] * 4, BOX])
    pred = np.array([BOX, [50.0, 50.0, 0.0, 0.0], [60.0, 60.0, 0.0, 5.0]])
    uav = evaluate_dataset("uav", {"u": [pred]}, [gt], convention="pytracking")["ope"]
    np.testing.assert_array_equal(uav["curves"]["success"], count_curve([1, -1, 0], OVERLAP_THRESHOLDS, True))
    np.testing.assert_array_equal(uav["curves"]["precision"],
                                  count_curve([0, -1, 35 * np.sqrt(2)], CENTER_THRESHOLDS, above=False))
    assert uav["NormPrecision"] == pytest.approx(200 / 3)
    otb = evaluate_dataset("otb", {"u": [pred]}, [gt], convention="pytracking")["ope"]
    assert otb["Precision"] == pytest.approx(100 / 3) and otb["NormPrecision"] == pytest.approx(200 / 3)


def test_nan_and_negative_predictions_are_refused_not_repaired():
    gt = seq("bird-3", [BOX] * 3)
    with pytest.raises(ValueError, match=r"bird-3.*NaN or negative.*\[3\]"):
        pytracking_sequence_curves(np.array([BOX, BOX, [np.nan, 10.0, 10.0, 10.0]]), gt)
    with pytest.raises(ValueError, match=r"bird-3.*\[2\]"):
        pytracking_sequence_curves(np.array([BOX, [10.0, 10.0, 10.0, -1.0], BOX]), gt)
    with pytest.raises(ValueError, match="bird-3"):  # frame 1 too, although it is replaced by the GT afterwards
        evaluate_dataset("otb", {"bird-3": [np.array([[np.nan] * 4, BOX, BOX])]}, [gt], convention="pytracking")
    # The toolkit repairs the same NaN box from the previous frame instead.
    nan_pred = np.array([BOX, BOX, [np.nan, 10.0, 10.0, 10.0]])
    assert evaluate_dataset("otb", {"bird-3": [nan_pred]}, [gt])["ope"]["Precision"] == 100.0


def test_short_results_are_zero_padded_after_the_repair_except_on_lasot():
    # 3 GT frames, 2 predictions. Non-LaSOT: a zero row is appended after the repair, so it stays [0,0,0,0]
    # (IoU 0, centre (-0.5, -0.5) ~ 143 px from (104.5, 104.5)): a failure. Padded before the repair it would
    # copy frame 2 and succeed.
    gt = seq("cat-2", [FAR_BOX] * 3)
    short = np.array([FAR_BOX, FAR_BOX])
    curves = pytracking_sequence_curves(short, gt)
    np.testing.assert_array_equal(curves.success, np.r_[np.full(20, 2 / 3), 0.0])
    np.testing.assert_array_equal(curves.precision, np.full(51, 2 / 3))
    np.testing.assert_array_equal(curves.norm_precision, np.full(51, 2 / 3))
    with pytest.raises(ValueError, match="cat-2.*2 boxes.*3 frames"):
        evaluate_dataset("lasot", {"cat-2": [short]}, [gt], convention="pytracking")
    with pytest.raises(ValueError, match="cat-2.*2 boxes.*3 frames"):
        evaluate_dataset("otb", {"cat-2": [short]}, [gt])  # the toolkit refuses it everywhere
    # A longer result is cut to the GT length in both conventions.
    longer = np.array([FAR_BOX] * 3 + [[0.0, 0.0, 1.0, 1.0]])
    assert evaluate_dataset("lasot", {"cat-2": [longer]}, [gt], convention="pytracking")["ope"]["Precision"] == 100.0


def test_every_sequence_is_averaged():
    # B's only frame is absent: an all-zero curve. The toolkit leaves it out (plot_draw_save.m), pytracking
    # averages it in: P = (1 + 0) / 2.
    gts = [seq("A", [BOX] * 2, visible=[True, True]), seq("B", [BOX], visible=[False])]
    results = {"A": [np.array([BOX] * 2)], "B": [np.array([BOX])]}
    toolkit, pytracking = both("lasot", results, gts)
    assert toolkit["Precision"] == 100.0 and pytracking["Precision"] == 50.0


def test_unknown_convention_is_refused_naming_the_allowed_ones(tmp_path):
    gt = seq("a", [BOX])
    with pytest.raises(ValueError, match="'matlab'.*toolkit, pytracking"):
        evaluate_dataset("otb", {"a": [np.array([BOX])]}, [gt], convention="matlab")
    with pytest.raises(ValueError, match="toolkit, pytracking"):  # before any result file is looked for
        evaluate_trackers("otb", [], [TrackerEntry("t", "c")], tmp_path, convention="matlab")
    # GOT-10k val keeps the got10k protocol in either convention.
    got = SequenceGT("g", np.array([BOX, BOX]), image_size=(100, 100), cover=np.array([8, 8]))
    assert evaluate_dataset("got10k_val", {"g": [np.array([BOX, BOX])]}, [got], convention="pytracking")["got10k"][
        "AO"] == pytest.approx(100.0)


def test_cli_convention_flag_reaches_the_evaluator(tmp_path):
    # The LaSOT-ext sequence of test_lasot_extension_absent_frames_are_normalised_precision_hits, on disk.
    root = tmp_path / "ext"
    seq_dir = root / "bird" / "bird-9"
    write_boxes(seq_dir / "groundtruth.txt", np.array([BOX] * 4))
    (seq_dir / "full_occlusion.txt").write_text("0,0,1,0\n")
    (seq_dir / "out_of_view.txt").write_text("0,0,0,1\n")
    (seq_dir / "img").mkdir()
    for i in range(1, 5):
        (seq_dir / "img" / f"{i:08d}.jpg").touch()  # one frame per box (the files are only counted here)
    env = make_env(tmp_path, lasot_extension_subset_path=str(root))
    local = tmp_path / "local.py"
    write_local_file(local, env)
    (sequence,) = get_dataset("lasot_extension_subset", env)
    pred = np.array([BOX, [11.0, 10.0, 10.0, 10.0], [90.0, 90.0, 10.0, 10.0], BOX])
    write_sequence_result(tracker_results_dir(env.results_path, "static", "none"), sequence, pred, np.zeros(4))

    scores = {}
    for convention in ("toolkit", "pytracking"):
        out_json = tmp_path / f"{convention}.json"
        run = subprocess.run(
            [sys.executable, "tracking/analysis_results.py", "--script", "static", "--config", "none", "--dataset",
             "lasot_extension_subset", "--convention", convention, "--json", str(out_json), "--env_file", str(local)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
        assert run.returncode == 0, run.stderr
        assert f"{convention} convention" in run.stdout
        scores[convention] = json.loads(out_json.read_text())["static/none"]
    assert scores["toolkit"]["NormPrecision"] == 50.0 and scores["pytracking"]["NormPrecision"] == 100.0
    assert scores["toolkit"]["AUC"] == scores["pytracking"]["AUC"] == pytest.approx(100 * 9.25 / 21)
