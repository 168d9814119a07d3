"""Parameter-efficient fine-tuning methods of the paper's Table 4, behind one registry.

Each method adds trainable modules to the frozen ViT blocks of a LoRAT model; `build_model` freezes the backbone,
applies the method and leaves the token-type embedding and the head trainable, as upstream does for every PEFT
ablation (https://github.com/LitingLin/LoRAT: trackit/models/methods/LoRAT/ablation/peft/{adapter,vpt_deep,ia3}.py
and the modules they use, modules/dinov2_adapter.py, modules/dinov2_vpt_block.py, modules/ia3/__init__.py):

* `adapter`: a bottleneck (Linear D -> D/reduction, GELU, Linear back), all zero-initialised, reading the attention
  branch after layer scale and drop path and added to the residual next to it.
* `vpt`: VPT-deep, `num_prompts` learned tokens prepended to the sequence in every block and dropped after it,
  uniform init in +-sqrt(6 / (3 * patch^2 + D)).
* `ia3`: learned per-channel scales (ones at init) of the k and v outputs of qkv and of the input of mlp.fc2.
* `lora` lives in lib/models/lora.py (`model.lora`); `method_of` returns it from the same table entry type.

Methods with no inference cost (LoRA, IA3) are `mergeable`: inference models are plain ViTs and `merge_peft_`
folds a trained model into one. Adapter and VPT keep their modules at inference.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import nn
from timm.models.vision_transformer import Block

from lib.config import ModelConfig
from lib.models.lora import LoRA, LoRALinear, LoRAQKV, add_lora_


class BottleneckAdapter(nn.Module):
    """`up(GELU(down(x)))`, both linears zero-initialised (weights and biases), as upstream."""

    def __init__(self, dim: int, reduction: int) -> None:
        super().__init__()
        if dim % reduction:
            raise ValueError(f"adapter_reduction {reduction} does not divide the embedding width {dim}")
        self.down = nn.Linear(dim, dim // reduction)
        self.act = nn.GELU()
        self.up = nn.Linear(dim // reduction, dim)
        for linear in (self.down, self.up):
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x)))


class AdapterBranch(nn.Module):
    """Replaces a block's `drop_path1`: returns `d + adapter(d)` with `d` the attention branch after layer scale
    and drop path, so the block computes `x + d + adapter(d)` (upstream DINOv2AdapterBlock)."""

    def __init__(self, drop_path: nn.Module, adapter: BottleneckAdapter) -> None:
        super().__init__()
        self.drop_path = drop_path
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.drop_path(x)
        return branch + self.adapter(branch)


class PromptTokens(nn.Module):
    """A block's VPT-deep prompts, `(1, n, D)`. Named `embed` so that, as upstream's `prompt_embeddings`, the
    optimiser's `embed` rule exempts them from weight decay."""

    def __init__(self, num: int, dim: int, patch_size: int) -> None:
        super().__init__()
        bound = math.sqrt(6.0 / (3 * patch_size * patch_size + dim))
        self.embed = nn.Parameter(torch.empty(1, num, dim).uniform_(-bound, bound))


class PromptedBlock(Block):
    """A timm ViT block (same children, same state-dict names) that runs with its prompts prepended and returns
    only the outputs of the input tokens."""

    def __init__(self, block: Block, prompt: PromptTokens) -> None:
        nn.Module.__init__(self)
        for name, child in block.named_children():
            self.add_module(name, child)
        self.prompt = prompt

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        prompts = self.prompt.embed.to(x.dtype).expand(x.shape[0], -1, -1)
        out = super().forward(torch.cat([prompts, x], dim=1), attn_mask=attn_mask, is_causal=is_causal)
        return out[:, prompts.shape[1]:]


