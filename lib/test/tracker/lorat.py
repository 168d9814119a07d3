"""The LoRAT tracker: one template, a SiamFC search crop per frame, Hann-blended argmax.

Follows upstream's evaluation pipeline (https://github.com/LitingLin/LoRAT, trackit/runners/evaluation/distributed/
tracker_evaluator/default/pipelines/one_stream/__init__.py and .../components/post_process/box_with_score_map.py).

```python
spec = resolve_spec("lorat", "base_224", device="cuda", save_dir=env.save_dir)  # lib.test.tracker
tracker = build_tracker(spec)
tracker.initialize(first_frame_rgb, np.array([x, y, w, h]))
box_xywh, confidence = tracker.track(next_frame_rgb)
```

A checkpoint of `"random"` runs with random weights (smoke tests and speed benchmarks only).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lib.config import ExperimentConfig
from lib.models import build_model, default_backbone_weights, load_checkpoint, read_state_dict
from lib.models.checkpoint import canonical_key
from lib.models.engines import build_engine
from lib.test.tracker import RANDOM_WEIGHTS, TrackerSpec, validated_init_box
from lib.utils import boxes as box_ops
from lib.utils.crop import (
    crop_and_resize, image_mean, search_params_for_tracking, siamfc_crop_params, template_foreground_mask,
)
from lib.utils.paths import RunPaths
from lib.utils.precision import AUTOCAST_DTYPES

CHECKPOINT_SUFFIXES = (".pth", ".tar", ".pt", ".bin", ".safetensors")


def inference_precision(cfg: ExperimentConfig, device_type: str) -> str:
    """`test.amp` on CUDA; the CPU always runs in fp32 (autocast there would only be slower)."""
    return cfg.test.amp if device_type == "cuda" else "fp32"


def hann_window_2d(height: int, width: int) -> torch.Tensor:
    """Flattened (row-major) ``outer(hann(H), hann(W))`` with the symmetric ``0.5 - 0.5 cos(2 pi n / (N - 1))``."""
    return torch.outer(torch.hann_window(height, periodic=False), torch.hann_window(width, periodic=False)).flatten()


def select_prediction(score_map: torch.Tensor, boxes: torch.Tensor, window: torch.Tensor,
                      window_penalty: float) -> tuple[np.ndarray, float]:
    """Normalised xyxy box and unpenalised confidence at ``argmax((1 - a) sigmoid(score) + a window)``.

    ``score_map`` (H, W) logits, ``boxes`` (H, W, 4), ``window`` flattened (H*W,) on the same device.
    """
    scores = score_map.float().sigmoid().flatten()
    best = torch.argmax(scores * (1. - window_penalty) + window * window_penalty)
    picked = torch.cat([scores[best].view(1), boxes.reshape(-1, 4)[best].float()]).cpu().numpy()
    return picked[1:], float(picked[0])


class Normaliser:
    """Fused "/255 then normalise" of float32 HxWx3 crops (0..255) into 3xHxW tensors on one device, with the
    backbone's statistics (`ModelConfig.pixel_stats`): ``x * 1/(255 std) - mean/std``, one op per crop."""

    def __init__(self, device: torch.device, stats: tuple[Sequence[float], Sequence[float]]) -> None:
        mean, std = (torch.tensor(v, dtype=torch.float32).view(3, 1, 1) for v in stats)
        self._scale = (1. / (255. * std)).to(device)
        self._bias = (-mean / std).to(device)
        self.device = device

    def __call__(self, crop_hwc: np.ndarray, out: torch.Tensor) -> torch.Tensor:
        """Write the normalised crop into ``out`` (3, H, W) and return it."""
        pixels = torch.from_numpy(crop_hwc).to(self.device).permute(2, 0, 1)
        return torch.addcmul(self._bias, pixels, self._scale, out=out)


@dataclass(frozen=True)
class CropMap:
    """Where a crop came from: the applied (pixel-aligned) affine map ``crop = scale * image + translation`` and
    the frame's size (W, H)."""

    scale: np.ndarray
    translation: np.ndarray
    image_size: tuple[int, int]


def search_crop(image: np.ndarray, box: np.ndarray, area_factor: float, size: int, min_box_size: float,
                fill: np.ndarray, normalise: Normaliser, out: torch.Tensor) -> CropMap:
    """SiamFC crop of ``image`` (side ``size``) around the state box ``box`` (xyxy, enlarged to ``min_box_size``
    per side), padded with ``fill`` and normalised into ``out`` (3, size, size)."""
    scale, translation = search_params_for_tracking(box, area_factor, (size, size), min_box_size)
    crop, scale, translation = crop_and_resize(image, scale, translation, (size, size), fill)
    normalise(crop, out)
    return CropMap(scale, translation, (image.shape[1], image.shape[0]))


