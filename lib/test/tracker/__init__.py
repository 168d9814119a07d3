"""Tracker protocol, registry and explicit construction.

A tracker sees the ground truth of frame 0 only (`initialize`); every later frame gets just the image.

Construction has two steps so that nothing is looked up behind the caller's back:

```python
spec = resolve_spec("lorat", "base_224", checkpoint=None, device="cuda", save_dir=env.save_dir,
                    engine="eager")  # the CLI's job
tracker = build_tracker(spec)  # in each worker; uses exactly the files named in spec
record = producer_record(spec)  # what the results folder records about the run
```

Trackers with learned weights (`TrackerKind.learned`) are the LoRAT family: their configs are
`experiments/<script>/<config>.yaml`, their weights resolve and load through `lib.test.tracker.lorat`, and a new
script (an ablation) reuses that tracker class by registering its name here with its own configs. LoRATv2
(`lib.test.tracker.loratv2`) has its own streaming tracker, the same weight resolution, and one more weight file:
the phase-1 checkpoint an official phase-2 file builds on (`TrackerSpec.base_checkpoint`).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from lib.utils.boxes import intersects_image, xywh_to_xyxy

if TYPE_CHECKING:
    from lib.config import ExperimentConfig

RANDOM_WEIGHTS = "random"
# Engines that drive a model through its streaming calls (init / update / track with a KV cache) rather than one
# exported forward: plain PyTorch in fp32 / test.amp, or the whole model cast to fp16 / bf16.
STREAMING_ENGINES = ("eager", "fp16", "bf16")
NO_WEIGHTS = "none (baseline without learned weights)"
_HASH_CHUNK = 1 << 20


class Tracker(Protocol):
    def initialize(self, image: np.ndarray, box_xywh: np.ndarray) -> None:
        """Start (or restart) tracking on RGB uint8 `image` with the target box `x, y, w, h`."""

    def track(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Box `x, y, w, h` (float array of shape (4,)) and confidence for the next frame."""


class BatchTracker(Tracker, Protocol):
    """A tracker that also follows several sequences in lockstep (tracking/test.py --batch_sequences)."""

    def start(self, image: np.ndarray, box_xywh: np.ndarray) -> Any:
        """A new sequence's state (its `initialize`), kept by the caller and passed back to `track_batch`."""

    def track_batch(self, states: list[Any], images: list[np.ndarray]) -> list[tuple[np.ndarray, float]]:
        """Box `x, y, w, h` and confidence for the next frame of each state's sequence, in one step."""

    def release(self, state: Any) -> None:
        """The state's sequence has ended (finished or failed): free what the tracker holds for it."""


@dataclass(frozen=True)
class TrackerSpec:
    """A fully resolved tracker (picklable strings, sent to the runner's workers).

    `checkpoint`: a weights file, `RANDOM_WEIGHTS`, or None for trackers without learned weights;
    `backbone_weights`: the pretrained backbone file the model is built on (None: none needed, or random);
    `engine`: how the model runs (lib.models.engines.ENGINES; baselines have no model and take only "eager");
    `base_checkpoint`: the phase-1 file that an official LoRATv2 phase-2 checkpoint needs (it lacks the frozen
    template and reference experts); None otherwise.
    """

    script: str
    config: str
    checkpoint: str | None = None
    backbone_weights: str | None = None
    device: str = "cpu"
    engine: str = "eager"
    base_checkpoint: str | None = None


@dataclass(frozen=True)
class TrackerKind:
    """`builder` ("module:function", imported only when used) is called as `builder(cfg, spec)`; `cfg` is the
    loaded `experiments/<script>/<config>.yaml` for learned trackers and None for baselines. `engines`: the
    engines the tracker can run (None: every one of lib.models.engines.ENGINES); `base_checkpoint`: whether its
    weights may come in two files (`TrackerSpec.base_checkpoint`)."""

    builder: str
    learned: bool
    engines: tuple[str, ...] | None = None
    base_checkpoint: bool = False


