"""Optimiser parameter groups, AdamW construction and the per-update warm-up + cosine lr schedule.

Follows upstream trackit/LoRAT (https://github.com/LitingLin/LoRAT; ``config/LoRAT/run.yaml`` and, for the full
fine-tuning baseline, ``config/baseline/run.yaml``), i.e. trackit's
``per_parameter_options`` rules and timm's ``CosineLRScheduler`` (warmup_prefix=True, stepped per update).
"""
from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

# Modules whose parameters never get weight decay (trackit ``_decay_param_names.py``).
NORM_MODULE_TYPES = (nn.LayerNorm, nn.GroupNorm, _NormBase, nn.LocalResponseNorm)
# Names matching this regex (searched anywhere in the name) get no weight decay: token_type_embed, pos_embed.
NO_DECAY_NAME_REGEX = re.compile(r"embed")
# Layer-wise lr decay: names with these prefixes form layer 0 (upstream baseline rule ``first_layer``).
FIRST_LAYER_PREFIXES = ("patch_embed", "norm_pre")
BLOCK_NAME_REGEX = re.compile(r"^blocks\.(\d+)\.")


def _norm_param_names(model: nn.Module) -> set[str]:
    names: set[str] = set()
    for module_name, module in model.named_modules():
        if isinstance(module, NORM_MODULE_TYPES):
            prefix = f"{module_name}." if module_name else ""
            names.update(prefix + name for name, _ in module.named_parameters())
    return names


def layer_id(name: str, num_layers: int) -> int:
    """BEiT-style layer index: ``patch_embed``/``norm_pre`` -> 0, ``blocks.i`` -> i + 1, the rest -> L + 1.

    As in upstream's ``vit_lr_layer_decay`` rule, ``pos_embed`` and ``token_type_embed`` are not in the first
    layer: they keep the full lr (layer L + 1) together with the final norm and the head.
    """
    if name.startswith(FIRST_LAYER_PREFIXES):
        return 0
    match = BLOCK_NAME_REGEX.match(name)
    if match is not None:
        return int(match.group(1)) + 1
    return num_layers + 1


def _infer_num_layers(names: list[str]) -> int:
    block_ids = [int(m.group(1)) for m in map(BLOCK_NAME_REGEX.match, names) if m is not None]
    if not block_ids:
        raise ValueError("layer_decay needs num_layers or trainable parameters named 'blocks.<i>.*'; "
                         "none found: pass num_layers explicitly")
    return max(block_ids) + 1


