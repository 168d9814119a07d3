"""Toolkit-exact single-object-tracking metrics (the conventions are compared in docs/benchmarks.md).

Two protocols, ``ope`` in two conventions (``toolkit``, the default, and ``pytracking``):

* ``ope``, ``toolkit`` convention — the LaSOT MATLAB toolkit (also used for TNL2K, LaSOT-ext, OTB, UAV, NFS),
  its `calc_seq_err_robust.m` and `eval_tracker.m`: frame 1 := GT, invalid predictions repaired from the previous frame, absent frames
  are failures with the full denominator, GT boxes with a coordinate that is not > 0 are IoU failures but
  precision hits (a NaN GT row included), 21 IoU thresholds with ``IoU > t`` (AUC = mean), 51 centre thresholds with ``err <= d``
  (P at 20 px, normalised P at 0.20), per-sequence curves averaged over sequences.
* ``ope``, ``pytracking`` convention (`evaluate_ope_pytracking`) — pytracking's
  `pytracking/analysis/extract_results.py` `calc_seq_err_robust` as STARK / OSTrack / LoRAT's `one_pass_evaluation_compatible` run it (w, h > 0 validity,
  full denominator, every sequence averaged), which produced the published tables. It differs from the toolkit
  where a dataset has invalid or invisible frames outside LaSOT (LaSOT-ext absent frames are normalised-precision
  hits, TNL2K border boxes are scored), so it is for comparison with published numbers only.
* ``got10k`` — the got10k toolkit's ``ExperimentGOT10k.report`` on the val split (`got10k/experiments/got10k.py`):
  frame 1 dropped, both
  boxes clipped to the image, frames with ``cover > 0`` only, AO / SR pooled over all frames of all sequences
  and all repetitions. A NaN GT box on a scored frame is an error naming the annotation file and line (the
  toolkit would report AO = NaN).

All inputs are ``x, y, w, h`` float arrays as read from result / annotation files.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from lib.datasets.synthetic import NAME_FORM as SYNTHETIC_NAME_FORM
from lib.datasets.synthetic import is_synthetic_name, parse_synthetic_name

OVERLAP_THRESHOLDS = np.arange(21) / 20.0  # 0, 0.05, ..., 1 (correctly rounded k/20)
CENTER_THRESHOLDS = np.arange(51, dtype=np.float64)  # 0, 1, ..., 50 px
NORM_CENTER_THRESHOLDS = np.arange(51) / 100.0  # 0, 0.01, ..., 0.50
GOT10K_THRESHOLDS = np.linspace(0.0, 1.0, 101)  # the got10k toolkit's success-curve grid

_OP50_INDEX = 10  # OVERLAP_THRESHOLDS[10] == 0.5
_OP75_INDEX = 15  # OVERLAP_THRESHOLDS[15] == 0.75
_PRECISION_INDEX = 20  # 20 px
_NORM_PRECISION_INDEX = 20  # 0.20
_SR75_INDEX = 75  # GOT10K_THRESHOLDS[75] == 0.75, read off the curve as the toolkit does

OPE_METRICS = ("AUC", "OP50", "OP75", "Precision", "NormPrecision")
GOT10K_METRICS = ("AO", "SR0.5", "SR0.75")


def _as_boxes(array: np.ndarray, what: str) -> np.ndarray:
    """Return `array` as a float64 (N, 4) array or raise naming `what`."""
    boxes = np.asarray(array, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{what}: expected an (N, 4) x,y,w,h array, got shape {boxes.shape}")
    return boxes


@dataclass(frozen=True)
class SequenceGT:
    """Ground truth of one sequence as the metrics need it.

    `visible[i] == False` marks frame i as absent (LaSOT: full_occlusion or out_of_view; TNL2K: the toolkit's
    absent files). `image_size` is (W, H) and `cover` the GOT-10k visible-ratio bins; both only for ``got10k``.
    `source` (the annotation file) and `lines` (the 1-based file line of each row) let an error about the ground
    truth name the file and line to fix.
    """

    name: str
    boxes_xywh: np.ndarray
    visible: np.ndarray | None = None
    image_size: tuple[int, int] | None = None
    cover: np.ndarray | None = None
    source: str | None = None
    lines: np.ndarray | None = None

    def __post_init__(self) -> None:
        boxes = _as_boxes(self.boxes_xywh, f"ground truth of sequence {self.name!r}")
        object.__setattr__(self, "boxes_xywh", boxes)
        n = len(boxes)
        if n == 0:
            raise ValueError(f"ground truth of sequence {self.name!r} has no frames")
        for field in ("visible", "cover", "lines"):
            value = getattr(self, field)
            if value is None:
                continue
            value = np.asarray(value)
            if value.shape != (n,):
                raise ValueError(
                    f"sequence {self.name!r}: {field} has shape {value.shape} but the ground truth has {n} frames"
                )
            dtypes = {"visible": bool, "cover": np.float64, "lines": np.int64}
            object.__setattr__(self, field, value.astype(dtypes[field]))
        if self.image_size is not None:
            width, height = self.image_size
            if not (width > 0 and height > 0):
                raise ValueError(f"sequence {self.name!r}: image_size must be positive (W, H), got {self.image_size}")


def gt_rows(gt: SequenceGT, frames: np.ndarray) -> str:
    """Where the ground-truth rows of 0-based `frames` are: `file:line, line, ...`, else 1-based frame numbers."""
    if gt.source is None or gt.lines is None:
        return f"frame(s) {(np.asarray(frames) + 1).tolist()} (1-based) of its ground truth"
    return f"{gt.source}:{', '.join(str(line) for line in gt.lines[frames])}"


@dataclass(frozen=True)
class SequenceCurves:
    """Per-sequence OPE curves, fractions in [0, 1] over `OVERLAP_THRESHOLDS` / `CENTER_THRESHOLDS` /
    `NORM_CENTER_THRESHOLDS`."""

    success: np.ndarray
    precision: np.ndarray
    norm_precision: np.ndarray


# --------------------------------------------------------------------------------------------------------------
# OPE (LaSOT MATLAB toolkit)


def _repair_predictions(pred: np.ndarray, gt: np.ndarray, broken: np.ndarray) -> np.ndarray:
    """Frames 2..N whose prediction is `broken` take the previous frame's (already repaired) prediction, unless
    the GT row has a NaN (the toolkit's and pytracking's repair; they differ only in what is broken).
    Vectorised as a forward fill from the last frame that is kept as is (frame 1 is never repaired)."""
    bad = broken & ~np.isnan(gt).any(axis=1)
    bad[:1] = False
    source = np.where(bad, 0, np.arange(len(pred)))
    np.maximum.accumulate(source, out=source)
    return pred[source]


def _inclusive_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU exactly as the toolkit's `calc_rect_int.m` computes it (inclusive-pixel arithmetic).

    np.fmin/np.fmax ignore NaN like MATLAB's min/max do, so NaN inputs give the toolkit's values too.
    """
    right_a, bottom_a = a[:, 0] + a[:, 2] - 1, a[:, 1] + a[:, 3] - 1
    right_b, bottom_b = b[:, 0] + b[:, 2] - 1, b[:, 1] + b[:, 3] - 1
    inter_w = np.fmax(0.0, np.fmin(right_a, right_b) - np.fmax(a[:, 0], b[:, 0]) + 1)
    inter_h = np.fmax(0.0, np.fmin(bottom_a, bottom_b) - np.fmax(a[:, 1], b[:, 1]) + 1)
    inter = inter_w * inter_h
    return inter / (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter)


