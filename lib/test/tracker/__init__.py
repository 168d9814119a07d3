"""Tracker protocol and registry: script name -> builder import path (imported only when used).

A tracker sees the ground truth of frame 0 only (`initialize`); every later frame gets just the image.
Builders have the signature `(config_name, checkpoint, backbone_weights, device) -> Tracker`.
"""
from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import Protocol

import numpy as np


class Tracker(Protocol):
    def initialize(self, image: np.ndarray, box_xywh: np.ndarray) -> None:
        """Start (or restart) tracking on RGB uint8 `image` with the target box `x, y, w, h`."""

    def track(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Box `x, y, w, h` (float array of shape (4,)) and confidence for the next frame."""


TRACKER_BUILDERS: MappingProxyType[str, str] = MappingProxyType(
    {
        "lorat": "lib.test.tracker.lorat:build_tracker",
        "static": "lib.test.tracker.baselines:build_static",
        "opencv_mil": "lib.test.tracker.baselines:build_mil",
    }
)


def build_tracker(
    script: str, config: str, checkpoint: str | None = None, backbone_weights: str | None = None, device: str = "cpu"
) -> Tracker:
    """Import the builder registered for `script` and build the tracker."""
    if script not in TRACKER_BUILDERS:
        raise KeyError(f"unknown tracker script {script!r}; registered: {', '.join(TRACKER_BUILDERS)}")
    module_name, function_name = TRACKER_BUILDERS[script].split(":")
    builder = getattr(importlib.import_module(module_name), function_name)
    return builder(config, checkpoint, backbone_weights, device)
