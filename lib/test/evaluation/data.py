"""`Sequence`: one test video as the runner, the analysis and the packers see it."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image


@dataclass(frozen=True, eq=False)
class Sequence:
    """A test sequence.

    `ground_truth_rect` is float64 `(N, 4)` `x, y, w, h` in the project's 0-based continuous coordinates
    (LaSOT is already shifted by -1); for GOT-10k test and TrackingNet only row 0 is known (shape `(1, 4)`).
    `file_offset` is what result files add to `x, y` so they use the dataset's own convention (1 for LaSOT,
    whose toolkit and published raw results are 1-based; 0 elsewhere) — see `lib.test.evaluation.results`.
    `visible` (N,) bool and `cover` (N,) int are present only where the dataset provides them.
    `gt_source` is the annotation file the ground truth was read from and `gt_lines` (N,) the 1-based line of each
    row, so that a problem found in the ground truth later (when scoring) names the file and line to fix.
    """

    name: str
    frames: tuple[str, ...]
    dataset: str
    ground_truth_rect: np.ndarray
    visible: np.ndarray | None = None
    cover: np.ndarray | None = None
    file_offset: float = 0.0
    gt_source: str | None = None
    gt_lines: np.ndarray | None = None

    def __post_init__(self) -> None:
        gt = self.ground_truth_rect
        if gt.ndim != 2 or gt.shape[1] != 4 or gt.shape[0] not in (1, len(self.frames)):
            raise ValueError(
                f"sequence {self.dataset}/{self.name}: ground truth has shape {gt.shape}, expected (1, 4) or "
                f"({len(self.frames)}, 4) for {len(self.frames)} frames; check its annotation file"
            )
        if self.gt_lines is not None and self.gt_lines.shape != (len(gt),):
            raise ValueError(
                f"sequence {self.dataset}/{self.name}: {len(self.gt_lines)} line numbers for {len(gt)} ground-truth rows"
            )
        for label, flags in (("visible", self.visible), ("cover", self.cover)):
            if flags is not None and flags.shape != (len(self.frames),):
                raise ValueError(
                    f"sequence {self.dataset}/{self.name}: {label} flags have shape {flags.shape}, expected "
                    f"({len(self.frames)},); check its label files"
                )

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def init_box(self) -> np.ndarray:
        """The frame-0 box `x, y, w, h` (the only ground truth a tracker may see)."""
        return self.ground_truth_rect[0].copy()

    @cached_property
    def image_size(self) -> tuple[int, int]:
        """`(W, H)` of frame 0, read lazily from the image header (no decoding)."""
        try:
            with Image.open(self.frames[0]) as image:
                return image.size
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the size of {self.frames[0]} ({exc}); check that frame") from exc
