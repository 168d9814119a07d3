"""Track one video from Python with a trained checkpoint, no script or config name needed:

```python
from lib.test.tracker.api import Tracker

tracker = Tracker.from_checkpoint("output/checkpoints/train/lorat/base_224/base_224_final.pth", device="cpu")
tracker.initialize(first_frame, (x, y, w, h))  # RGB uint8 HxWx3 (numpy), box in pixels
box, score = tracker.track(next_frame)  # (x, y, w, h) floats, confidence
```

This project's exports (`{"format", "config", "model"}`, written by the trainer) and training checkpoints record
the experiment config they were trained with; it names the script and config, and the tracker is built through the
registry (`resolve_spec` -> `build_tracker`) exactly as `tracking/test.py` builds it. Files without a recorded
config (official LoRAT / LoRATv2 releases) need `script=` and `config=`, e.g. `Tracker.from_checkpoint(
"p2.safetensors", script="loratv2", config="p2_base_378", base_checkpoint="p1.safetensors")`.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from lib.config import ExperimentConfig, load_experiment
from lib.models import read_state_dict
from lib.test.tracker import Tracker as TrackerProtocol
from lib.test.tracker import TrackerSpec, build_tracker, resolve_spec


def recorded_config(checkpoint: str | Path) -> ExperimentConfig | None:
    """The experiment config a checkpoint of this project records, or None (e.g. an official release)."""
    _, extras = read_state_dict(checkpoint)
    config = extras.get("config")
    return ExperimentConfig.from_dict(config, source=str(checkpoint)) if isinstance(config, dict) else None


def _check_same_settings(recorded: ExperimentConfig, checkpoint: str | Path) -> None:
    """The tracker is built from experiments/<script>/<config>.yaml: its model and test settings must still be the
    ones the checkpoint was trained with, or the tracker would silently differ from the trained one."""
    current = load_experiment(recorded.script, recorded.name)
    for section in ("model", "test"):
        was, now = asdict(getattr(recorded, section)), asdict(getattr(current, section))
        changed = sorted(k for k in was if was[k] != now.get(k))
        if changed:
            raise ValueError(
                f"{checkpoint} was trained with {section} settings that experiments/{recorded.script}/"
                f"{recorded.name}.yaml no longer has ({', '.join(f'{section}.{k}: {was[k]!r} -> {now.get(k)!r}' for k in changed)}); "
                f"restore those values in the YAML, or save the changed config under a new name"
            )


class Tracker:
    """A tracker for one video at a time; `initialize` again to start on another target or video."""

    def __init__(self, tracker: TrackerProtocol, spec: TrackerSpec) -> None:
        self._tracker = tracker
        self.spec = spec

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, device: str = "cpu", engine: str = "eager",
                        backbone_weights: str | None = None, script: str | None = None,
                        config: str | None = None, base_checkpoint: str | None = None) -> Tracker:
        """Load `checkpoint` once; its recorded config names the script and config unless `script`/`config` do.
        `base_checkpoint`: the phase-1 file an official LoRATv2 phase-2 release needs (script='loratv2')."""
        if (script is None) != (config is None):
            raise ValueError("give both script= and config= (e.g. script='lorat', config='base_224'), or neither")
        if script is None:
            recorded = recorded_config(checkpoint)
            if recorded is None:
                raise ValueError(f"{checkpoint} records no experiment config (not one of this project's exports); "
                                 f"name it: Tracker.from_checkpoint(path, script='lorat', config='base_224')")
            _check_same_settings(recorded, checkpoint)
            script, config = recorded.script, recorded.name
        spec = resolve_spec(script, config, checkpoint=str(checkpoint), backbone_weights=backbone_weights,
                            device=device, engine=engine, base_checkpoint=base_checkpoint)
        return cls(build_tracker(spec), spec)

    def initialize(self, frame: np.ndarray, box_xywh: tuple[float, float, float, float] | np.ndarray) -> None:
        """Start on RGB uint8 `frame` (H, W, 3) with the target's box `x, y, w, h` in pixels (0-based)."""
        self._tracker.initialize(_rgb(frame), np.asarray(box_xywh, dtype=np.float64))

    def track(self, frame: np.ndarray) -> tuple[tuple[float, float, float, float], float]:
        """The target's box `(x, y, w, h)` in the next RGB frame and the tracker's confidence."""
        box, score = self._tracker.track(_rgb(frame))
        x, y, w, h = (float(v) for v in box)
        return (x, y, w, h), float(score)


def _rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frames must be RGB uint8 arrays of shape (H, W, 3), got {frame.dtype} {frame.shape} "
                         f"(convert OpenCV's BGR with cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))")
    return frame if frame.flags.writeable else frame.copy()  # e.g. np.asarray(PIL image) is read-only; torch warns
