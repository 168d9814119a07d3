"""Stable model API: `build_model`, `load_checkpoint`, `export_inference_checkpoint`, for both model families
(`MODEL_BUILDERS`, by experiment script): LoRAT (lib/models/lorat.py) and LoRATv2 (lib/models/loratv2.py, with its
KV-cache streaming API; docs/loratv2.md).

```python
cfg = load_experiment("lorat", "base_224")
model = build_model(cfg, training=False, backbone_weights="pretrained/dinov2_vitb14_pretrain.pth")  # None: random
load_checkpoint(model, path, backbone_weights="pretrained/dinov2_vitb14_pretrain.pth")  # the same file
out = model(z, x, z_feat_mask)  # {'score_map': (B,Hx,Wx) logits, 'boxes': (B,Hx,Wx,4) normalised xyxy}
```
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

import torch
from torch import nn
from timm.layers import DropPath

from lib.config import ConfigError, ExperimentConfig
from lib.models.backbone import (VIT_SPECS, create_vit, default_weights_path, load_backbone_weights,
                                 resolve_backbone_weights)
from lib.models.checkpoint import CheckpointError, LoadReport, read_state_dict
from lib.models.checkpoint import load_checkpoint as load_lorat_checkpoint
from lib.models.engines import build_engine
from lib.models.peft import MERGEABLE_TYPES, merge_peft_, method_of
from lib.models.lorat import LoRAT
from lib.models.loratv2 import LoRATv2, build_loratv2
from lib.models.loratv2_checkpoint import load_loratv2_checkpoint

__all__ = ["build_model", "MODEL_BUILDERS", "LoRATv2", "load_checkpoint", "build_engine", "export_inference_checkpoint", "merge_for_inference",
           "trainable_state_dict", "default_backbone_weights", "CheckpointError", "LoadReport", "read_state_dict",
           "VIT_SPECS"]

EXPORT_FORMAT = "lorat-inference-v1"


class BatchSubsetDropPath(nn.Module):
    """Stochastic depth as upstream's DINOv2 does it for rates above 0.1 (ViT-g): the residual branch is kept for
    a random subset of `max(int(B * (1 - p)), 1)` samples, scaled by `B / subset`; the others get none."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        b = x.shape[0]
        keep = max(int(b * (1 - self.rate)), 1)
        mask = torch.zeros(b, dtype=x.dtype, device=x.device)
        mask[torch.randperm(b, device=x.device)[:keep]] = b / keep
        return x * mask.view(b, *([1] * (x.dim() - 1)))


def _uniform_drop_path_(blocks: nn.ModuleList, rate: float) -> None:
    """Upstream uses the same rate in every block (timm's default is a linear ramp)."""
    make = BatchSubsetDropPath if rate > 0.1 else DropPath
    for block in blocks:
        block.drop_path1 = make(rate) if rate > 0 else nn.Identity()
        block.drop_path2 = make(rate) if rate > 0 else nn.Identity()


def default_backbone_weights(cfg: ExperimentConfig) -> Path | None:
    """`pretrained/<weights file>` of the config's backbone (whether or not it exists yet), None for demo ones."""
    return default_weights_path(cfg.model.backbone)


def build_model(cfg: ExperimentConfig, training: bool = False,
                backbone_weights: str | Path | None = None) -> LoRAT | LoRATv2:
    """The model of `cfg.script`'s family (`MODEL_BUILDERS`): LoRAT (`build_lorat`) or LoRATv2
    (lib/models/loratv2.py `build_loratv2`: training=True trains the phase's experts, training=False is the merged
    inference build with the KV-cache streaming API)."""
    if cfg.script not in MODEL_BUILDERS:
        raise ValueError(f"No model family for experiment script '{cfg.script}' (lib.models.MODEL_BUILDERS: "
                         f"{', '.join(MODEL_BUILDERS)})")
    return MODEL_BUILDERS[cfg.script](cfg, training, backbone_weights)