TRACKER_BUILDERS: MappingProxyType[str, TrackerKind] = MappingProxyType(
    {
        "lorat": TrackerKind("lib.test.tracker.lorat:build_tracker", learned=True),
        "lorat_ablation": TrackerKind("lib.test.tracker.lorat:build_tracker", learned=True),
        "lorat_timm": TrackerKind("lib.test.tracker.lorat:build_tracker", learned=True),
        "loratv2": TrackerKind("lib.test.tracker.loratv2:build_tracker", learned=True, engines=STREAMING_ENGINES,
                               base_checkpoint=True),
        "static": TrackerKind("lib.test.tracker.baselines:build_static", learned=False),
        "opencv_mil": TrackerKind("lib.test.tracker.baselines:build_opencv", learned=False),
        "opencv_csrt": TrackerKind("lib.test.tracker.baselines:build_opencv", learned=False),
        "opencv_kcf": TrackerKind("lib.test.tracker.baselines:build_opencv", learned=False),
    }
)


def tracker_kind(script: str) -> TrackerKind:
    if script not in TRACKER_BUILDERS:
        raise KeyError(f"unknown tracker script {script!r}; registered: {', '.join(TRACKER_BUILDERS)}")
    return TRACKER_BUILDERS[script]


def _experiment(spec: TrackerSpec) -> ExperimentConfig:
    from lib.config import load_experiment

    return load_experiment(spec.script, spec.config)


def _checked_kind(spec: TrackerSpec) -> TrackerKind:
    kind = tracker_kind(spec.script)
    if not kind.learned and (spec.checkpoint or spec.backbone_weights):
        raise ValueError(f"the {spec.script} baseline has no weights; drop --checkpoint/--backbone_weights")
    if not kind.learned and spec.engine != "eager":
        raise ValueError(f"the {spec.script} baseline has no model to run with engine {spec.engine!r}; drop --engine")
    if spec.base_checkpoint is not None and not kind.base_checkpoint:
        raise ValueError(f"--base_checkpoint is for LoRATv2 phase-2 files only; {spec.script} loads its weights "
                         f"from --checkpoint alone: drop --base_checkpoint")
    if kind.learned:
        from lib.models.engines import EngineError, engine_kind

        engine_kind(spec.engine)  # an unknown name is an error here, before any work
        if kind.engines is not None and spec.engine not in kind.engines:
            raise EngineError(f"{spec.script} runs its model step by step with a KV cache, which engine "
                              f"{spec.engine!r} does not support; use one of {', '.join(kind.engines)}")
    return kind


def resolve_spec(script: str, config: str, checkpoint: str | None = None, backbone_weights: str | None = None,
                 device: str = "cpu", save_dir: str | Path | None = None, engine: str = "eager",
                 base_checkpoint: str | None = None) -> TrackerSpec:
    """Fill in the weights a CLI leaves implicit, from the caller's paths only.

    Learned trackers without `checkpoint` use the trainer's output under `save_dir` (`<save_dir>/checkpoints/train/
    <script>/<config>/`); a checkpoint holding only LoRA/head weights gets the config's pretrained backbone file
    unless `backbone_weights` names one. Baselines refuse weights; `base_checkpoint` is accepted only by trackers
    registered with `base_checkpoint=True` (LoRATv2).
    """
    spec = TrackerSpec(script, config, checkpoint, backbone_weights, device, engine, base_checkpoint)
    if not _checked_kind(spec).learned:
        return spec
    from lib.test.tracker.lorat import resolve_weights

    return resolve_weights(spec, _experiment(spec), save_dir)


def build_tracker(spec: TrackerSpec) -> Tracker:
    """Build the tracker registered for `spec.script` with exactly the weights named in `spec`, on `spec.device`."""
    kind = _checked_kind(spec)
    if kind.learned and spec.checkpoint is None:
        raise ValueError(f"{spec.script}/{spec.config}: no checkpoint in the tracker spec; resolve_spec() finds the "
                         f"default one, or name a file (or {RANDOM_WEIGHTS!r})")
    module_name, function_name = kind.builder.split(":")
    builder = getattr(importlib.import_module(module_name), function_name)
    return builder(_experiment(spec) if kind.learned else None, spec)


