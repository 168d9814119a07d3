"""Actors: what one training step computes for a model family, between the generic trainer and the model.

An actor holds the model's forward callable (the module itself, or its DDP / torch.compile wrapper) and the loss.
It names the batch keys it reads, so the trainer moves exactly those to the device, and turns a batch into
`(loss, stats)`. The trainer stays model-agnostic: a new model family (e.g. several search streams, another head
and loss) adds its actor to `ACTORS` under its experiment script name (`experiments/<script>/`). pytracking's
actors play the same role.
"""
from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import ClassVar, Protocol

import torch

from lib.train.loss import global_num_positives, lorat_loss
from lib.utils.precision import autocast


class Actor(Protocol):
    batch_keys: ClassVar[tuple[str, ...]]

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]: ...


class LoRATActor:
    """One template + one search region through the model (under autocast), then `lorat_loss` in float32."""

    batch_keys: ClassVar[tuple[str, ...]] = ("z", "x", "z_feat_mask", "search_boxes", "positive_batch_idx",
                                             "positive_map_idx", "num_positives")

    def __init__(self, forward: Callable[..., dict[str, torch.Tensor]], device_type: str, precision: str,
                 iou_aware_target: bool = True) -> None:
        self.forward, self.device_type, self.precision = forward, device_type, precision
        self.iou_aware_target = iou_aware_target

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        with autocast(self.device_type, self.precision):
            out = self.forward(batch["z"], batch["x"], batch["z_feat_mask"])
        return lorat_loss(out["score_map"], out["boxes"], batch["search_boxes"], batch["positive_batch_idx"],
                          batch["positive_map_idx"], global_num_positives(batch["num_positives"]),
                          iou_aware=self.iou_aware_target)


# The ablation variants (experiments/lorat_ablation/) and the timm backbones (experiments/lorat_timm/) are LoRAT
# models with other PEFT methods or backbones: same step.
ACTORS: MappingProxyType[str, Callable[..., Actor]] = MappingProxyType(
    {"lorat": LoRATActor, "lorat_ablation": LoRATActor, "lorat_timm": LoRATActor})


def build_actor(script: str, forward: Callable[..., dict[str, torch.Tensor]], device_type: str,
                precision: str, iou_aware_target: bool = True) -> Actor:
    """The actor of experiment script `script` around `forward` (`iou_aware_target`: `train.iou_aware_target`)."""
    if script not in ACTORS:
        raise ValueError(f"no training actor for experiment script {script!r}; known: {', '.join(ACTORS)}. "
                         f"Add one to ACTORS in lib/train/actor.py")
    return ACTORS[script](forward, device_type, precision, iou_aware_target)
