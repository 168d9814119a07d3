"""Tiny versions of the ablation configs and random inputs for them (tests of experiments/lorat_ablation)."""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from lib.config import ExperimentConfig, apply_overrides, load_experiment
from lib.models import (build_model, export_inference_checkpoint, load_checkpoint, merge_for_inference,
                        trainable_state_dict)

TINY = ["model.backbone=vit_demo_p14", "model.template_size=56", "model.search_size=112"]  # D 192, depth 6


def tiny(config: str) -> ExperimentConfig:
    """`experiments/lorat_ablation/<config>.yaml` on the small demo ViT."""
    return apply_overrides(load_experiment("lorat_ablation", config), TINY)


def batch(cfg: ExperimentConfig, n: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random template, search region and template foreground mask of the config's sizes."""
    g = torch.Generator().manual_seed(seed)
    t, s, f = cfg.model.template_size, cfg.model.search_size, cfg.model.template_feat_size
    return (torch.randn(n, 3, t, t, generator=g), torch.randn(n, 3, s, s, generator=g),
            torch.randint(0, 2, (n, f, f), generator=g))


def nudge_(params, scale: float = 0.02) -> None:
    """Add N(0, scale^2) noise (torch's global generator) to each tensor of `params` in place: weights that differ
    from the random build, so that a round trip or a comparison cannot pass by reproducing the initialisation."""
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn_like(p) * scale)


def nudge_trainable_(model: torch.nn.Module, scale: float = 0.02) -> None:
    """`nudge_` on the parameters that train."""
    nudge_([p for p in model.parameters() if p.requires_grad], scale)


def assert_checkpoints_round_trip(model: torch.nn.Module, cfg: ExperimentConfig, inputs: tuple[torch.Tensor, ...],
                                  folder: Path) -> None:
    """`model` (a training build, nudged off its initialisation) gives the same outputs after the trainer's
    checkpoint (trainable tensors into a fresh training build: exactly) and after the merged export (into the
    inference build: to float rounding)."""
    with torch.no_grad():
        reference = model.eval()(*inputs)
    torch.save({"model": trainable_state_dict(model)}, folder / "train.pth")
    fresh = build_model(cfg, training=True)
    load_checkpoint(fresh, folder / "train.pth", backbone_weights="seeded-random")
    export_inference_checkpoint(merge_for_inference(copy.deepcopy(model)), cfg, folder / "final.pth")
    inference = build_model(cfg, training=False)
    load_checkpoint(inference, folder / "final.pth")
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(*inputs), reference, atol=0, rtol=0)
        torch.testing.assert_close(inference(*inputs), reference, atol=5e-5, rtol=1e-5)
