"""OPE metrics in the LaSOT MATLAB toolkit convention, on hand-worked tiny sequences
(LaSOT toolkit calc_seq_err_robust.m / eval_tracker.m, docs/benchmarks.md), plus registry and table."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from lib.test.analysis.metrics import (
    BENCHMARKS,
    CENTER_THRESHOLDS,
    NORM_CENTER_THRESHOLDS,
    OVERLAP_THRESHOLDS,
    SequenceGT,
    benchmark_spec,
    evaluate_dataset,
    evaluate_ope,
    format_table,
    ope_sequence_curves,
)

BOX = [10.0, 10.0, 10.0, 10.0]  # GT box used by most tests: pixels 10..19 in x and y, centre (14.5, 14.5)


def seq(name: str, boxes, visible=None) -> SequenceGT:
    return SequenceGT(name, np.array(boxes, dtype=float), None if visible is None else np.array(visible))


def count_curve(values, thresholds, above: bool) -> np.ndarray:
    """Independent re-statement of the counting rule: #(v > t) for IoU, #(v <= d) for errors, over len(values)."""
    values = np.asarray(values, dtype=float)
    return np.array([np.sum(values > t) if above else np.sum(values <= t) for t in thresholds]) / len(values)


def test_thresholds_are_the_toolkit_grids():
    assert len(OVERLAP_THRESHOLDS) == 21 and OVERLAP_THRESHOLDS[10] == 0.5 and OVERLAP_THRESHOLDS[15] == 0.75
    assert OVERLAP_THRESHOLDS[0] == 0.0 and OVERLAP_THRESHOLDS[-1] == 1.0
    assert np.array_equal(CENTER_THRESHOLDS, np.arange(51))
    assert len(NORM_CENTER_THRESHOLDS) == 51 and NORM_CENTER_THRESHOLDS[20] == 0.2


def test_first_frame_is_replaced_by_gt():
    gt = seq("a", [BOX, BOX])
    pred = np.array([[300.0, 300.0, 5.0, 5.0], BOX])  # frame 1 far off, frame 2 perfect
    curves = ope_sequence_curves(pred, gt)
    # Both frames have IoU 1: success for every t < 1, never at t = 1 (strict >).
    assert np.array_equal(curves.success, np.r_[np.ones(20), 0.0])
    assert np.array_equal(curves.precision, np.ones(51))
    assert np.array_equal(curves.norm_precision, np.ones(51))
    result = evaluate_ope({"a": [pred]}, [gt])
    assert result["AUC"] == pytest.approx(100 * 20 / 21)
    assert result["OP50"] == 100.0 and result["OP75"] == 100.0
    assert result["Precision"] == 100.0 and result["NormPrecision"] == 100.0
    assert pred[0, 0] == 300.0  # the caller's array is not modified


def test_iou_exactly_at_threshold_is_not_a_success():
    # Frame 2: pred [10,10,10,5] -> intersection 10x5 = 50, union 100 -> IoU 0.5 exactly.
    # Frame 3: pred [10,10,10,7.5] -> IoU 75 / 100 = 0.75 exactly.
    gt = seq("a", [BOX, BOX, BOX])
    pred = np.array([BOX, [10, 10, 10, 5], [10, 10, 10, 7.5]], dtype=float)
    curves = ope_sequence_curves(pred, gt)
    expected = count_curve([1.0, 0.5, 0.75], OVERLAP_THRESHOLDS, above=True)
    np.testing.assert_array_equal(curves.success, expected)
    assert curves.success[9] == 1.0  # t = 0.45: all three
    assert curves.success[10] == pytest.approx(2 / 3)  # t = 0.50: IoU 0.5 fails
    assert curves.success[15] == pytest.approx(1 / 3)  # t = 0.75: IoU 0.75 fails
    result = evaluate_ope({"a": [pred]}, [gt])
    assert result["OP50"] == pytest.approx(200 / 3)
    assert result["OP75"] == pytest.approx(100 / 3)
    assert result["AUC"] == pytest.approx(100 * expected.mean())


def test_precision_at_exactly_20_px_counts():
    # Frame 2 centre moved 20 px right (error exactly 20), frame 3 moved 21 px.
    gt = seq("a", [BOX, BOX, BOX])
    pred = np.array([BOX, [30, 10, 10, 10], [31, 10, 10, 10]], dtype=float)
    curves = ope_sequence_curves(pred, gt)
    np.testing.assert_array_equal(curves.precision, count_curve([0, 20, 21], CENTER_THRESHOLDS, above=False))
    assert curves.precision[19] == pytest.approx(1 / 3)
    assert curves.precision[20] == pytest.approx(2 / 3)
    assert curves.precision[21] == 1.0
    assert evaluate_ope({"a": [pred]}, [gt])["Precision"] == pytest.approx(200 / 3)


