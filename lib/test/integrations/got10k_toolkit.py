"""Run our tracker inside the PyPI `got10k` toolkit (https://github.com/got-10k/toolkit): its experiments
(`ExperimentGOT10k`, `ExperimentOTB`, `ExperimentLaSOT`, ...) call `init(image, box)` and `update(image)` with
PIL RGB images and 0-based `x, y, w, h` boxes, which is our tracker's convention.

```python
from got10k.experiments import ExperimentGOT10k
from lib.test.integrations.got10k_toolkit import Got10kTracker

tracker = Got10kTracker.from_checkpoint("output/checkpoints/train/lorat/base_224/base_224_final.pth")
experiment = ExperimentGOT10k("data/got10k", subset="val", result_dir="results", report_dir="reports")
experiment.run(tracker)
experiment.report([tracker.name])
```

The tracker is deterministic (no random state at test time), so the toolkit runs each sequence once.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from got10k.trackers import Tracker as ToolkitTracker

from lib.test.tracker.api import Tracker


class Got10kTracker(ToolkitTracker):
    """A `got10k.trackers.Tracker` around a `lib.test.tracker.api.Tracker`."""

    def __init__(self, tracker: Tracker, name: str) -> None:
        super().__init__(name=name, is_deterministic=True)
        self.tracker = tracker

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, device: str = "cpu", engine: str = "eager",
                        name: str | None = None, **kwargs: str) -> Got10kTracker:
        """Load `checkpoint` as `Tracker.from_checkpoint` does; the toolkit's name is `<script>_<config>` unless
        given."""
        tracker = Tracker.from_checkpoint(checkpoint, device=device, engine=engine, **kwargs)
        return cls(tracker, name or f"{tracker.spec.script}_{tracker.spec.config}")

    def init(self, image, box) -> None:
        self.tracker.initialize(np.asarray(image.convert("RGB")), np.asarray(box, dtype=np.float64))

    def update(self, image) -> np.ndarray:
        box, _score = self.tracker.track(np.asarray(image.convert("RGB")))
        return np.asarray(box, dtype=np.float64)
