"""Reference trackers with no learned weights: useful as sanity baselines and for testing the pipeline."""
from __future__ import annotations

import cv2
import numpy as np

from lib.config import ExperimentConfig
from lib.test.tracker import TrackerSpec, validated_init_box


class StaticTracker:
    """Reports the first box on every frame (the 'no motion' baseline)."""

    def __init__(self) -> None:
        self._box: np.ndarray | None = None

    def initialize(self, image: np.ndarray, box_xywh: np.ndarray) -> None:
        self._box = validated_init_box(image, box_xywh)

    def track(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        if self._box is None:
            raise RuntimeError("StaticTracker.track() called before initialize()")
        return self._box.copy(), 1.0


# Tracker script -> the OpenCV factory of that tracker. MIL is in every OpenCV build; CSRT and KCF come with the
# contrib build (opencv-contrib-python-headless, which requirements.txt installs).
OPENCV_TRACKERS: dict[str, str] = {"opencv_mil": "TrackerMIL_create", "opencv_csrt": "TrackerCSRT_create",
                                   "opencv_kcf": "TrackerKCF_create"}


class OpenCVTracker:
    """One of OpenCV's classic trackers; keeps the last box (confidence 0) on frames where OpenCV reports a loss."""

    def __init__(self, factory: str) -> None:
        if not hasattr(cv2, factory):
            raise RuntimeError(f"this OpenCV build ({cv2.__version__}) has no cv2.{factory}: CSRT and KCF are in the "
                               f"contrib build; pip uninstall opencv-python-headless && pip install "
                               f"opencv-contrib-python-headless")
        self._factory = getattr(cv2, factory)
        self._tracker = None
        self._box: np.ndarray | None = None

    def initialize(self, image: np.ndarray, box_xywh: np.ndarray) -> None:
        self._box = validated_init_box(image, box_xywh)
        x, y, w, h = (int(round(v)) for v in self._box)
        self._tracker = self._factory()
        self._tracker.init(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), (x, y, max(w, 1), max(h, 1)))

    def track(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        if self._tracker is None:
            raise RuntimeError("OpenCVTracker.track() called before initialize()")
        ok, rect = self._tracker.update(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if not ok:
            return self._box.copy(), 0.0
        self._box = np.asarray(rect, dtype=np.float64)
        return self._box.copy(), 1.0


def build_static(cfg: ExperimentConfig | None, spec: TrackerSpec) -> StaticTracker:
    return StaticTracker()


def build_opencv(cfg: ExperimentConfig | None, spec: TrackerSpec) -> OpenCVTracker:
    return OpenCVTracker(OPENCV_TRACKERS[spec.script])