def test_normalised_precision():
    # GT 8 x 4 at (9, 9): centre (12.5, 10.5). Errors divided per axis by GT w = 8, h = 4:
    # frame 2: dx = 1 -> 0.125; frame 3: dy = 1 -> 0.25 (exact binary fractions); frame 4: dx = 2, dy = 1.5
    # -> sqrt(0.25^2 + 0.375^2) ~ 0.4507.
    gt_box = [9.0, 9.0, 8.0, 4.0]
    gt = seq("a", [gt_box] * 4)
    pred = np.array([gt_box, [10, 9, 8, 4], [9, 10, 8, 4], [11, 10.5, 8, 4]], dtype=float)
    curves = ope_sequence_curves(pred, gt)
    errors = [0.0, 0.125, 0.25, np.hypot(0.25, 0.375)]
    np.testing.assert_array_equal(curves.norm_precision, count_curve(errors, NORM_CENTER_THRESHOLDS, above=False))
    assert curves.norm_precision[24] == 0.5 and curves.norm_precision[25] == 0.75  # 0.25 counts at 0.25 (<=)
    assert evaluate_ope({"a": [pred]}, [gt])["NormPrecision"] == 50.0  # value at 0.20
    # Plain precision uses pixels: frame 4 error sqrt(2^2 + 1.5^2) = 2.5 px.
    np.testing.assert_array_equal(curves.precision, count_curve([0, 1, 1, 2.5], CENTER_THRESHOLDS, above=False))


def test_normalised_error_divides_centres_before_subtracting():
    # As calc_seq_err_robust.m: 11/5 - 10/5 = 0.20000000000000018 in doubles (not 1/5), so a true 0.2 error
    # misses the 0.20 threshold. GT w = 5 at x = 8 -> centre 10; pred x = 9 -> centre 11.
    gt = seq("a", [[8.0, 8.0, 5.0, 5.0]] * 2)
    pred = np.array([[8.0, 8.0, 5.0, 5.0], [9.0, 8.0, 5.0, 5.0]])
    curves = ope_sequence_curves(pred, gt)
    assert curves.norm_precision[20] == 0.5 and curves.norm_precision[21] == 1.0


def test_absent_frames_are_failures_with_full_denominator():
    # Frames 3 and 4 are absent although the prediction is perfect there: failures in all three curves.
    gt = seq("a", [BOX] * 4, visible=[True, True, False, False])
    pred = np.array([BOX] * 4)
    curves = ope_sequence_curves(pred, gt)
    assert np.array_equal(curves.success, np.r_[np.full(20, 0.5), 0.0])
    assert np.array_equal(curves.precision, np.full(51, 0.5))
    assert np.array_equal(curves.norm_precision, np.full(51, 0.5))  # no "absent = NP hit" quirk (pytracking)
    result = evaluate_ope({"a": [pred]}, [gt])
    assert result["Precision"] == 50.0 and result["NormPrecision"] == 50.0
    # An absent frame 1 is a failure too (the GT substitution does not help it).
    gt_first_absent = seq("b", [BOX] * 2, visible=[False, True])
    assert ope_sequence_curves(pred[:2], gt_first_absent).precision[0] == 0.5


def test_invalid_predictions_take_the_previous_repaired_box():
    # Frame 2: pred shifted 2 px -> inter 8x10 = 80, union 120 -> IoU 2/3, error 2 px.
    # Frames 3..6: zero width, negative height, NaN, all-NaN -> all repaired to frame 2's box.
    gt = seq("a", [BOX] * 6)
    good = [12.0, 10.0, 10.0, 10.0]
    pred = np.array([BOX, good, [50, 50, 0, 10], [50, 50, 10, -3], [np.nan, 50, 10, 10], [np.nan] * 4])
    curves = ope_sequence_curves(pred, gt)
    np.testing.assert_array_equal(curves.success, count_curve([1] + [2 / 3] * 5, OVERLAP_THRESHOLDS, above=True))
    np.testing.assert_array_equal(curves.precision, count_curve([0] + [2] * 5, CENTER_THRESHOLDS, above=False))
    assert curves.success[13] == 1.0 and curves.success[14] == pytest.approx(1 / 6)  # 2/3 > 0.65, not > 0.70


