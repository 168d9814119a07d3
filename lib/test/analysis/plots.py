"""Success / precision / normalised-precision plots of OPE curves, drawn like the LaSOT toolkit's
`plot_draw_save.m`: trackers sorted by score, legend entries "[score] name", PNG and PDF files.

Uses matplotlib's object API with the Agg canvas (no pyplot state, no LaTeX), writes atomically.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lib.test.analysis.metrics import CENTER_THRESHOLDS, NORM_CENTER_THRESHOLDS, OVERLAP_THRESHOLDS
from lib.utils.io import atomic_write_bytes

_LINE_STYLES = ("-", "--", "-.")
_COLORS = matplotlib.colormaps["tab10"].colors
FORMATS = ("png", "pdf")


@dataclass(frozen=True)
class PlotKind:
    """One plot type: x grid of its curve, how the legend score is read off the curve, and the labels."""

    thresholds: np.ndarray
    score: Callable[[np.ndarray], float]
    title: str
    xlabel: str
    ylabel: str
    legend_loc: str
    file_stem: str


# Success ranked by the curve mean (AUC), the others by the value at index 20 (20 px / 0.20), as the toolkit.
PLOT_KINDS: dict[str, PlotKind] = {
    "success": PlotKind(OVERLAP_THRESHOLDS, lambda c: float(np.mean(c)), "Success plots of OPE on {}",
                        "Overlap threshold", "Success rate", "upper right", "success_plot"),
    "precision": PlotKind(CENTER_THRESHOLDS, lambda c: float(c[20]), "Precision plots of OPE on {}",
                          "Location error threshold", "Precision", "upper left", "precision_plot"),
    "norm_precision": PlotKind(NORM_CENTER_THRESHOLDS, lambda c: float(c[20]),
                               "Normalized precision plots of OPE on {}", "Normalized location error threshold",
                               "Normalized precision", "upper left", "norm_precision_plot"),
}


def _draw(kind: PlotKind, curves: Mapping[str, np.ndarray], dataset_name: str) -> Figure:
    """One figure with every tracker's curve, best score first."""
    ranked = sorted(curves.items(), key=lambda item: kind.score(item[1]), reverse=True)
    fig = Figure(figsize=(7.0, 6.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (name, curve) in enumerate(ranked):
        ax.plot(kind.thresholds, curve, color=_COLORS[i % len(_COLORS)],
                linestyle=_LINE_STYLES[(i // len(_COLORS)) % len(_LINE_STYLES)], linewidth=2.5,
                label=f"[{kind.score(curve):.3f}] {name}")
    ax.set_xlim(kind.thresholds[0], kind.thresholds[-1])
    ax.set_ylim(0.0, 1.0)
    ax.grid(True, linestyle=":", color="k", linewidth=0.8)
    ax.set_title(kind.title.format(dataset_name), fontsize=14)
    ax.set_xlabel(kind.xlabel, fontsize=13)
    ax.set_ylabel(kind.ylabel, fontsize=13)
    ax.legend(loc=kind.legend_loc, fontsize=9)
    fig.tight_layout()
    return fig


def save_plots(curves: Mapping[str, Mapping[str, np.ndarray]], dataset_name: str, out_dir: str | Path) -> list[Path]:
    """Write success, precision and normalised-precision plots (PNG and PDF) into `out_dir`.

    `curves` maps tracker name -> the 'curves' entry of `evaluate_ope` ({'success': (21,), 'precision': (51,),
    'norm_precision': (51,)} fractions). Returns the written paths.
    """
    if not curves:
        raise ValueError("save_plots needs the curves of at least one tracker")
    for name, tracker_curves in curves.items():
        for key, kind in PLOT_KINDS.items():
            if key not in tracker_curves:
                raise KeyError(f"tracker {name!r} has no {key!r} curve (pass evaluate_ope(...)['curves'])")
            if np.shape(tracker_curves[key]) != kind.thresholds.shape:
                raise ValueError(f"tracker {name!r}: {key!r} curve has shape {np.shape(tracker_curves[key])}, "
                                 f"expected {kind.thresholds.shape}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with matplotlib.rc_context({"text.usetex": False}):
        for key, kind in PLOT_KINDS.items():
            fig = _draw(kind, {name: np.asarray(c[key], dtype=np.float64) for name, c in curves.items()},
                        dataset_name)
            for fmt in FORMATS:
                buffer = io.BytesIO()
                fig.savefig(buffer, format=fmt)
                path = out_dir / f"{kind.file_stem}.{fmt}"
                atomic_write_bytes(path, buffer.getvalue())
                written.append(path)
    return written