def _centres(boxes: np.ndarray) -> np.ndarray:
    """Toolkit centre (x + (w - 1) / 2, y + (h - 1) / 2)."""
    return boxes[:, :2] + (boxes[:, 2:] - 1) / 2


def _non_empty(boxes: np.ndarray) -> np.ndarray:
    """Frames whose box has w > 0 and h > 0 (NaN counts as empty)."""
    return (boxes[:, 2] > 0) & (boxes[:, 3] > 0)


def _frame_errors(pred: np.ndarray, anno: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame IoU, centre error and normalised centre error, as both the toolkit and pytracking compute them
    (before either marks invalid frames). The normalised error divides each centre by the GT size before
    subtracting, as both do (this decides boundary cases)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = _inclusive_iou(pred, anno)
        centre_pred, centre_gt = _centres(pred), _centres(anno)
        err = np.sqrt(((centre_pred - centre_gt) ** 2).sum(axis=1))
        norm_err = np.sqrt(((centre_pred / anno[:, 2:] - centre_gt / anno[:, 2:]) ** 2).sum(axis=1))
    return iou, err, norm_err


def _curves(iou: np.ndarray, err: np.ndarray, norm_err: np.ndarray) -> SequenceCurves:
    """#(IoU > t), #(err <= d), #(norm_err <= d) over all frames, divided by the number of frames (NaN compares
    False everywhere, so NaN errors are failures, as in MATLAB and pytracking)."""
    n = len(iou)
    return SequenceCurves(
        success=(iou[:, None] > OVERLAP_THRESHOLDS[None, :]).sum(axis=0) / n,
        precision=(err[:, None] <= CENTER_THRESHOLDS[None, :]).sum(axis=0) / n,
        norm_precision=(norm_err[:, None] <= NORM_CENTER_THRESHOLDS[None, :]).sum(axis=0) / n,
    )


def ope_sequence_curves(
    pred_xywh: np.ndarray, gt: SequenceGT, *, coordinate_offset: float = 0.0, run_label: str = "results"
) -> SequenceCurves:
    """Success / precision / normalised-precision curves of one sequence (LaSOT toolkit `calc_seq_err_robust.m`
    + `eval_tracker.m`).

    `coordinate_offset` is added to the x, y of prediction and GT first, to undo a loader's shift (LaSOT is
    loaded 0-based; the toolkit's "x, y > 0" validity rule applies to the 1-based file coordinates).

    Ground-truth rows with a NaN are treated exactly as the toolkit treats them: its validity test
    (`rect_anno > 0` on all four values) is false for NaN, so such a frame is an IoU failure and a precision and
    normalised-precision hit (an absent frame stays a failure everywhere), and its prediction is not repaired. The
    same rule scores UAV123's NaN rows (frames without the target).
    """
    n = len(gt.boxes_xywh)
    pred = _as_boxes(pred_xywh, f"{run_label} of sequence {gt.name!r}")
    if len(pred) < n:
        raise ValueError(
            f"{run_label} of sequence {gt.name!r} have {len(pred)} boxes but the ground truth has {n} frames; "
            "re-run the tracker on this sequence"
        )
    offset = np.array([coordinate_offset, coordinate_offset, 0.0, 0.0])
    pred = pred[:n] + offset  # a longer result is cut to the GT length (the toolkit's monkey-17 rule)
    anno = gt.boxes_xywh + offset

    pred = _repair_predictions(pred, anno, np.isnan(pred).any(axis=1) | (pred[:, 2] <= 0) | (pred[:, 3] <= 0))
    pred[0] = anno[0]
    iou, err, norm_err = _frame_errors(pred, anno)

    # GT rows that are not all > 0 (NaN included): IoU failure, centre errors a hit (toolkit sets -1).
    gt_valid = (anno > 0).all(axis=1)
    iou[~gt_valid] = -1.0
    err[~gt_valid] = -1.0
    norm_err[~gt_valid] = -1.0
    # Absent frames are deleted by the toolkit but still counted in the denominator: a failure everywhere.
    if gt.visible is not None:
        iou[~gt.visible] = -np.inf
        err[~gt.visible] = np.inf
        norm_err[~gt.visible] = np.inf
    return _curves(iou, err, norm_err)


def _mean_over_sequences(curves: np.ndarray, what: str) -> np.ndarray:
    """Average (S, K) per-sequence curves. Like `plot_draw_save.m`, sequences whose curve sums to <= eps are
    left out (possible only when frame 1 is absent or has an invalid GT box and every other frame fails)."""
    kept = curves[curves.sum(axis=1) > np.finfo(np.float64).eps]
    if len(kept) == 0:
        raise ValueError(f"every sequence has an all-zero {what} curve; check the ground truth / visibility flags")
    return kept.mean(axis=0)


def _ope_scores(success: np.ndarray, precision: np.ndarray, norm_precision: np.ndarray) -> dict[str, float]:
    """Scalar scores (percent) read off (mean) curves."""
    return {
        "AUC": float(success.mean() * 100),
        "OP50": float(success[_OP50_INDEX] * 100),
        "OP75": float(success[_OP75_INDEX] * 100),
        "Precision": float(precision[_PRECISION_INDEX] * 100),
        "NormPrecision": float(norm_precision[_NORM_PRECISION_INDEX] * 100),
    }


def _check_names(results: Mapping[str, Sequence[np.ndarray]], gts: Sequence[SequenceGT]) -> None:
    """Results and GT must cover the same sequences (nothing silently skipped), each with at least one run."""
    arrays = sorted(name for name, runs in results.items() if isinstance(runs, np.ndarray))
    if arrays:
        raise TypeError(f"results must map each sequence to a list of runs (one array per run); got a bare array "
                        f"for: {', '.join(arrays)}")
    gt_names = [g.name for g in gts]
    if len(set(gt_names)) != len(gt_names):
        raise ValueError("duplicate sequence names in the ground truth list")
    missing = sorted(set(gt_names) - set(results))
    extra = sorted(set(results) - set(gt_names))
    empty = sorted(name for name in gt_names if name in results and len(results[name]) == 0)
    if missing or extra or empty:
        parts = []
        if missing:
            parts.append(f"no results for {len(missing)} sequence(s): {', '.join(missing)}")
        if extra:
            parts.append(f"results for sequences not in the dataset: {', '.join(extra)}")
        if empty:
            parts.append(f"an empty run list for: {', '.join(empty)}")
        raise ValueError("; ".join(parts) + " (run the tracker on the missing sequences or fix the dataset list)")


SequenceScorer = Callable[[np.ndarray, SequenceGT, str], SequenceCurves]


def _aggregate_ope(
    results: Mapping[str, Sequence[np.ndarray]], gts: Sequence[SequenceGT], sequence_curves: SequenceScorer,
    mean_over_sequences: Callable[[np.ndarray, str], np.ndarray],
) -> dict:
    """Curves of every run of every sequence (`sequence_curves(pred, gt, run_label)`), averaged over the runs
    of a sequence (pytracking `merge_results`, LoRAT `ope_metrics.py`), then over sequences; scores read off."""
    _check_names(results, gts)
    success, precision, norm_precision = [], [], []
    per_sequence = {}
    for gt in gts:
        runs = [sequence_curves(pred, gt, f"run {k} results") for k, pred in enumerate(results[gt.name])]
        success.append(np.mean([r.success for r in runs], axis=0))
        precision.append(np.mean([r.precision for r in runs], axis=0))
        norm_precision.append(np.mean([r.norm_precision for r in runs], axis=0))
        per_sequence[gt.name] = _ope_scores(success[-1], precision[-1], norm_precision[-1])
    curves = {
        "success": mean_over_sequences(np.array(success), "success"),
        "precision": mean_over_sequences(np.array(precision), "precision"),
        "norm_precision": mean_over_sequences(np.array(norm_precision), "normalised precision"),
    }
    return {**_ope_scores(curves["success"], curves["precision"], curves["norm_precision"]),
            "curves": curves, "per_sequence": per_sequence}


def evaluate_ope(
    results: Mapping[str, Sequence[np.ndarray]], gts: Sequence[SequenceGT], *, coordinate_offset: float = 0.0
) -> dict:
    """One-pass evaluation in the LaSOT toolkit convention.

    `results` maps sequence name -> one (N, 4) x,y,w,h prediction array per run. Each sequence's curves are
    averaged over its runs, then over sequences. Returns {'AUC', 'OP50', 'OP75', 'Precision', 'NormPrecision'}
    in percent, 'curves' (mean curves as fractions: 'success' (21,), 'precision' (51,), 'norm_precision' (51,))
    and 'per_sequence' {name: scores}.
    """
    def sequence_curves(pred: np.ndarray, gt: SequenceGT, run_label: str) -> SequenceCurves:
        return ope_sequence_curves(pred, gt, coordinate_offset=coordinate_offset, run_label=run_label)

    return _aggregate_ope(results, gts, sequence_curves, _mean_over_sequences)


# --------------------------------------------------------------------------------------------------------------
# OPE (pytracking convention: the code path of the published OSTrack / LoRAT tables)


def pytracking_sequence_curves(
    pred_xywh: np.ndarray, gt: SequenceGT, *, lasot_rules: bool = False, invalid_centre_is_hit: bool = False,
    coordinate_offset: float = 0.0, run_label: str = "results",
) -> SequenceCurves:
    """Curves of one sequence as pytracking's `calc_seq_err_robust` computes them with `stark_behavior=True` and
    `exclude_invalid_frames=False` (= upstream trackit/LoRAT's `one_pass_evaluation_compatible` handler).

    Unlike the toolkit: NaN / negative-size results are refused, only zero-size ones are repaired; a GT frame is
    valid when w, h > 0 and it is visible (x, y are not checked); invalid frames are IoU and precision failures
    but normalised-precision hits. `lasot_rules` and `invalid_centre_is_hit` are the branches pytracking keys on
    the dataset strings 'lasot' (a short result is an error rather than zero-padded; invisible frames fail both
    centre-error curves) and 'uav' (invalid frames are precision hits). `coordinate_offset` as in
    `ope_sequence_curves` (no rule here depends on x, y; it keeps the arithmetic on the file coordinates).
    A NaN GT row is an invalid frame here (pytracking itself refuses NaN ground truth outside 'uav').
    """
    n = len(gt.boxes_xywh)
    pred = _as_boxes(pred_xywh, f"{run_label} of sequence {gt.name!r}")
    refused = np.isnan(pred).any(axis=1) | (pred[:, 2:] < 0).any(axis=1)
    if refused.any():
        raise ValueError(
            f"{run_label} of sequence {gt.name!r} have NaN or negative w/h at frame(s) "
            f"{(np.flatnonzero(refused) + 1).tolist()} (1-based); pytracking refuses such results"
        )
    if lasot_rules and len(pred) < n:
        raise ValueError(
            f"{run_label} of sequence {gt.name!r} have {len(pred)} boxes but the ground truth has {n} frames; "
            "re-run the tracker on this sequence"
        )
    offset = np.array([coordinate_offset, coordinate_offset, 0.0, 0.0])
    pred = pred[:n] + offset
    anno = gt.boxes_xywh + offset

    pred = _repair_predictions(pred, anno[: len(pred)], (pred[:, 2] == 0) | (pred[:, 3] == 0))
    # A short result is padded after the repair, so the zero rows stay (failing) zero boxes.
    pred = np.concatenate([pred, np.zeros((n - len(pred), 4))])
    pred[0] = anno[0]
    iou, err, norm_err = _frame_errors(pred, anno)

    valid = _non_empty(anno) if gt.visible is None else _non_empty(anno) & gt.visible
    iou[~valid] = -1.0
    err[~valid] = -1.0 if invalid_centre_is_hit else np.inf
    norm_err[~valid] = -1.0  # a hit at every threshold: the quirk behind published LaSOT-ext / TNL2K NP
    if lasot_rules and gt.visible is not None:
        err[~gt.visible] = np.inf
        norm_err[~gt.visible] = np.inf
    return _curves(iou, err, norm_err)


def evaluate_ope_pytracking(
    results: Mapping[str, Sequence[np.ndarray]], gts: Sequence[SequenceGT], *, coordinate_offset: float = 0.0,
    lasot_rules: bool = False, invalid_centre_is_hit: bool = False,
) -> dict:
    """One-pass evaluation in the pytracking convention (`pytracking_sequence_curves`), output as `evaluate_ope`.

    Runs of a sequence are averaged first; then every sequence counts with equal weight (pytracking drops no
    all-zero curve). For comparison with published numbers only: it is not the benchmarks' official protocol.
    """
    def sequence_curves(pred: np.ndarray, gt: SequenceGT, run_label: str) -> SequenceCurves:
        return pytracking_sequence_curves(
            pred, gt, lasot_rules=lasot_rules, invalid_centre_is_hit=invalid_centre_is_hit,
            coordinate_offset=coordinate_offset, run_label=run_label,
        )

    return _aggregate_ope(results, gts, sequence_curves, lambda curves, _what: curves.mean(axis=0))


# --------------------------------------------------------------------------------------------------------------
# GOT-10k (got10k toolkit ExperimentGOT10k, val split)


def _clip_to_image(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """got10k `rect_iou(bound=...)`: x to [0, W], then w to [0, W - x]; same for y / h (on a copy)."""
    out = boxes.copy()
    out[:, 0] = np.clip(out[:, 0], 0, width)
    out[:, 1] = np.clip(out[:, 1], 0, height)
    out[:, 2] = np.clip(out[:, 2], 0, width - out[:, 0])
    out[:, 3] = np.clip(out[:, 3], 0, height - out[:, 1])
    return out


def _got10k_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """got10k `rect_iou`: continuous IoU over (union + eps), clipped to [0, 1]."""
    inter_w = np.maximum(np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0)
    inter_h = np.maximum(np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0)
    inter = inter_w * inter_h
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.clip(inter / (union + np.finfo(float).eps), 0.0, 1.0)


def got10k_sequence_ious(
    pred_xywh: np.ndarray, gt: SequenceGT, *, coordinate_offset: float = 0.0, run_label: str = "results"
) -> np.ndarray:
    """IoUs of frames 2..N with cover > 0, both boxes clipped to the image (got10k toolkit, one repetition)."""
    if gt.image_size is None or gt.cover is None:
        raise ValueError(
            f"sequence {gt.name!r}: the got10k protocol needs image_size (meta_info.ini resolution) and cover "
            "(cover.label); load the sequence with them"
        )
    pred = _as_boxes(pred_xywh, f"{run_label} of sequence {gt.name!r}")
    kept = gt.cover[1:] > 0
    gt_nan = np.flatnonzero(np.isnan(gt.boxes_xywh[1:]).any(axis=1) & kept) + 1
    if len(gt_nan):
        raise ValueError(
            f"the ground truth of sequence {gt.name!r} has NaN boxes at {gt_rows(gt, gt_nan)} on frames with "
            "cover > 0; the got10k toolkit would report AO = NaN, so fix that annotation file"
        )
    if pred.shape != gt.boxes_xywh.shape:
        raise ValueError(
            f"{run_label} of sequence {gt.name!r} have {len(pred)} boxes but the ground truth has "
            f"{len(gt.boxes_xywh)} frames (the got10k toolkit needs one box per frame, frame 1 included)"
        )
    offset = np.array([coordinate_offset, coordinate_offset, 0.0, 0.0])
    width, height = gt.image_size
    ious = _got10k_iou(_clip_to_image(pred[1:] + offset, width, height),
                       _clip_to_image(gt.boxes_xywh[1:] + offset, width, height))
    bad = np.flatnonzero(np.isnan(ious) & kept)
    if len(bad):
        raise ValueError(
            f"{run_label} of sequence {gt.name!r}: NaN boxes at frame(s) {(bad + 2).tolist()} (1-based); the got10k "
            "toolkit would report AO = NaN, so fix the result file"
        )
    return ious[kept]


def _got10k_success_curve(ious: np.ndarray) -> np.ndarray:
    """Fraction of IoUs > t for t in `GOT10K_THRESHOLDS` (no NaN in `ious`); sorted counting keeps memory at
    O(frames) for the ~700k pooled frames of a big evaluation."""
    above = len(ious) - np.searchsorted(np.sort(ious), GOT10K_THRESHOLDS, side="right")
    return above / len(ious)


def _got10k_scores(ious: np.ndarray) -> dict[str, float]:
    """AO, SR0.5 (IoU > 0.5) and SR0.75 (the 101-bin success curve at index 75), percent; NaN if no frames."""
    if len(ious) == 0:
        return {"AO": math.nan, "SR0.5": math.nan, "SR0.75": math.nan}
    curve = _got10k_success_curve(ious)
    return {"AO": float(ious.mean() * 100), "SR0.5": float((ious > 0.5).mean() * 100),
            "SR0.75": float(curve[_SR75_INDEX] * 100)}


def evaluate_got10k(
    results: Mapping[str, Sequence[np.ndarray]], gts: Sequence[SequenceGT], *, coordinate_offset: float = 0.0
) -> dict:
    """GOT-10k val in the got10k toolkit convention: the IoUs of all repetitions of all sequences are pooled.

    Returns {'AO', 'SR0.5', 'SR0.75'} in percent, 'curves' {'success': (101,) fractions over
    `GOT10K_THRESHOLDS`} and 'per_sequence' {name: {'AO', 'SR0.5', 'SR0.75', 'length'}} (repetitions pooled
    within the sequence, like the toolkit's seq_wise entries).
    """
    _check_names(results, gts)
    pooled = []
    per_sequence = {}
    for gt in gts:
        seq_ious = np.concatenate([
            got10k_sequence_ious(pred, gt, coordinate_offset=coordinate_offset, run_label=f"run {k} results")
            for k, pred in enumerate(results[gt.name])
        ])
        pooled.append(seq_ious)
        per_sequence[gt.name] = {**_got10k_scores(seq_ious), "length": len(gt.boxes_xywh) - 1}
    ious = np.concatenate(pooled)
    if len(ious) == 0:
        raise ValueError("no frame with cover > 0 after frame 1 in any sequence; check the cover.label files")
    return {**_got10k_scores(ious), "curves": {"success": _got10k_success_curve(ious)}, "per_sequence": per_sequence}


# --------------------------------------------------------------------------------------------------------------
# Registries


PROTOCOL_METRICS: dict[str, tuple[str, ...]] = {"ope": OPE_METRICS, "got10k": GOT10K_METRICS}


@dataclass(frozen=True)
class BenchmarkSpec:
    """How a dataset is scored: its protocols; the x, y shift that undoes the loader's shift of the annotation
    files (LaSOT files are 1-based and loaded with -1, as upstream trackit/LoRAT does); and whether frames with an
    empty GT box are absent when the loader gives no visibility flags (TNL2K's absent frames carry an empty box and
    are listed as absent in the toolkit's absent files — otherwise the toolkit's validity rule would count them as precision hits;
    toolkit convention only). The `pytracking_*` flags are pytracking's dataset-specific branches (see
    `pytracking_sequence_curves`): 'lasot' and 'uav' there."""

    protocols: tuple[str, ...]
    coordinate_offset: float = 0.0
    empty_gt_is_absent: bool = False
    pytracking_lasot_rules: bool = False
    pytracking_invalid_centre_is_hit: bool = False


BENCHMARKS: dict[str, BenchmarkSpec] = {
    "lasot": BenchmarkSpec(("ope",), coordinate_offset=1.0, pytracking_lasot_rules=True),
    "lasot_extension_subset": BenchmarkSpec(("ope",)),
    "tnl2k": BenchmarkSpec(("ope",), empty_gt_is_absent=True),
    "otb": BenchmarkSpec(("ope",)),
    "uav": BenchmarkSpec(("ope",), pytracking_invalid_centre_is_hit=True),
    "nfs": BenchmarkSpec(("ope",)),
    "tc128": BenchmarkSpec(("ope",)),
    # VastTrack: 1-based files loaded with -1 like LaSOT; upstream's compatible scorer applies the LaSOT rules to it
    "vasttrack": BenchmarkSpec(("ope",), coordinate_offset=1.0, pytracking_lasot_rules=True),
    "got10k_val": BenchmarkSpec(("got10k",)),
}
SERVER_SCORED: dict[str, str] = {
    "got10k_test": "GOT-10k test is scored by the GOT-10k evaluation server: pack the results and upload them",
    "trackingnet": "TrackingNet test is scored by the TrackingNet evaluation server: pack the results and upload them",
}
_SYNTHETIC_SPEC = BenchmarkSpec(("got10k", "ope"))  # GOT-10k layout, scored both ways
# Your own datasets (local.py's custom_datasets), scored by one-pass evaluation; get_dataset registers each name it
# reads, so scoring a custom dataset needs no edit here.
_CUSTOM_BENCHMARKS: dict[str, BenchmarkSpec] = {}


def register_custom_benchmark(dataset_name: str) -> None:
    """Score the custom dataset `dataset_name` with one-pass evaluation (ope); a benchmark's name is refused."""
    if dataset_name in BENCHMARKS or dataset_name in SERVER_SCORED or is_synthetic_name(dataset_name):
        raise ValueError(f"custom dataset name {dataset_name!r} is a benchmark's name; rename it in local.py")
    _CUSTOM_BENCHMARKS[dataset_name] = BenchmarkSpec(("ope",))


def benchmark_spec(dataset_name: str) -> BenchmarkSpec:
    """The scoring spec of a dataset name (`synthetic_<domain>_<split>` -> got10k and ope)."""
    if dataset_name in BENCHMARKS:
        return BENCHMARKS[dataset_name]
    if dataset_name in _CUSTOM_BENCHMARKS:
        return _CUSTOM_BENCHMARKS[dataset_name]
    if is_synthetic_name(dataset_name):
        parse_synthetic_name(dataset_name)  # a malformed name is an error here too
        return _SYNTHETIC_SPEC
    if dataset_name in SERVER_SCORED:
        raise ValueError(SERVER_SCORED[dataset_name])
    raise KeyError(
        f"no metric protocol for dataset {dataset_name!r}; known: {', '.join(sorted(BENCHMARKS))}, "
        f"{SYNTHETIC_NAME_FORM}"
    )


def _toolkit_ope(results: Mapping[str, Sequence[np.ndarray]], gts: Sequence[SequenceGT], spec: BenchmarkSpec) -> dict:
    if spec.empty_gt_is_absent:
        gts = [gt if gt.visible is not None else replace(gt, visible=_non_empty(gt.boxes_xywh)) for gt in gts]
    return evaluate_ope(results, gts, coordinate_offset=spec.coordinate_offset)


def _pytracking_ope(results: Mapping[str, Sequence[np.ndarray]], gts: Sequence[SequenceGT],
                    spec: BenchmarkSpec) -> dict:
    return evaluate_ope_pytracking(results, gts, coordinate_offset=spec.coordinate_offset,
                                   lasot_rules=spec.pytracking_lasot_rules,
                                   invalid_centre_is_hit=spec.pytracking_invalid_centre_is_hit)


def _got10k(results: Mapping[str, Sequence[np.ndarray]], gts: Sequence[SequenceGT], spec: BenchmarkSpec) -> dict:
    return evaluate_got10k(results, gts, coordinate_offset=spec.coordinate_offset)


Scorer = Callable[[Mapping[str, Sequence[np.ndarray]], Sequence[SequenceGT], BenchmarkSpec], dict]

# convention -> protocol -> scorer. "toolkit" (the default) is the official toolkits; "pytracking" is the code path
# behind the published OSTrack / LoRAT tables, for comparison with them only (GOT-10k is scored the same in both).
SCORERS: dict[str, dict[str, Scorer]] = {
    "toolkit": {"ope": _toolkit_ope, "got10k": _got10k},
    "pytracking": {"ope": _pytracking_ope, "got10k": _got10k},
}
CONVENTIONS = tuple(SCORERS)


def check_convention(convention: str) -> None:
    """Raise unless `convention` is one of `CONVENTIONS` (so callers can fail before reading any file)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown metric convention {convention!r}; use one of: {', '.join(CONVENTIONS)}")


def evaluate_dataset(
    dataset_name: str, results: Mapping[str, Sequence[np.ndarray]], gts: Sequence[SequenceGT],
    convention: str = "toolkit",
) -> dict[str, dict]:
    """Score one tracker on a dataset with every protocol the dataset uses, in `convention` (see `SCORERS`):
    {protocol: evaluator output}."""
    check_convention(convention)
    spec = benchmark_spec(dataset_name)
    return {protocol: SCORERS[convention][protocol](results, gts, spec) for protocol in spec.protocols}


# --------------------------------------------------------------------------------------------------------------
# Tables


def format_table(rows: Mapping[str, Mapping[str, object]], metrics: Sequence[str] | None = None,
                 decimals: int = 2) -> str:
    """Aligned text table, one row per tracker. `metrics` defaults to the scalar entries of the first row (so
    evaluator outputs can be passed as they are; their 'curves' / 'per_sequence' entries are skipped)."""
    if not rows:
        raise ValueError("format_table needs at least one row")
    if metrics is None:
        first = next(iter(rows.values()))
        metrics = [k for k, v in first.items() if isinstance(v, (int, float, np.floating, np.integer))]
    header = ["Tracker", *metrics]
    body = []
    for name, row in rows.items():
        missing = [m for m in metrics if m not in row]
        if missing:
            raise KeyError(f"row {name!r} lacks metric(s) {', '.join(missing)}")
        body.append([name, *(f"{float(row[m]):.{decimals}f}" for m in metrics)])
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join([cells[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))])

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in body)])