def build_lorat(cfg: ExperimentConfig, training: bool = False, backbone_weights: str | Path | None = None) -> LoRAT:
    """Build LoRAT. `training=True`: the config's PEFT method (LoRA on the block linears, or an adapter, VPT or
    IA3; lib/models/peft.py) added to the frozen backbone, and only its modules + token-type embedding + head (+ the
    final norm with `model.train_final_norm`) trainable; everything trainable for full fine-tuning configs.
    `training=False`: eval mode, no grads, and plain linears for the methods that merge (LoRA, IA3); adapter and
    VPT models keep their modules.

    Random initialisations are drawn under a fixed seed (`train.seed`), as upstream does, so two builds with the
    same config are identical. Pass the same `backbone_weights` to `load_checkpoint`, which needs to know where the
    backbone tensors that a checkpoint does not hold came from.
    """
    if cfg.model.loratv2 is not None:
        raise ConfigError(f"experiments/{cfg.script}/{cfg.name}: model.loratv2 belongs to loratv2 experiments; "
                          f"remove it or use --script loratv2")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        uniform = VIT_SPECS[cfg.model.backbone].drop_path_schedule == "uniform"
        vit = create_vit(cfg.model.backbone, 0.0 if uniform else cfg.model.drop_path)  # timm ramps it linearly
        if backbone_weights is not None:
            load_backbone_weights(vit, cfg.model.backbone,
                                  resolve_backbone_weights(cfg.model.backbone, backbone_weights))
        if uniform:
            _uniform_drop_path_(vit.blocks, cfg.model.drop_path)
        model = LoRAT(vit, cfg.model.template_feat_size, cfg.model.search_feat_size,
                      VIT_SPECS[cfg.model.backbone].pos_embed, cfg.model.head, cfg.model.attention,
                      cfg.model.embedding)
        method = method_of(cfg.model)
        if method is not None and (training or not method.mergeable):
            model.requires_grad_(False)
            method.apply(model, cfg.model)  # its modules are created trainable
            if model.token_type_embed is not None:
                model.token_type_embed.requires_grad_(True)
            model.head.requires_grad_(True)
            model.norm.requires_grad_(cfg.model.train_final_norm)
    if not training:
        model.eval().requires_grad_(False)
    return model


# Experiment script (experiments/<script>/) -> the builder of its model family.
MODEL_BUILDERS: Mapping[str, Callable[[ExperimentConfig, bool, str | Path | None], nn.Module]] = MappingProxyType({
    "lorat": build_lorat, "lorat_ablation": build_lorat, "lorat_timm": build_lorat, "loratv2": build_loratv2})


def _lorat_checkpoint(model: LoRAT, path: str | Path, backbone_weights: str | Path | None,
                      base_checkpoint: str | Path | None) -> LoadReport:
    if base_checkpoint is not None:
        raise ValueError("base_checkpoint is LoRATv2's phase-1 file; LoRAT loads a stage-1 file first and then the "
                         "stage-2 file with backbone_weights=<stage-1 file> (lib/models/checkpoint.py)")
    return load_lorat_checkpoint(model, path, backbone_weights)


# Model class -> its checkpoint reader.
CHECKPOINT_LOADERS: Mapping[type, Callable[..., LoadReport]] = MappingProxyType(
    {LoRAT: _lorat_checkpoint, LoRATv2: load_loratv2_checkpoint})


def load_checkpoint(model: LoRAT | LoRATv2, path: str | Path, backbone_weights: str | Path | None = None,
                    base_checkpoint: str | Path | None = None) -> LoadReport:
    """Load a checkpoint into a model built by `build_model`, with its family's reader (`CHECKPOINT_LOADERS`):
    lib/models/checkpoint.py for LoRAT, lib/models/loratv2_checkpoint.py for LoRATv2 (`base_checkpoint`: the
    phase-1 file when `path` is an official phase-2 file)."""
    family = next((cls for cls in type(model).__mro__ if cls in CHECKPOINT_LOADERS), None)
    if family is None:
        raise TypeError(f"No checkpoint reader for {type(model).__name__} (lib.models.CHECKPOINT_LOADERS)")
    return CHECKPOINT_LOADERS[family](model, path, backbone_weights, base_checkpoint)


def merge_for_inference(model: LoRAT | LoRATv2) -> LoRAT | LoRATv2:
    """Fold the mergeable PEFT modules (LoRA, IA3) of a training model into plain linears (in place) and switch to
    inference mode; adapter and VPT modules stay."""
    merge_peft_(model)
    return model.eval().requires_grad_(False)


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the parameters that train (for PEFT models: the method's modules, token-type embedding, head), plus the
    saved buffers of the modules that own them (BatchNorm statistics of the conv heads), without which the
    checkpoint could not be loaded strictly."""
    state = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    owners = {k.rpartition(".")[0] for k in state}
    params = {k for k, _ in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.state_dict().items()
               if k not in params and k.rpartition(".")[0] in owners}
    return {**state, **buffers}


def export_inference_checkpoint(model: LoRAT | LoRATv2, cfg: ExperimentConfig, path: str | Path) -> Path:
    """Write one self-contained file (merged weights + config) that `load_checkpoint` reads into a plain model."""
    from lib.utils.io import atomic_torch_save

    if any(isinstance(m, MERGEABLE_TYPES) for m in model.modules()):
        raise ValueError("Merge the adapters (LoRA, IA3) first (merge_for_inference) or build with training=False")
    payload = {"format": EXPORT_FORMAT, "config": cfg.to_dict(), "model": model.state_dict()}
    path = Path(path)
    atomic_torch_save(payload, path)
    return path
