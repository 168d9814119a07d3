"""LoRA adapters for the frozen linear layers of ViT blocks (upstream-lorat.md §2).

Training models wrap each block linear: `attn.qkv` keeps its fused frozen weight and gets three adapters
(`lora_q`, `lora_k`, `lora_v`, one per output slice, as upstream's split q/k/v LoRA), `attn.proj`, `mlp.fc1` and
`mlp.fc2` get one adapter each. `merge_lora_` turns a wrapped model back into plain `nn.Linear` layers with
`W' = W + scaling * B @ A`, so the inference model has no adapter overhead.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import trunc_normal_

from lib.config import LoRAConfig

LORA_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


class LoRA(nn.Module):
    """The low-rank update `scaling * B (A x)` for a linear layer of shape (out, in)."""

    def __init__(self, in_features: int, out_features: int, cfg: LoRAConfig) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.empty(cfg.r, in_features))
        self.B = nn.Parameter(torch.empty(out_features, cfg.r))
        self.scaling = cfg.scaling
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.reset_parameters(cfg.init)

    def reset_parameters(self, init: str) -> None:
        if init == "bert":  # upstream default: both matrices truncated normal, std 0.02 (B is not zero)
            trunc_normal_(self.A, std=0.02)
            trunc_normal_(self.B, std=0.02)
        elif init == "lora":  # the LoRA paper's init
            nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
            nn.init.zeros_(self.B)
        elif init == "gaussian":
            nn.init.normal_(self.A, std=1.0 / self.A.shape[0])
            nn.init.zeros_(self.B)
        else:
            raise ValueError(f"Unknown LoRA init '{init}' (bert | lora | gaussian)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(self.dropout(x), self.A), self.B) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """`scaling * B @ A` in float32, the amount merged into the frozen weight."""
        return (self.B.float() @ self.A.float()) * self.scaling


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus one adapter."""

    def __init__(self, linear: nn.Linear, cfg: LoRAConfig) -> None:
        super().__init__()
        self.linear = linear
        self.lora = LoRA(linear.in_features, linear.out_features, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.lora(x)

    def merged(self) -> nn.Linear:
        return _merged_linear(self.linear, self.lora.delta_weight())


class LoRAQKV(nn.Module):
    """A frozen fused qkv `nn.Linear` (rows [q; k; v]) with a separate adapter for each of q, k and v."""

    def __init__(self, linear: nn.Linear, cfg: LoRAConfig) -> None:
        super().__init__()
        dim = linear.out_features // 3
        self.linear = linear
        self.lora_q = LoRA(linear.in_features, dim, cfg)
        self.lora_k = LoRA(linear.in_features, dim, cfg)
        self.lora_v = LoRA(linear.in_features, dim, cfg)
        self.shared_input = cfg.dropout == 0  # all three adapters see the same x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        adapters = (self.lora_q, self.lora_k, self.lora_v)
        if self.shared_input:
            # One (3r x in) product instead of three: besides one GEMM, autograd keeps a single copy of x for the
            # A gradients, where three calls under autocast would each save their own low-precision cast of x.
            hidden = F.linear(x, torch.cat([a.A for a in adapters])).chunk(3, dim=-1)
        else:  # independent dropout masks, as three separate adapters have
            hidden = [F.linear(a.dropout(x), a.A) for a in adapters]
        delta = torch.cat([F.linear(h, a.B) for h, a in zip(hidden, adapters)], dim=-1)
        return self.linear(x) + delta * self.lora_q.scaling

    def merged(self) -> nn.Linear:
        delta = torch.cat([self.lora_q.delta_weight(), self.lora_k.delta_weight(), self.lora_v.delta_weight()])
        return _merged_linear(self.linear, delta)


def _merged_linear(linear: nn.Linear, delta: torch.Tensor) -> nn.Linear:
    """A new plain linear with weight `(W.float() + delta).to(W.dtype)` (upstream's merge, in float32)."""
    out = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None,
                    device=linear.weight.device, dtype=linear.weight.dtype)
    out.weight.data.copy_((linear.weight.data.float() + delta).to(linear.weight.dtype))
    if linear.bias is not None:
        out.bias.data.copy_(linear.bias.data)
    out.requires_grad_(linear.weight.requires_grad)
    return out


def _get(module: nn.Module, dotted: str) -> nn.Module:
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


def _set(module: nn.Module, dotted: str, value: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(_get(module, parent) if parent else module, leaf, value)


def add_lora_(blocks: nn.ModuleList, cfg: LoRAConfig) -> None:
    """Wrap q/k/v, attention proj and both MLP linears of every block (also ViT-g's SwiGLU fc1/fc2)."""
    for block in blocks:
        for target in LORA_TARGETS:
            linear = _get(block, target)
            if not isinstance(linear, nn.Linear):
                raise TypeError(f"Expected nn.Linear at '{target}', found {type(linear).__name__}")
            _set(block, target, (LoRAQKV if target == "attn.qkv" else LoRALinear)(linear, cfg))


def merge_lora_(model: nn.Module) -> None:
    """Replace every adapter-wrapped linear of `model` by a plain merged `nn.Linear`, in place."""
    wrapped = [(name, m) for name, m in model.named_modules() if isinstance(m, (LoRALinear, LoRAQKV))]
    for name, module in wrapped:
        _set(model, name, module.merged())