def test_repair_is_skipped_where_gt_row_has_nan_and_chains_from_it():
    # Frame 3 GT is NaN: its zero-size prediction is not repaired; the GT row is invalid (not all > 0), so the
    # frame is an IoU failure but a precision / normalised-precision hit (toolkit sets errors to -1).
    # Frame 4 (valid GT, invalid pred) copies frame 3's unrepaired [50,50,0,0]: IoU 0, centre (49.5, 49.5)
    # vs (14.5, 14.5) -> ~49.5 px: a failure up to 49 px.
    gt = seq("a", [BOX, BOX, [np.nan] * 4, BOX])
    pred = np.array([BOX, BOX, [50, 50, 0, 0], [60, 60, -1, 5]], dtype=float)
    curves = ope_sequence_curves(pred, gt)
    np.testing.assert_array_equal(curves.success, count_curve([1, 1, -1, 0], OVERLAP_THRESHOLDS, above=True))
    expected_err = [0, 0, -1, np.hypot(35, 35)]
    np.testing.assert_array_equal(curves.precision, count_curve(expected_err, CENTER_THRESHOLDS, above=False))
    assert curves.norm_precision[50] == 0.75


def test_gt_boxes_at_the_border_follow_the_toolkit_validity_rule():
    # GT frames 2 (x = 0) and 3 (y = -2) are "invalid" for the toolkit (x, y, w, h must all be > 0): IoU
    # failures even for a perfect prediction, precision / normalised precision hits even for a far one.
    border = [0.0, 10.0, 10.0, 10.0]
    above = [5.0, -2.0, 10.0, 10.0]
    gt = seq("a", [BOX, border, above])
    pred = np.array([BOX, border, [200, 200, 10, 10]])
    curves = ope_sequence_curves(pred, gt)
    assert np.array_equal(curves.success, np.r_[np.full(20, 1 / 3), 0.0])
    assert np.array_equal(curves.precision, np.ones(51))
    assert np.array_equal(curves.norm_precision, np.ones(51))
    # Zero-width GT (present frame): same rule.
    gt_empty = seq("b", [BOX, [10.0, 10.0, 0.0, 10.0]])
    empty_curves = ope_sequence_curves(np.array([BOX, [90.0, 90.0, 5.0, 5.0]]), gt_empty)
    assert empty_curves.success[0] == 0.5 and empty_curves.precision[0] == 1.0


def test_coordinate_offset_moves_loaded_boxes_back_to_file_coordinates():
    # LaSOT is loaded 0-based (-1): a box at x = 0 after loading is x = 1 in the toolkit's file -> valid.
    gt = seq("a", [BOX, [0.0, 10.0, 10.0, 10.0]])
    pred = np.array([BOX, [0.0, 10.0, 10.0, 5.0]])  # IoU 0.5
    shifted = ope_sequence_curves(pred, gt, coordinate_offset=1.0)
    np.testing.assert_array_equal(shifted.success, count_curve([1, 0.5], OVERLAP_THRESHOLDS, above=True))
    plain = ope_sequence_curves(pred, gt)
    assert plain.success[0] == 0.5
    assert BENCHMARKS["lasot"].coordinate_offset == 1.0
    assert BENCHMARKS["lasot_extension_subset"].coordinate_offset == 0.0  # loaded without shift (upstream trackit/LoRAT's LaSOT_Extension loader)


def test_longer_results_are_cut_and_shorter_ones_rejected():
    gt = seq("seq-7", [BOX, BOX])
    longer = np.array([BOX, BOX, [500, 500, 1, 1]])
    assert np.array_equal(ope_sequence_curves(longer, gt).success, np.r_[np.ones(20), 0.0])
    with pytest.raises(ValueError, match="seq-7.*1 boxes.*2 frames"):
        ope_sequence_curves(np.array([BOX]), gt)
    with pytest.raises(ValueError, match="seq-7"):
        ope_sequence_curves(np.zeros((2, 3)), gt)


def test_sequences_are_averaged_not_pooled():
    # A: 2 frames, both right. B: 4 frames, only frame 1 (:= GT) right.
    far = [300.0, 300.0, 10.0, 10.0]
    gts = [seq("A", [BOX] * 2), seq("B", [BOX] * 4)]
    results = {"A": [np.array([BOX] * 2)], "B": [np.array([BOX] + [far] * 3)]}
    out = evaluate_ope(results, gts)
    assert out["curves"]["success"][0] == pytest.approx((1 + 0.25) / 2)  # not pooled (2 + 1) / 6
    assert out["Precision"] == pytest.approx(62.5)
    assert out["per_sequence"]["A"]["Precision"] == 100.0 and out["per_sequence"]["B"]["Precision"] == 25.0
    assert out["AUC"] == pytest.approx(62.5 * 20 / 21)


