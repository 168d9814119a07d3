"""Plots: PNG and PDF files written for the three OPE curves, legend ranked by score."""
from __future__ import annotations

import numpy as np
import pytest

from lib.test.analysis.metrics import SequenceGT, evaluate_ope
from lib.test.analysis.plots import PLOT_KINDS, _draw, save_plots


def _curves(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    boxes = np.column_stack([rng.integers(5, 100, 30), rng.integers(5, 100, 30),
                             rng.integers(10, 40, 30), rng.integers(10, 40, 30)]).astype(float)
    pred = boxes + rng.normal(0, 3 + 5 * seed, boxes.shape)
    return evaluate_ope({"s": [pred]}, [SequenceGT("s", boxes)])["curves"]


def test_save_plots_writes_png_and_pdf(tmp_path):
    curves = {"good": _curves(0), "bad": _curves(3)}
    written = save_plots(curves, "LaSOT", tmp_path / "plots" / "lasot")
    names = sorted(p.name for p in written)
    assert names == sorted(f"{k.file_stem}.{fmt}" for k in PLOT_KINDS.values() for fmt in ("png", "pdf"))
    for path in written:
        data = path.read_bytes()
        assert len(data) > 1000
        assert data.startswith(b"\x89PNG") if path.suffix == ".png" else data.startswith(b"%PDF")
    assert not [p for p in (tmp_path / "plots" / "lasot").iterdir() if p.name.endswith(".tmp")]


def test_legend_is_sorted_by_score_with_score_in_label():
    worse = {"success": np.r_[np.full(20, 0.4), 0.0]}
    better = {"success": np.r_[np.full(20, 0.6), 0.0]}
    fig = _draw(PLOT_KINDS["success"], {"worse": worse["success"], "better": better["success"]}, "X")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == [f"[{0.6 * 20 / 21:.3f}] better", f"[{0.4 * 20 / 21:.3f}] worse"]
    # Precision plots rank by the value at 20 px, not by the curve mean.
    early = np.r_[np.full(21, 0.1), np.full(30, 1.0)]  # high mean, low at 20 px
    late = np.r_[np.zeros(20), np.full(31, 0.5)]
    fig = _draw(PLOT_KINDS["precision"], {"early": early, "late": late}, "X")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["[0.500] late", "[0.100] early"]


def test_save_plots_rejects_incomplete_curves(tmp_path):
    with pytest.raises(KeyError, match="'t'.*precision"):
        save_plots({"t": {"success": np.zeros(21)}}, "LaSOT", tmp_path)
    with pytest.raises(ValueError, match="'t'.*success"):
        save_plots({"t": {"success": np.zeros(5), "precision": np.zeros(51), "norm_precision": np.zeros(51)}},
                   "LaSOT", tmp_path)
