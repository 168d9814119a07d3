"""LoRA adapters for the frozen linear layers of ViT blocks: the one home of LoRA's maths and names.

Training models wrap each block linear that the block type's `LoRALayout` lists (`LORA_LAYOUTS`). timm ViT blocks
(`LORA_TARGETS`): `attn.qkv` keeps its fused frozen weight and gets three adapters (`lora_q`, `lora_k`, `lora_v`, one
per output slice, as upstream's split q/k/v LoRA), `attn.proj`, `mlp.fc1` and `mlp.fc2` get one adapter (`lora`)
each. EVA-02 blocks (`EVA_LORA_TARGETS`) have separate q/k/v projections and a SwiGLU MLP: each of their seven
linears gets one adapter, as upstream's LoRA on every frozen linear of a block
(trackit/models/methods/LoRAT/funcs/vit_lora_utils.py). `model.lora.targets` may pick a subset. Merging
(lib/models/peft.py `merge_peft_`) turns a wrapped model back into plain
`nn.Linear` layers with `W' = W + scaling * B @ A`, so the inference model has no adapter overhead. The checkpoint
reader (lib/models/checkpoint.py) builds its key patterns and its merge from the names and functions here.

Upstream: trackit/models/methods/LoRAT/modules/lora/__init__.py (layer, scaling, init) and .../lora/merge.py
(merge in float32) in https://github.com/LitingLin/LoRAT.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import trunc_normal_
from timm.models.eva import EvaBlock
from timm.models.vision_transformer import Block

from lib.config import LoRAConfig

LORA_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")  # timm ViT block linears with adapters (also ViT-g's)
QKV_TARGET = "attn.qkv"  # the fused linear whose output rows are [q; k; v], one adapter per slot
QKV_SLOTS = ("q", "k", "v")
# `model.lora.targets` names (paper Table 4 placements): each q/k/v slot of the fused qkv, the attention output
# projection and the two MLP linears together (upstream ablation/lora_ablation.py switches).
LORA_PLACEMENTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"q": (QKV_TARGET,), "k": (QKV_TARGET,), "v": (QKV_TARGET,), "o": ("attn.proj",), "mlp": ("mlp.fc1", "mlp.fc2")})
# timm EVA-02 block linears: separate q/k/v projections (k without bias) and SwiGLU's gate/value/output linears.
EVA_LORA_TARGETS = ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.proj", "mlp.fc1_g", "mlp.fc1_x", "mlp.fc2")


@dataclass(frozen=True)
class LoRALayout:
    """Where a block type's LoRA adapters go: its target linears (in creation order), the fused [q; k; v] linear
    among them if any (one adapter per slot), and the linears each `model.lora.targets` placement name selects."""

    targets: tuple[str, ...]
    fused_qkv: str | None
    placements: Mapping[str, tuple[str, ...]]


VIT_LORA = LoRALayout(LORA_TARGETS, QKV_TARGET, LORA_PLACEMENTS)
EVA_LORA = LoRALayout(EVA_LORA_TARGETS, None, MappingProxyType(
    {"q": ("attn.q_proj",), "k": ("attn.k_proj",), "v": ("attn.v_proj",), "o": ("attn.proj",),
     "mlp": ("mlp.fc1_g", "mlp.fc1_x", "mlp.fc2")}))
# timm block class -> its layout (subclasses, e.g. the VPT block, take their base's).
LORA_LAYOUTS: Mapping[type, LoRALayout] = MappingProxyType({Block: VIT_LORA, EvaBlock: EVA_LORA})
# Every linear name any layout adapts (the checkpoint reader's key patterns).
ALL_LORA_TARGETS = tuple(dict.fromkeys(t for layout in LORA_LAYOUTS.values() for t in layout.targets))


def lora_layout(block: nn.Module) -> LoRALayout:
    """The `LoRALayout` of `block`'s class (or of its nearest registered base class)."""
    for cls in type(block).__mro__:
        if cls in LORA_LAYOUTS:
            return LORA_LAYOUTS[cls]
    raise TypeError(f"No LoRA layout for block type {type(block).__name__} (lib.models.lora.LORA_LAYOUTS: "
                    f"{', '.join(c.__name__ for c in LORA_LAYOUTS)})")


def adapter_name(slot: str | None) -> str:
    """The attribute holding an adapter inside a wrapped linear: `lora`, or `lora_<slot>` for a q/k/v slot."""
    return "lora" if slot is None else f"lora_{slot}"


def lora_scaling(alpha: float, r: int, use_rslora: bool) -> float:
    """The factor applied to `B @ A`: alpha / r, or alpha / sqrt(r) with rsLoRA."""
    return alpha / (math.sqrt(r) if use_rslora else r)


def lora_delta(A: torch.Tensor, B: torch.Tensor, scaling: float) -> torch.Tensor:
    """`scaling * B @ A` in float32: the amount merged into the frozen weight."""
    return (B.float() @ A.float()) * scaling


