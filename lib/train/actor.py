"""Actors: what one training step computes for a model family, between the generic trainer and the model.

An actor holds the model's forward callable (the module itself, or its DDP / torch.compile wrapper) and the loss.
It names the batch keys it reads, so the trainer moves exactly those to the device, and turns a batch into
`(loss, stats)`. The trainer stays model-agnostic: a new model family (e.g. several search streams, another head
and loss) adds its actor to `ACTORS` under its experiment script name (`experiments/<script>/`). Every actor is
built with the number of search streams of the model (`cfg.model.search_sizes`). pytracking's actors play the same
role.
"""
from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import ClassVar, Protocol

import torch

from lib.train.data.processing import stream_keys
from lib.train.loss import global_num_positives, lorat_loss
from lib.utils.precision import autocast

LABEL_KEYS = ("search_boxes", "positive_batch_idx", "positive_map_idx", "num_positives")  # of the last stream


class Actor(Protocol):
    batch_keys: tuple[str, ...]

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]: ...


class LoRATActor:
    """One template + one search region through the model (under autocast), then `lorat_loss` in float32."""

    batch_keys: ClassVar[tuple[str, ...]] = ("z", "x", "z_feat_mask", *LABEL_KEYS)

    def __init__(self, forward: Callable[..., dict[str, torch.Tensor]], device_type: str, precision: str,
                 iou_aware_target: bool = True, num_streams: int = 1) -> None:
        if num_streams != 1:
            raise ValueError(f"LoRAT has one search stream, the config gives {num_streams}")
        self.forward, self.device_type, self.precision = forward, device_type, precision
        self.iou_aware_target = iou_aware_target

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        with autocast(self.device_type, self.precision):
            out = self.forward(batch["z"], batch["x"], batch["z_feat_mask"])
        return lorat_loss(out["score_map"], out["boxes"], batch["search_boxes"], batch["positive_batch_idx"],
                          batch["positive_map_idx"], global_num_positives(batch["num_positives"]),
                          iou_aware=self.iou_aware_target)


class LoRATv2Actor:
    """The template and every search stream (model order, the labelled one last) through the model under autocast,
    then `lorat_loss` in float32 on the last stream's output: the only stream with a head, labels and a loss."""

    def __init__(self, forward: Callable[..., dict[str, torch.Tensor]], device_type: str, precision: str,
                 iou_aware_target: bool = True, num_streams: int = 1) -> None:
        self.forward, self.device_type, self.precision = forward, device_type, precision
        self.iou_aware_target = iou_aware_target
        self.stream_keys = stream_keys(num_streams)
        self.batch_keys = ("z", *self.stream_keys, "z_feat_mask", *LABEL_KEYS)

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        with autocast(self.device_type, self.precision):
            out = self.forward(batch["z"], [batch[k] for k in self.stream_keys], batch["z_feat_mask"])
        return lorat_loss(out["score_map"], out["boxes"], batch["search_boxes"], batch["positive_batch_idx"],
                          batch["positive_map_idx"], global_num_positives(batch["num_positives"]),
                          iou_aware=self.iou_aware_target)


# The ablation variants (experiments/lorat_ablation/) and the timm backbones (experiments/lorat_timm/) are LoRAT
# models with other PEFT methods or backbones: same step.
ACTORS: MappingProxyType[str, Callable[..., Actor]] = MappingProxyType(
    {"lorat": LoRATActor, "lorat_ablation": LoRATActor, "lorat_timm": LoRATActor, "loratv2": LoRATv2Actor})


def build_actor(script: str, forward: Callable[..., dict[str, torch.Tensor]], device_type: str,
                precision: str, iou_aware_target: bool = True, num_streams: int = 1) -> Actor:
    """The actor of experiment script `script` around `forward` (`iou_aware_target`: `train.iou_aware_target`,
    `num_streams`: the model's search streams, `len(cfg.model.search_sizes)`)."""
    if script not in ACTORS:
        raise ValueError(f"no training actor for experiment script {script!r}; known: {', '.join(ACTORS)}. "
                         f"Add one to ACTORS in lib/train/actor.py")
    return ACTORS[script](forward, device_type, precision, iou_aware_target, num_streams)