def test_runs_are_averaged_per_sequence_then_over_sequences():
    # Run 0 gets frame 2 of A right (IoU 1), run 1 gets IoU 0.5 there; B identical in both runs.
    gts = [seq("A", [BOX] * 2), seq("B", [BOX] * 2)]
    half = [10.0, 10.0, 10.0, 5.0]
    results = {"A": [np.array([BOX, BOX]), np.array([BOX, half])], "B": [np.array([BOX, BOX])] * 2}
    out = evaluate_ope(results, gts)
    seq_a = (count_curve([1, 1], OVERLAP_THRESHOLDS, True) + count_curve([1, 0.5], OVERLAP_THRESHOLDS, True)) / 2
    expected = (seq_a + count_curve([1, 1], OVERLAP_THRESHOLDS, True)) / 2
    np.testing.assert_allclose(out["curves"]["success"], expected)
    assert out["OP50"] == pytest.approx(100 * (0.75 + 1) / 2)
    # Same as averaging the two single-run evaluations (curves are linear in the runs here).
    single = [evaluate_ope({k: [v[r]] for k, v in results.items()}, gts)["AUC"] for r in range(2)]
    assert out["AUC"] == pytest.approx(np.mean(single))


def test_sequence_with_all_zero_curve_is_left_out_of_the_mean():
    # plot_draw_save.m drops curves summing to <= eps: B's only frame is absent, so its curves are all zero.
    gts = [seq("A", [BOX] * 2), seq("B", [BOX], visible=[False])]
    out = evaluate_ope({"A": [np.array([BOX] * 2)], "B": [np.array([BOX])]}, gts)
    assert out["Precision"] == 100.0


def test_missing_or_extra_sequences_are_reported_by_name():
    gts = [seq("A", [BOX]), seq("B", [BOX])]
    with pytest.raises(ValueError, match="no results for 1 sequence.*B"):
        evaluate_ope({"A": [np.array([BOX])]}, gts)
    with pytest.raises(ValueError, match="not in the dataset: C"):
        evaluate_ope({"A": [np.array([BOX])], "B": [np.array([BOX])], "C": [np.array([BOX])]}, gts)
    with pytest.raises(TypeError, match="list of runs.*A"):
        evaluate_ope({"A": np.array([BOX]), "B": [np.array([BOX])]}, gts)


def test_sequence_gt_validates_shapes():
    with pytest.raises(ValueError, match="'x'.*visible"):
        SequenceGT("x", np.zeros((3, 4)), visible=np.ones(2, bool))
    with pytest.raises(ValueError, match="'x'"):
        SequenceGT("x", np.zeros((3, 5)))


def test_matches_got10k_toolkit_otb_curves_on_random_sequences():
    # With all-valid GT and no absent frames, the LaSOT convention equals the
    # got10k ExperimentOTB curves computed on (pred with row 0 := GT, GT).
    # Plain imports: a missing toolkit (or `six`, which it imports without declaring) must fail, not skip.
    import got10k.experiments.otb as otb
    import got10k.utils.metrics as metrics_mod
    import six  # noqa: F401
    experiment = otb.ExperimentOTB.__new__(otb.ExperimentOTB)
    experiment.nbins_iou, experiment.nbins_ce = 21, 51
    rng = np.random.default_rng(3)
    gts, results, succ, prec = [], {}, [], []
    for k in range(5):
        n = int(rng.integers(20, 60))
        # Integer GT like real annotation files (with float boxes the inclusive-pixel arithmetic of the
        # toolkit can give IoU(box, box) = 1 + 1 ulp, which got10k's clipping hides).
        gt_boxes = np.column_stack([rng.integers(5, 200, n), rng.integers(5, 200, n),
                                    rng.integers(10, 80, n), rng.integers(10, 80, n)]).astype(float)
        pred = gt_boxes + rng.normal(0, 8, gt_boxes.shape)
        pred[:, 2:] = np.abs(pred[:, 2:]) + 1
        gts.append(SequenceGT(f"s{k}", gt_boxes))
        results[f"s{k}"] = [pred]
        ref_pred = pred.copy()
        ref_pred[0] = gt_boxes[0]
        s, p = experiment._calc_curves(metrics_mod.rect_iou(ref_pred, gt_boxes.copy()),
                                       metrics_mod.center_error(ref_pred, gt_boxes))
        succ.append(s)
        prec.append(p)
    out = evaluate_ope(results, gts)
    np.testing.assert_allclose(out["curves"]["success"], np.mean(succ, axis=0), atol=1e-12)
    np.testing.assert_allclose(out["curves"]["precision"], np.mean(prec, axis=0), atol=1e-12)
    assert out["AUC"] == pytest.approx(100 * np.mean(succ), abs=1e-9)