def merged_weight(weight: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """`(W.float() + delta)` cast back to W's dtype: upstream merges in float32 whatever the weight dtype."""
    if delta.shape != weight.shape:
        raise ValueError(f"LoRA update {tuple(delta.shape)} does not fit weight {tuple(weight.shape)}")
    return (weight.float() + delta).to(weight.dtype)


def _init_bert(adapter: "LoRA") -> None:
    """Upstream's default: both matrices truncated normal, std 0.02 (B is not zero)."""
    trunc_normal_(adapter.A, std=0.02)
    trunc_normal_(adapter.B, std=0.02)


def _init_lora(adapter: "LoRA") -> None:
    """The LoRA paper's init: A Kaiming-uniform, B zero."""
    nn.init.kaiming_uniform_(adapter.A, a=math.sqrt(5))
    nn.init.zeros_(adapter.B)


def _init_gaussian(adapter: "LoRA") -> None:
    nn.init.normal_(adapter.A, std=1.0 / adapter.A.shape[0])
    nn.init.zeros_(adapter.B)


# `model.lora.init` names (checked when a config loads).
LORA_INITS: Mapping[str, Callable[["LoRA"], None]] = MappingProxyType(
    {"bert": _init_bert, "lora": _init_lora, "gaussian": _init_gaussian})


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
        if init not in LORA_INITS:
            raise ValueError(f"Unknown LoRA init '{init}' ({' | '.join(LORA_INITS)})")
        LORA_INITS[init](self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(self.dropout(x), self.A), self.B) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """`scaling * B @ A` in float32, the amount merged into the frozen weight."""
        return lora_delta(self.A, self.B, self.scaling)


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus one adapter."""

    def __init__(self, linear: nn.Linear, cfg: LoRAConfig) -> None:
        super().__init__()
        self.linear = linear
        self.lora = LoRA(linear.in_features, linear.out_features, cfg)  # attribute: adapter_name(None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.lora(x)

    def merged(self) -> nn.Linear:
        return _merged_linear(self.linear, self.lora.delta_weight())


class LoRAQKV(nn.Module):
    """A frozen fused qkv `nn.Linear` (rows [q; k; v]) with a separate adapter for each slot in `slots` (all three
    for LoRAT; q and v only in the Table 4 placement ablation)."""

    def __init__(self, linear: nn.Linear, cfg: LoRAConfig, slots: tuple[str, ...] = QKV_SLOTS) -> None:
        super().__init__()
        self.dim = linear.out_features // 3
        self.linear = linear
        self.slots = tuple(s for s in QKV_SLOTS if s in slots)  # row order of the fused weight
        for slot in self.slots:  # lora_q, lora_k, lora_v
            setattr(self, adapter_name(slot), LoRA(linear.in_features, self.dim, cfg))
        self.shared_input = cfg.dropout == 0  # all adapters see the same x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        adapters = self.adapters()
        if self.shared_input:
            # One (n*r x in) product instead of n: besides one GEMM, autograd keeps a single copy of x for the
            # A gradients, where separate calls under autocast would each save their own low-precision cast of x.
            hidden = F.linear(x, torch.cat([a.A for a in adapters])).chunk(len(adapters), dim=-1)
        else:  # independent dropout masks, as separate adapters have
            hidden = [F.linear(a.dropout(x), a.A) for a in adapters]
        updates = dict(zip(self.slots, (F.linear(h, a.B) for h, a in zip(hidden, adapters))))
        if len(updates) < len(QKV_SLOTS):  # slots without an adapter get no update
            zero = x.new_zeros(*x.shape[:-1], self.dim)
            updates = {slot: updates.get(slot, zero) for slot in QKV_SLOTS}
        delta = torch.cat([updates[slot] for slot in QKV_SLOTS], dim=-1)
        return self.linear(x) + delta * adapters[0].scaling

    def adapters(self) -> tuple[LoRA, ...]:
        """The adapters of `slots`, in the row order of the fused weight."""
        return tuple(getattr(self, adapter_name(slot)) for slot in self.slots)

    def merged(self) -> nn.Linear:
        zero = torch.zeros(self.dim, self.linear.in_features, device=self.linear.weight.device)
        deltas = {slot: adapter.delta_weight() for slot, adapter in zip(self.slots, self.adapters())}
        return _merged_linear(self.linear, torch.cat([deltas.get(slot, zero) for slot in QKV_SLOTS]))


def _merged_linear(linear: nn.Linear, delta: torch.Tensor) -> nn.Linear:
    """A new plain linear with weight `(W.float() + delta).to(W.dtype)` (upstream's merge, in float32)."""
    out = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None,
                    device=linear.weight.device, dtype=linear.weight.dtype)
    out.weight.data.copy_(merged_weight(linear.weight.data, delta))
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
    """Wrap the block linears that `cfg.targets` names in every block, by the block type's `LoRALayout` (LoRAT:
    q/k/v, attention proj and the MLP linears, also ViT-g's SwiGLU fc1/fc2 and EVA-02's fc1_g/fc1_x/fc2)."""
    slots = tuple(s for s in QKV_SLOTS if s in cfg.targets)
    for block in blocks:
        layout = lora_layout(block)
        targets = {t for placement in cfg.targets for t in layout.placements[placement]}
        for target in (t for t in layout.targets if t in targets):
            linear = _get(block, target)
            if not isinstance(linear, nn.Linear):
                raise TypeError(f"Expected nn.Linear at '{target}', found {type(linear).__name__}")
            _set(block, target,
                 LoRAQKV(linear, cfg, slots) if target == layout.fused_qkv else LoRALinear(linear, cfg))