def predicted_box(box_normalised: np.ndarray, crop_size: np.ndarray, crop: CropMap) -> np.ndarray:
    """The head's normalised crop box (xyxy) as a frame box, not clipped (``crop_size``: ``[W, H, W, H]``)."""
    inverse_scale, inverse_translation = box_ops.invert_affine(crop.scale, crop.translation)
    return box_ops.apply_affine(box_normalised * crop_size, inverse_scale, inverse_translation)


def updated_state(state: np.ndarray, predicted: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Upstream's state update: the prediction clipped to the frame, kept only when it is valid and overlaps the
    frame; otherwise the previous state box stays."""
    clipped = box_ops.clip_to_image(predicted, image_size)
    return clipped if box_ops.is_valid(clipped) and box_ops.intersects_image(clipped, image_size) else state


@dataclass
class Target:
    """One sequence's tracking state: its template crop (1,3,Hz,Wz) and mask (1,hz,wz) on the device, the frame-0
    mean used as crop fill, and the last accepted box (xyxy)."""

    template: torch.Tensor
    template_mask: torch.Tensor
    fill: np.ndarray
    box: np.ndarray


def first_frame_target(image: np.ndarray, box_xywh: np.ndarray, cfg: ExperimentConfig,
                       normalise: Normaliser) -> Target:
    """Template crop (``cfg.model.template_size``, ``cfg.test.template_area_factor``) and its token-type mask on the
    ``cfg.model.template_feat_size`` grid from the frame-0 box; the frame's mean becomes every later crop's fill."""
    box = box_ops.xywh_to_xyxy(validated_init_box(image, box_xywh))
    fill = image_mean(image)
    size = (cfg.model.template_size, cfg.model.template_size)
    scale, translation = siamfc_crop_params(box, cfg.test.template_area_factor, size)
    crop, scale, translation = crop_and_resize(image, scale, translation, size, fill)
    mask = template_foreground_mask(box_ops.apply_affine(box, scale, translation), size,
                                    (cfg.model.template_feat_size, cfg.model.template_feat_size))
    template = torch.empty((1, 3, *crop.shape[:2]), device=normalise.device)
    normalise(crop, template[0])
    return Target(template, torch.from_numpy(mask).unsqueeze(0).to(normalise.device), fill, box)


class LoRATTracker:
    """Upstream's single-object inference loop (no template update, no re-detection), for one sequence
    (`initialize` / `track`) or for several in lockstep, one batched forward per step (`start` / `track_batch`, as
    upstream's evaluator batches concurrent sequences).

    The model must already be on ``device``; it is called as ``model(z, x, z_feat_mask)`` and returns
    ``{'score_map': (B, H, W) logits, 'boxes': (B, H, W, 4) normalised xyxy in the search crop}``. ``engine`` (see
    lib.models.engines) decides how it runs; the default "eager" autocasts to ``test.amp`` on CUDA.
    """

    def __init__(self, model: nn.Module, cfg: ExperimentConfig, device: str | torch.device = "cpu",
                 engine: str = "eager") -> None:
        if cfg.test.amp not in AUTOCAST_DTYPES:
            raise ValueError(f"test.amp must be one of {', '.join(AUTOCAST_DTYPES)}, got {cfg.test.amp!r}")
        self.model = model
        self.cfg = cfg
        self.device = torch.device(device)
        size = cfg.model
        self.engine = build_engine(model, engine, self.device, amp=inference_precision(cfg, self.device.type))
        self.precision = self.engine.precision
        self._normalise = Normaliser(self.device, cfg.model.pixel_stats)
        self._window = hann_window_2d(size.search_feat_size, size.search_feat_size).to(self.device)
        self._search = torch.empty((1, 3, size.search_size, size.search_size), device=self.device)
        self._crop_scale = np.array([size.search_size, size.search_size] * 2, dtype=np.float32)
        self._target: Target | None = None

    def start(self, image: np.ndarray, box_xywh: np.ndarray) -> Target:
        """A new sequence's template, mask and crop fill (`first_frame_target`)."""
        return first_frame_target(image, box_xywh, self.cfg, self._normalise)

    def initialize(self, image: np.ndarray, box_xywh: np.ndarray) -> None:
        """Start (or restart) the single-sequence loop."""
        self._target = self.start(image, box_xywh)

    def release(self, target: Target) -> None:
        """Nothing to free: a target holds only its own tensors."""

    def track(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Box ``x, y, w, h`` (clipped to the frame) and the unpenalised score of the chosen cell."""
        if self._target is None:
            raise RuntimeError("LoRATTracker.track() called before initialize()")
        return self.track_batch([self._target], [image])[0]

    def track_batch(self, targets: list[Target], images: list[np.ndarray]) -> list[tuple[np.ndarray, float]]:
        """The next frame of each target's sequence in one forward; each target's box is updated as in `track`."""
        if len(targets) != len(images) or not targets:
            raise ValueError(f"track_batch needs one image per target, got {len(targets)} targets and "
                             f"{len(images)} images")
        if self._search.shape[0] != len(targets):
            self._search = torch.empty((len(targets), *self._search.shape[1:]), device=self.device)
        test = self.cfg.test
        crops = [search_crop(image, target.box, test.search_area_factor, self.cfg.model.search_size,
                             test.min_box_size, target.fill, self._normalise, self._search[i])
                 for i, (target, image) in enumerate(zip(targets, images))]
        if len(targets) == 1:
            template, mask = targets[0].template, targets[0].template_mask
        else:
            template = torch.cat([t.template for t in targets])
            mask = torch.cat([t.template_mask for t in targets])
        output = self.engine(template, self._search, mask)
        results = []
        for i, (target, crop) in enumerate(zip(targets, crops)):
            box_normalised, confidence = select_prediction(output["score_map"][i], output["boxes"][i], self._window,
                                                           self.cfg.test.window_penalty)
            predicted = predicted_box(box_normalised, self._crop_scale, crop)
            target.box = updated_state(target.box, predicted, crop.image_size)
            results.append((box_ops.xyxy_to_xywh(box_ops.clip_to_image(predicted, crop.image_size)), confidence))
        return results


def default_checkpoint(paths: RunPaths, config: str) -> Path:
    """The trainer's final export `<config>_final.pth` in `paths.checkpoint_dir`, or else the newest checkpoint file
    there (by modification time)."""
    if paths.final_export(config).is_file():
        return paths.final_export(config)
    folder = paths.checkpoint_dir
    found = [p for p in folder.glob("*") if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES]
    if not found:
        raise FileNotFoundError(
            f"No checkpoint in {folder}. Train it first, or pass a file with --checkpoint (an official LoRAT "
            f"release, e.g. LoRAT-{config}.bin, or an exported .pth), or --checkpoint {RANDOM_WEIGHTS} for random "
            f"weights")
    return max(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


def checkpoint_needs_backbone(path: str | Path) -> bool:
    """True when the file holds only trained LoRA/head weights (the frozen DINOv2 weights come from elsewhere)."""
    state, _ = read_state_dict(path)
    return not any(canonical_key(k).startswith("blocks.") and ".lora" not in canonical_key(k) for k in state)


def _absolute(path: str | Path | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def resolve_weights(spec: TrackerSpec, cfg: ExperimentConfig, save_dir: str | Path | None) -> TrackerSpec:
    """`spec` with its checkpoint, backbone weights and base checkpoint as absolute paths, filled in where `spec`
    leaves them None.

    No checkpoint: the run's output under `save_dir` (see `default_checkpoint`). A LoRA-only checkpoint (official
    releases) without backbone weights: the config's pretrained DINOv2 file `pretrained/<Meta file>`. The base
    checkpoint (LoRATv2 phase 2) is never guessed: only a file the caller names is used, and it must exist.
    """
    checkpoint, backbone, base = spec.checkpoint, spec.backbone_weights, spec.base_checkpoint
    if checkpoint is None:
        if save_dir is None:
            raise ValueError(f"{spec.script}/{spec.config}: no checkpoint given and no save_dir to look for the "
                             f"trained one in; pass --checkpoint")
        checkpoint = default_checkpoint(RunPaths.for_run(save_dir, spec.script, spec.config), spec.config)
    if base is not None and checkpoint == RANDOM_WEIGHTS:
        raise ValueError(f"--base_checkpoint {base} with --checkpoint {RANDOM_WEIGHTS}: random weights load no "
                         f"files; drop one of them")
    if base is not None and not Path(base).is_file():
        raise FileNotFoundError(f"base checkpoint {base} does not exist (--base_checkpoint: the phase-1 file)")
    if checkpoint != RANDOM_WEIGHTS:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
        if backbone is None and checkpoint_needs_backbone(checkpoint):
            backbone = default_backbone_weights(cfg)
        checkpoint = _absolute(checkpoint)
    return replace(spec, checkpoint=checkpoint, backbone_weights=_absolute(backbone), base_checkpoint=_absolute(base))


def build_inference_model(cfg: ExperimentConfig, spec: TrackerSpec) -> nn.Module:
    """Merged inference model of `cfg` (on the CPU) with exactly the weights named in `spec` (resolved).

    The model is built on `spec.backbone_weights` (if any) and the checkpoint loaded on top (with
    `spec.base_checkpoint` under it for LoRATv2 phase 2); a checkpoint that leaves model weights unfilled without a
    backbone file is an error of `load_checkpoint`.
    """
    model = build_model(cfg, training=False, backbone_weights=spec.backbone_weights)
    if spec.checkpoint != RANDOM_WEIGHTS:
        load_checkpoint(model, spec.checkpoint, backbone_weights=spec.backbone_weights,
                        base_checkpoint=spec.base_checkpoint)
    return model


def build_tracker(cfg: ExperimentConfig, spec: TrackerSpec) -> LoRATTracker:
    """`build_inference_model` on `spec.device`, run by the engine `spec.engine`."""
    return LoRATTracker(build_inference_model(cfg, spec).to(spec.device), cfg, spec.device, spec.engine)