def add_tracker_arguments(parser: argparse.ArgumentParser, checkpoint_required: bool = False) -> None:
    """The options of every tool that builds a tracker (test.py, video_demo.py, the VOT set-up and server):
    weights, backbone file, device and inference engine, spelled and checked the same way everywhere."""
    from lib.models.engines import ENGINE_NAMES  # imports torch: only for the tools that build trackers

    default = "" if checkpoint_required else " (default: the trained one under the save_dir of --env_file)"
    parser.add_argument("--checkpoint", required=checkpoint_required, default=None,
                        help=f"tracker checkpoint file (e.g. <config>_final.pth), or {RANDOM_WEIGHTS!r}{default}")
    parser.add_argument("--backbone_weights", default=None,
                        help="backbone (e.g. DINOv2) weights file, for checkpoints that hold only LoRA/head weights")
    parser.add_argument("--base_checkpoint", default=None,
                        help="LoRATv2 only: the phase-1 checkpoint that an official phase-2 file (which lacks the "
                             "frozen template and reference experts) builds on; not needed for this project's own "
                             "phase-2 checkpoints, which are self-contained")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--engine", default="eager", choices=ENGINE_NAMES,
                        help="how the model runs (lib/models/engines.py); default: eager (fp32, or test.amp on CUDA)")


def spec_from_args(args: argparse.Namespace, save_dir: str | Path | None = None) -> TrackerSpec:
    """`resolve_spec` from the options of `add_tracker_arguments` (plus `args.script` / `args.config`): every tool
    reads them here, so an option can never be shown by a tool and then ignored by it."""
    return resolve_spec(args.script, args.config, checkpoint=args.checkpoint, backbone_weights=args.backbone_weights,
                        device=args.device, save_dir=save_dir, engine=args.engine,
                        base_checkpoint=args.base_checkpoint)


def spec_arguments(spec: TrackerSpec) -> list[str]:
    """The `add_tracker_arguments` options (with --script/--config) that give back `spec` through
    `spec_from_args`: for commands that start a tracker in another process (the VOT toolkit's)."""
    args = ["--script", spec.script, "--config", spec.config, "--checkpoint", str(spec.checkpoint),
            "--engine", spec.engine, "--device", spec.device]
    for option, value in (("--backbone_weights", spec.backbone_weights), ("--base_checkpoint", spec.base_checkpoint)):
        if value is not None:
            args += [option, value]
    return args


def validated_init_box(image: np.ndarray, box_xywh: np.ndarray) -> np.ndarray:
    """The initial box as float64 `x, y, w, h`: finite, positive width and height, overlapping `image`."""
    box = np.asarray(box_xywh, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"initial box {np.asarray(box_xywh).tolist()} must be x, y, w, h: finite with positive "
                         f"width and height")
    height, width = image.shape[:2]
    if not intersects_image(xywh_to_xyxy(box), (width, height)):
        raise ValueError(f"initial box {box.tolist()} (x, y, w, h) lies outside the {width}x{height} image; "
                         f"it must overlap the image")
    return box


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (multi-GB checkpoints never sit in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def code_version() -> str | None:
    """`git describe --always --dirty` of this checkout, or None outside git."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).resolve().parents[3],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def producer_record(spec: TrackerSpec) -> dict[str, Any]:
    """What produces results with `spec`: tracker, resolved config, weight files with their SHA-256, device type,
    engine and the precision it computes in, plus the code version and command (shown, not compared; see
    results.PRODUCER_IDENTITY)."""
    kind = tracker_kind(spec.script)
    record: dict[str, Any] = {"tracker": spec.script, "config_name": spec.config, "config": None,
                              "checkpoint": NO_WEIGHTS, "checkpoint_sha256": None, "backbone_weights": None,
                              "backbone_weights_sha256": None, "base_checkpoint": None,
                              "base_checkpoint_sha256": None, "device": None, "engine": None, "precision": None}
    if kind.learned:
        from lib.models.engines import engine_precision
        from lib.test.tracker.lorat import inference_precision

        cfg = _experiment(spec)
        device_type = spec.device.split(":")[0]
        record.update(config=cfg.to_dict(), checkpoint=spec.checkpoint, device=device_type, engine=spec.engine,
                      precision=engine_precision(spec.engine, inference_precision(cfg, device_type)))
        for field in ("checkpoint", "backbone_weights", "base_checkpoint"):
            value = getattr(spec, field)
            if value is not None and value != RANDOM_WEIGHTS:
                record[field] = str(Path(value).resolve())
                record[f"{field}_sha256"] = file_sha256(value)
    record.update(code_version=code_version(), command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]))
    return json.loads(json.dumps(record))  # as it reads back from producer.json (tuples become lists)