def param_groups(model: nn.Module, weight_decay: float, lr: float, layer_decay: float | None = None,
                 num_layers: int | None = None) -> list[dict[str, Any]]:
    """AdamW parameter groups of the trainable parameters, keyed by (weight decay?, layer id).

    Weight decay goes to parameters that are >1-D after ``squeeze()`` and not inside a norm module
    (so e.g. a ``[1, D]`` output-layer weight gets none, as upstream), except ``embed``-named ones.
    With ``layer_decay`` (full fine-tuning baseline) each group's lr is scaled by
    ``layer_decay ** (num_layers + 1 - layer_id)`` (stored as ``lr_scale``); parameters claimed by the
    layer-decay rule (layer id <= num_layers, e.g. the patch-embedding conv weight) are not subject to the
    ``embed`` rule, because upstream applies that rule only to the parameters left over.
    ``num_layers`` defaults to the number of ``blocks.<i>`` found. Groups carry ``param_names``.
    """
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError(f"{type(model).__name__} has no trainable parameters (all requires_grad=False)")
    if layer_decay is not None and num_layers is None:
        num_layers = _infer_num_layers([name for name, _ in named])
    norm_names = _norm_param_names(model)

    groups: dict[tuple[bool, int], dict[str, Any]] = {}
    for name, param in named:
        lid = layer_id(name, num_layers) if layer_decay is not None else 0
        claimed_by_layer_decay = layer_decay is not None and lid <= num_layers
        decay = (name not in norm_names and param.squeeze().dim() > 1
                 and (claimed_by_layer_decay or NO_DECAY_NAME_REGEX.search(name) is None))
        if (decay, lid) not in groups:
            scale = 1.0 if layer_decay is None else layer_decay ** (num_layers + 1 - lid)
            groups[(decay, lid)] = {"params": [], "param_names": [], "lr": lr * scale, "lr_scale": scale,
                                    "weight_decay": weight_decay if decay else 0.0}
        groups[(decay, lid)]["params"].append(param)
        groups[(decay, lid)]["param_names"].append(name)
    return [groups[key] for key in sorted(groups, key=lambda k: (k[1], not k[0]))]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float,
                    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                    layer_decay: float | None = None, num_layers: int | None = None) -> torch.optim.AdamW:
    """AdamW over ``param_groups(model, ...)`` (upstream: lr 1e-4, wd 0.1, PyTorch default betas/eps)."""
    groups = param_groups(model, weight_decay, lr, layer_decay=layer_decay, num_layers=num_layers)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class WarmupCosineSchedule:
    """Linear warm-up prefix then one cosine cycle, stepped once after every optimizer update.

    Same values as ``timm.scheduler.CosineLRScheduler(t_initial=total_steps, lr_min=min_lr,
    warmup_t=warmup_steps, warmup_lr_init=warmup_lr, warmup_prefix=True, t_in_epochs=False)``: the cosine
    runs over ``total_steps`` updates *after* the warm-up. Like upstream, the lr is set to ``lr_at(0)`` at
    construction and ``step()`` after update ``i`` (0-based) sets ``lr_at(i)``, so updates 0 and 1 both use
    ``lr_at(0)`` and update ``i >= 1`` uses ``lr_at(i - 1)``.
    A group with ``lr_scale`` s peaks at ``s * base_lr`` while ``warmup_lr`` and ``min_lr`` stay unscaled,
    which is what timm does with upstream's per-group initial lrs (layer-decay baseline).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, warmup_lr: float, min_lr: float,
                 warmup_steps: int, total_steps: int) -> None:
        if total_steps <= 0 or warmup_steps < 0:
            raise ValueError(f"need total_steps > 0 and warmup_steps >= 0, got total_steps={total_steps}, "
                             f"warmup_steps={warmup_steps}")
        self.optimizer = optimizer
        self.base_lr = float(base_lr)
        self.warmup_lr = float(warmup_lr)
        self.min_lr = float(min_lr)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.num_updates = 0
        self._apply(0)

    def lr_at(self, k: int, lr_scale: float = 1.0) -> float:
        """Learning rate at scheduler index ``k`` for a group whose peak is ``lr_scale * base_lr``."""
        if k < 0:
            raise ValueError(f"scheduler index must be >= 0, got {k}")
        peak = self.base_lr * lr_scale
        if k < self.warmup_steps:
            return self.warmup_lr + k * ((peak - self.warmup_lr) / self.warmup_steps)
        t = k - self.warmup_steps
        if t >= self.total_steps:
            return self.min_lr
        return self.min_lr + 0.5 * (peak - self.min_lr) * (1 + math.cos(math.pi * t / self.total_steps))

    def _apply(self, k: int) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(k, group.get("lr_scale", 1.0))

    def step(self) -> None:
        """Call once after each training iteration's optimizer update; the counter is global across epochs."""
        self.num_updates += 1
        self._apply(self.num_updates - 1)

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def _config(self) -> dict[str, float | int]:
        return {"base_lr": self.base_lr, "warmup_lr": self.warmup_lr, "min_lr": self.min_lr,
                "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}

    def state_dict(self) -> dict[str, float | int]:
        return {"num_updates": self.num_updates, **self._config()}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        """Resume the update counter; the schedule hyper-parameters must match the saved ones."""
        saved = {key: state[key] for key in self._config() if key in state}
        mismatched = {key: (value, saved.get(key)) for key, value in self._config().items()
                      if saved.get(key) != value}
        if mismatched or "num_updates" not in state:
            raise ValueError(f"lr schedule state does not match this run (current, saved): {mismatched}; "
                             f"resume with the same schedule settings or start a new run")
        self.num_updates = int(state["num_updates"])
        self._apply(max(0, self.num_updates - 1))