def ia3_output_folded(weight: torch.Tensor, bias: torch.Tensor | None,
                      scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Fused qkv `(W, b)` (rows [q; k; v]) with its k and v rows scaled by `scale` ([k; v], 2D values): scaling
    output rows of `Wx + b` is scaling those rows of W and b. float32."""
    ones = torch.ones(weight.shape[0] - scale.numel(), device=scale.device)
    rows = torch.cat([ones, scale.float()])
    return weight.float() * rows[:, None], None if bias is None else bias.float() * rows


def ia3_input_folded(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """`W (s * x) = (W diag(s)) x`: the columns of W scaled by `scale`. float32."""
    return weight.float() * scale.float()[None, :]


def _fold_output_(weight: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor) -> None:
    folded_weight, folded_bias = ia3_output_folded(weight, bias, scale)
    weight.copy_(folded_weight)
    if bias is not None:
        bias.copy_(folded_bias)


def _fold_input_(weight: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor) -> None:
    weight.copy_(ia3_input_folded(weight, scale))


# An IA3 scale vector's checkpoint key, and how it folds in place into the plain linear `<module>` (weight, bias):
# what the checkpoint reader does when a training checkpoint meets an inference model.
IA3_KEY = re.compile(r"^(?P<module>blocks\.\d+\.(?P<kind>attn\.qkv|mlp\.fc2))\.ia3\.weight$")
IA3_FOLDS: Mapping[str, Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor], None]] = MappingProxyType(
    {"attn.qkv": _fold_output_, "mlp.fc2": _fold_input_})


class IA3Scale(nn.Module):
    """A learned per-channel scale vector, ones at init."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))


class IA3QKV(nn.Module):
    """A frozen fused qkv linear whose k and v outputs are scaled per channel (q untouched)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear
        self.dim = linear.out_features // 3
        self.ia3 = IA3Scale(2 * self.dim)  # [k scales; v scales]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        return torch.cat([y[..., :self.dim], y[..., self.dim:] * self.ia3.weight.to(y.dtype)], dim=-1)

    def merged(self) -> nn.Linear:
        weight, bias = ia3_output_folded(self.linear.weight, self.linear.bias, self.ia3.weight.detach())
        return _rebuilt(self.linear, weight, bias)


class IA3Input(nn.Module):
    """A frozen linear whose input is scaled per channel (upstream: mlp.fc2)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear
        self.ia3 = IA3Scale(linear.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.ia3.weight.to(x.dtype))

    def merged(self) -> nn.Linear:
        weight = ia3_input_folded(self.linear.weight, self.ia3.weight.detach())
        return _rebuilt(self.linear, weight, None if self.linear.bias is None else self.linear.bias.float())


def _rebuilt(linear: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """A plain linear like `linear` holding `weight`/`bias` (computed in float32), cast to its dtype."""
    out = nn.Linear(linear.in_features, linear.out_features, bias=bias is not None, device=linear.weight.device,
                    dtype=linear.weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        if bias is not None:
            out.bias.copy_(bias)
    return out.requires_grad_(linear.weight.requires_grad)


# Modules whose parameters a PEFT method adds (they never come from the pretrained backbone file).
PEFT_MODULE_TYPES = (LoRA, BottleneckAdapter, PromptTokens, IA3Scale)
# Wrappers that `merge_peft_` replaces by a plain nn.Linear (each has `merged()`).
MERGEABLE_TYPES = (LoRALinear, LoRAQKV, IA3QKV, IA3Input)


def _add_adapters_(model: nn.Module, cfg: ModelConfig) -> None:
    for block in model.blocks:
        block.drop_path1 = AdapterBranch(block.drop_path1, BottleneckAdapter(model.embed_dim,
                                                                             cfg.peft.adapter_reduction))


def _vit_blocks(model: nn.Module, method: str) -> nn.ModuleList:
    """`model.blocks`, checked to be timm ViT blocks: VPT wraps their plain call, IA3 their fused qkv."""
    other = sorted({type(block).__name__ for block in model.blocks if not isinstance(block, Block)})
    if other:
        raise ValueError(f"PEFT method '{method}' is built for timm ViT blocks, not {', '.join(other)} "
                         f"(EVA-02 backbones: use LoRA, model.lora, or full fine-tuning)")
    return model.blocks


def _add_prompts_(model: nn.Module, cfg: ModelConfig) -> None:
    patch = model.patch_embed.patch_size[0]
    for i, block in enumerate(_vit_blocks(model, "vpt")):
        model.blocks[i] = PromptedBlock(block, PromptTokens(cfg.peft.num_prompts, model.embed_dim, patch))


def _add_ia3_(model: nn.Module, cfg: ModelConfig) -> None:
    for block in _vit_blocks(model, "ia3"):
        block.attn.qkv = IA3QKV(block.attn.qkv)
        block.mlp.fc2 = IA3Input(block.mlp.fc2)


def _add_lora_(model: nn.Module, cfg: ModelConfig) -> None:
    add_lora_(model.blocks, cfg.lora)


@dataclass(frozen=True)
class PEFTMethod:
    """`apply(model, cfg)` adds the method's (trainable) modules; `mergeable`: it folds into plain linears."""

    apply: Callable[[nn.Module, ModelConfig], None]
    mergeable: bool


LORA = PEFTMethod(_add_lora_, mergeable=True)
# `model.peft.method` names (checked when a config loads).
PEFT_METHODS: Mapping[str, PEFTMethod] = MappingProxyType({
    "adapter": PEFTMethod(_add_adapters_, mergeable=False),
    "vpt": PEFTMethod(_add_prompts_, mergeable=False),
    "ia3": PEFTMethod(_add_ia3_, mergeable=True),
})


def method_of(cfg: ModelConfig) -> PEFTMethod | None:
    """The PEFT method a model config selects: LoRA (`model.lora`), one of `PEFT_METHODS` (`model.peft`), or
    None for full fine-tuning."""
    if cfg.peft is not None:
        return PEFT_METHODS[cfg.peft.method]
    return LORA if cfg.lora is not None else None


def merge_peft_(model: nn.Module) -> None:
    """Replace every mergeable wrapper (LoRA, IA3) of `model` by its plain merged `nn.Linear`, in place."""
    wrapped = [(name, m) for name, m in model.named_modules() if isinstance(m, MERGEABLE_TYPES)]
    for name, module in wrapped:
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, module.merged())