def _python_calls(function) -> tuple[int, object]:
    """Number of Python-level function calls `function()` makes (a deterministic measure of its work)."""
    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        calls += event == "call"

    sys.setprofile(count)
    try:
        out = function()
    finally:
        sys.setprofile(None)
    return calls, out


def test_evaluation_work_does_not_grow_with_the_frame_count():
    # The scorer stays fast on big benchmarks (280 x 2500 frames) because it is vectorised per sequence: the
    # Python calls it makes depend on the number of sequences and runs, not on the number of frames.
    def evaluation(frames: int):
        rng = np.random.default_rng(0)
        gts, results = [], {}
        for k in range(6):
            boxes = np.column_stack([rng.uniform(1, 500, frames), rng.uniform(1, 500, frames),
                                     rng.uniform(5, 100, frames), rng.uniform(5, 100, frames)])
            gts.append(SequenceGT(f"s{k}", boxes, visible=rng.random(frames) > 0.03))
            results[f"s{k}"] = [boxes + rng.normal(0, 5, boxes.shape)]
        return lambda: evaluate_ope(results, gts)

    short_calls, short = _python_calls(evaluation(50))
    long_calls, long = _python_calls(evaluation(2500))
    assert 0 < short["AUC"] < 100 and 0 < long["AUC"] < 100
    assert long_calls == short_calls


def test_benchmark_registry():
    for name in ("lasot", "lasot_extension_subset", "tnl2k", "otb", "uav", "nfs"):
        assert benchmark_spec(name).protocols == ("ope",)
    assert benchmark_spec("got10k_val").protocols == ("got10k",)
    assert set(benchmark_spec("synthetic_grid_val").protocols) == {"got10k", "ope"}
    with pytest.raises(ValueError, match="server"):
        benchmark_spec("got10k_test")
    with pytest.raises(KeyError, match="nope"):
        benchmark_spec("nope")
    # LaSOT's offset is applied: a 0-based box at x = 0 is valid in file coordinates.
    gt = seq("a", [BOX, [0.0, 10.0, 10.0, 10.0]])
    out = evaluate_dataset("lasot", {"a": [np.array([BOX, [0.0, 10.0, 10.0, 10.0]])]}, [gt])
    assert list(out) == ["ope"] and out["ope"]["OP50"] == 100.0
    assert evaluate_dataset("otb", {"a": [np.array([BOX, [0.0, 10.0, 10.0, 10.0]])]}, [gt])["ope"]["OP50"] == 50.0


def test_tnl2k_empty_gt_boxes_are_absent_without_visibility_flags():
    # TNL2K absent frames carry an empty GT box. Without flags, the toolkit validity rule alone would make frame 2
    # a precision hit (OTB: 100 %); for TNL2K it is absent, a failure (50 %). Given flags win.
    gt = seq("a", [BOX, [0.0, 0.0, 0.0, 0.0]])
    results = {"a": [np.array([BOX, [80.0, 80.0, 10.0, 10.0]])]}
    assert evaluate_dataset("otb", results, [gt])["ope"]["Precision"] == 100.0
    assert evaluate_dataset("tnl2k", results, [gt])["ope"]["Precision"] == 50.0
    flagged = seq("a", [BOX, [0.0, 0.0, 0.0, 0.0]], visible=[True, True])
    assert evaluate_dataset("tnl2k", results, [flagged])["ope"]["Precision"] == 100.0


def test_format_table_aligns_columns_and_skips_non_scalars():
    rows = {
        "LoRAT-B-224": {"AUC": 71.6789, "Precision": 77.0, "curves": {"success": np.ones(21)}},
        "static": {"AUC": 5.0, "Precision": 1.234, "NormPrecision": 3.0},
    }
    table = format_table(rows)
    lines = table.splitlines()
    assert lines[0].split() == ["Tracker", "AUC", "Precision"]
    assert lines[2].split() == ["LoRAT-B-224", "71.68", "77.00"]
    assert lines[3].split() == ["static", "5.00", "1.23"]
    assert len({len(line) for line in lines}) == 1  # aligned
    with pytest.raises(KeyError, match="LoRAT-B-224.*NormPrecision"):
        format_table(rows, metrics=["AUC", "NormPrecision"])
