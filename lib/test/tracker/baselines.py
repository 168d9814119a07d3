"""Reference trackers with no learned weights: useful as sanity baselines and for testing the pipeline."""
from __future__ import annotations

import cv2
import numpy as np


def _check_no_weights(name: str, checkpoint: str | None, backbone_weights: str | None) -> None:
    if checkpoint or backbone_weights:
        raise ValueError(f"the {name} baseline has no weights; drop --checkpoint/--backbone_weights")


def _validated_box(box_xywh: np.ndarray) -> np.ndarray:
    box = np.asarray(box_xywh, dtype=np.float64).reshape(4)
    if not np.all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"initial box {box.tolist()} must be finite with positive width and height")
    return box


class StaticTracker:
    """Reports the first box on every frame (the 'no motion' baseline)."""

    def __init__(self) -> None:
        self._box: np.ndarray | None = None

    def initialize(self, image: np.ndarray, box_xywh: np.ndarray) -> None:
        self._box = _validated_box(box_xywh)

    def track(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        if self._box is None:
            raise RuntimeError("StaticTracker.track() called before initialize()")
        return self._box.copy(), 1.0


class MILTracker:
    """OpenCV's MIL tracker; keeps the last box (confidence 0) on frames where OpenCV reports a loss."""

    def __init__(self) -> None:
        self._tracker = None
        self._box: np.ndarray | None = None

    def initialize(self, image: np.ndarray, box_xywh: np.ndarray) -> None:
        self._box = _validated_box(box_xywh)
        x, y, w, h = (int(round(v)) for v in self._box)
        self._tracker = cv2.TrackerMIL_create()
        self._tracker.init(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), (x, y, max(w, 1), max(h, 1)))

    def track(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        if self._tracker is None:
            raise RuntimeError("MILTracker.track() called before initialize()")
        ok, rect = self._tracker.update(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if not ok:
            return self._box.copy(), 0.0
        self._box = np.asarray(rect, dtype=np.float64)
        return self._box.copy(), 1.0


def build_static(config_name: str, checkpoint: str | None, backbone_weights: str | None, device: str) -> StaticTracker:
    _check_no_weights("static", checkpoint, backbone_weights)
    return StaticTracker()


def build_mil(config_name: str, checkpoint: str | None, backbone_weights: str | None, device: str) -> MILTracker:
    _check_no_weights("opencv_mil", checkpoint, backbone_weights)
    return MILTracker()
