"""The LoRATv2 tracker network (upstream https://github.com/LitingLin/LoRAT, trackit/models/methods/LoRATv2/model.py
and modules/; docs/loratv2.md).

The token sequence is split into chunks: [4 registers + template | search stream 0 | search stream 1 | ...]. Chunk c
attends to the keys of chunks 0..c only (chunked-causal), so the K/V of earlier chunks can be cached while tracking.
Every block linear (qkv, proj, fc1, fc2) exists once per chunk ("expert"); chunk c always runs through expert c, while
LayerNorms, LayerScales and drop path are shared. An expert is either the frozen pretrained linear with LoRA
(lib/models/lora.py, trained) or a plain frozen linear (merged, or a frozen phase-1 expert in phase 2).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from timm.models.vision_transformer import Block, VisionTransformer

from lib.config import ConfigError, ExperimentConfig, LoRAConfig, ModelConfig
from lib.models.backbone import create_vit, load_backbone_weights, resolve_backbone_weights
from lib.models.head import HEADS
from lib.models.lora import LORA_PLACEMENTS, LoRA, LoRALinear, LoRAQKV

EXPERT_ROLES = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")  # the block linears replicated per chunk


def chunk_mask(chunk_sizes: tuple[int, ...]) -> torch.Tensor:
    """The chunked-causal attention mask over the whole sequence: True where a query token may attend to a key
    token, i.e. where the key's chunk is not after the query's chunk. (T, T) bool, T = sum(chunk_sizes)."""
    chunk_of = torch.repeat_interleave(torch.arange(len(chunk_sizes)), torch.tensor(chunk_sizes))
    return chunk_of[:, None] >= chunk_of[None, :]


def _cache_rows(slots: torch.Tensor) -> torch.Tensor | slice:
    """How to address the cache rows of `slots`: a slice (views, no gather copies) when they are consecutive and on
    the CPU, where the check costs nothing; otherwise the index tensor itself (no host sync on a GPU)."""
    if slots.device.type == "cpu" and slots.numel() > 0 and bool((slots[1:] - slots[:-1] == 1).all()):
        first = int(slots[0])
        return slice(first, first + slots.numel())
    return slots


@dataclass(frozen=True)
class KVCache:
    """Keys and values of every block, one row per tracked sequence ("slot"): `keys[i]`, `values[i]` have shape
    (capacity, heads, T, head_dim) with T = sum(chunk_sizes). Along T, chunk c occupies rows
    [sum(chunk_sizes[:c]), sum(chunk_sizes[:c + 1])); the rows of the last chunk are scratch, rewritten by every
    `track`."""

    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[0]


def _expert(linear: nn.Linear, lora: LoRAConfig | None, qkv: bool) -> nn.Module:
    """A LoRA-trainable expert wraps the frozen pretrained linear itself (several may share it: it never changes);
    a plain expert is an independent frozen copy, since merging or loading changes its weight."""
    if lora is None:
        return copy.deepcopy(linear)
    return LoRAQKV(linear, lora) if qkv else LoRALinear(linear, lora)


class ChunkedAttention(nn.Module):
    """timm's attention with one qkv and one proj expert per chunk, and chunk c attending to chunks 0..c."""

    def __init__(self, qkv: nn.ModuleList, proj: nn.ModuleList, num_heads: int) -> None:
        super().__init__()
        self.qkv = qkv
        self.proj = proj
        self.num_heads = num_heads

    def _split_heads(self, x: torch.Tensor, parts: int) -> torch.Tensor:
        """(B, N, parts * D) -> (parts, B, heads, N, head_dim)."""
        b, n, _ = x.shape
        return x.reshape(b, n, parts, self.num_heads, -1).permute(2, 0, 3, 1, 4)

    def _attend(self, expert: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        o = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(head_dim), as timm
        return self.proj[expert](o.transpose(1, 2).flatten(2))

    def forward(self, x: torch.Tensor, chunk_sizes: tuple[int, ...]) -> torch.Tensor:
        keys, values, outputs = [], [], []
        for expert, chunk in enumerate(x.split(chunk_sizes, dim=1)):
            q, k, v = self._split_heads(self.qkv[expert](chunk), 3)
            keys.append(k)
            values.append(v)
            outputs.append(self._attend(expert, q, torch.cat(keys, dim=2), torch.cat(values, dim=2)))
        return torch.cat(outputs, dim=1)

    def cached(self, x: torch.Tensor, expert: int, keys: torch.Tensor, values: torch.Tensor,
               slots: torch.Tensor | slice, offset: int) -> torch.Tensor:
        """One chunk at rows [offset, offset + N) of the cache: write its K/V there, attend over rows
        [0, offset + N) of its slots."""
        q, k, v = self._split_heads(self.qkv[expert](x), 3)
        end = offset + x.shape[1]
        keys[slots, :, offset:end] = k.to(keys.dtype)
        values[slots, :, offset:end] = v.to(values.dtype)
        return self._attend(expert, q, keys[slots, :, :end].to(q.dtype), values[slots, :, :end].to(q.dtype))

    def write_kv(self, x: torch.Tensor, expert: int, keys: torch.Tensor, values: torch.Tensor,
                 slots: torch.Tensor | slice, offset: int) -> None:
        """Only the K/V of a chunk (the last block of `init`/`update`): the k and v rows of the plain fused qkv."""
        qkv = self.qkv[expert]
        dim = qkv.out_features // 3
        k, v = self._split_heads(F.linear(x, qkv.weight[dim:], qkv.bias[dim:] if qkv.bias is not None else None), 2)
        end = offset + x.shape[1]
        keys[slots, :, offset:end] = k.to(keys.dtype)
        values[slots, :, offset:end] = v.to(values.dtype)


class RoutedMlp(nn.Module):
    """timm's MLP (fc1, GELU, fc2; its dropouts are 0) with one fc1 and one fc2 expert per chunk."""

    def __init__(self, fc1: nn.ModuleList, act: nn.Module, fc2: nn.ModuleList) -> None:
        super().__init__()
        self.fc1 = fc1
        self.act = act
        self.fc2 = fc2

    def expert(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return self.fc2[index](self.act(self.fc1[index](x)))

    def forward(self, x: torch.Tensor, chunk_sizes: tuple[int, ...]) -> torch.Tensor:
        return torch.cat([self.expert(e, chunk) for e, chunk in enumerate(x.split(chunk_sizes, dim=1))], dim=1)


class LoRATv2Block(nn.Module):
    """A pre-norm ViT block with LayerScale whose linears are routed by chunk; norms, layer scales and drop path
    (one mask per sample over the whole sequence) are the pretrained block's, shared by all chunks."""

    def __init__(self, block: Block, lora: tuple[LoRAConfig | None, ...]) -> None:
        super().__init__()
        experts = {role: nn.ModuleList(_expert(block.get_submodule(role), cfg, role == "attn.qkv") for cfg in lora)
                   for role in EXPERT_ROLES}
        self.norm1 = block.norm1
        self.attn = ChunkedAttention(experts["attn.qkv"], experts["attn.proj"], block.attn.num_heads)
        self.ls1 = block.ls1
        self.drop_path1 = block.drop_path1
        self.norm2 = block.norm2
        self.mlp = RoutedMlp(experts["mlp.fc1"], block.mlp.act, experts["mlp.fc2"])
        self.ls2 = block.ls2
        self.drop_path2 = block.drop_path2

    def forward(self, x: torch.Tensor, chunk_sizes: tuple[int, ...]) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), chunk_sizes)))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x), chunk_sizes)))

    def cached(self, x: torch.Tensor, expert: int, keys: torch.Tensor, values: torch.Tensor,
               slots: torch.Tensor | slice, offset: int) -> torch.Tensor:
        x = x + self.ls1(self.attn.cached(self.norm1(x), expert, keys, values, slots, offset))
        return x + self.ls2(self.mlp.expert(expert, self.norm2(x)))


class LoRATv2(nn.Module):
    """LoRATv2 over a timm DINOv2 ViT with registers (`no_embed_class`, 37 x 37 pretrained position grid).

    `trainable[e]` (one flag per chunk: template, then each search stream) makes expert e LoRA-trainable together
    with that chunk's token-type embedding (and, for a search stream, its head); other experts are plain frozen
    copies. Phase 1 trains all, phase 2 only the last; the inference build trains none.
    """

    def __init__(self, vit: VisionTransformer, backbone: str, template_size: int, search_sizes: tuple[int, ...],
                 lora: LoRAConfig | None, trainable: tuple[bool, ...], head: str = "mlp") -> None:
        super().__init__()
        self.backbone = backbone  # the VIT_SPECS name of `vit`: the layout of its weight file (checkpoint loading)
        if len(trainable) != 1 + len(search_sizes):
            raise ValueError(f"one trainable flag per chunk expected ({1 + len(search_sizes)}), got {trainable}")
        if any(trainable) and lora is None:
            raise ValueError("LoRA-trainable experts need a LoRA config (model.lora)")
        if vit.reg_token is None or not vit.no_embed_class or not isinstance(vit.norm_pre, nn.Identity):
            raise ValueError("LoRATv2 needs a timm ViT with register tokens, no_embed_class and no pre-norm (a "
                             "*_reg4_dinov2)")
        self.patch_size = vit.patch_embed.patch_size[0]
        self.grid = vit.patch_embed.grid_size
        self.embed_dim = vit.embed_dim
        self.template_size = template_size
        self.search_sizes = tuple(search_sizes)
        for size in (template_size, *search_sizes):
            if size % self.patch_size or size // self.patch_size > min(self.grid):
                raise ValueError(f"crop size {size} must be a multiple of the patch size {self.patch_size} and at "
                                 f"most {min(self.grid) * self.patch_size} px (the pretrained position grid)")
        self.num_streams = len(search_sizes)
        self.chunk_sizes = (vit.reg_token.shape[1] + (template_size // self.patch_size) ** 2,
                            *((s // self.patch_size) ** 2 for s in search_sizes))
        vit.requires_grad_(False)
        self.patch_embed = vit.patch_embed
        self.patch_embed.strict_img_size = False  # crops are smaller than the 518 px of pretraining
        self.pos_embed = vit.pos_embed  # (1, H*W, D): no class row (no_embed_class)
        self.reg_token = vit.reg_token  # (1, 4, D): no position embedding, no token type
        experts = tuple(lora if t else None for t in trainable)
        self.blocks = nn.ModuleList(LoRATv2Block(block, experts) for block in vit.blocks)
        self.template_token_type_embed = nn.Parameter(torch.empty(2, self.embed_dim))  # background, foreground
        self.search_region_token_type_embed = nn.ParameterList(
            nn.Parameter(torch.empty(1, self.embed_dim)) for _ in search_sizes)
        for embed in (self.template_token_type_embed, *self.search_region_token_type_embed):
            nn.init.normal_(embed, std=1e-6)
        self.norms = nn.ModuleList(copy.deepcopy(vit.norm) for _ in search_sizes)
        self.heads = nn.ModuleList(HEADS[head](self.embed_dim, s // self.patch_size) for s in search_sizes)
        self.requires_grad_(False)
        for expert, train in enumerate(trainable):
            if train:
                for member in self._trained_with(expert):
                    member.requires_grad_(True)

    def _trained_with(self, expert: int) -> list[nn.Module | nn.Parameter]:
        """What trains when expert `expert` does: its LoRA adapters in every block, and the template's token types
        (expert 0) or the stream's token type and head (expert i + 1 = search stream i)."""
        experts = [block.get_submodule(role)[expert] for block in self.blocks for role in EXPERT_ROLES]
        adapters = [m for expert_module in experts for m in expert_module.modules() if isinstance(m, LoRA)]
        if expert == 0:
            return [*adapters, self.template_token_type_embed]
        return [*adapters, self.search_region_token_type_embed[expert - 1], self.heads[expert - 1]]

    def _pos_embed(self, size: int) -> torch.Tensor:
        """The top-left (size/patch)^2 corner of the pretrained grid, row-major: no resizing for any stream."""
        n = size // self.patch_size
        grid = self.pos_embed.view(1, self.grid[0], self.grid[1], self.embed_dim)
        return grid[:, :n, :n].reshape(1, n * n, self.embed_dim)

    def _check_size(self, image: torch.Tensor, size: int, what: str) -> None:
        if tuple(image.shape[-2:]) != (size, size):
            raise ValueError(f"{what}: expected a {size}x{size} crop, got {tuple(image.shape[-2:])}")

    def template_tokens(self, z: torch.Tensor, z_feat_mask: torch.Tensor) -> torch.Tensor:
        """Chunk 0: the registers, then the template tokens with position and fg/bg token type."""
        self._check_size(z, self.template_size, "template")
        tokens = self.patch_embed(z) + self._pos_embed(self.template_size)
        tokens = tokens + self.template_token_type_embed[z_feat_mask.flatten(1).long()]
        return torch.cat([self.reg_token.expand(z.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1)

    def stream_tokens(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Search stream `index`: patch tokens with position and the stream's token type."""
        self._check_size(x, self.search_sizes[index], f"search stream {index}")
        return self.patch_embed(x) + self._pos_embed(self.search_sizes[index]) + \
            self.search_region_token_type_embed[index]

    def forward(self, z: torch.Tensor, x_list: list[torch.Tensor] | tuple[torch.Tensor, ...],
                z_feat_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """All chunks at once (training): z (B,3,Ht,Wt), one (B,3,Hi,Wi) crop per search stream (ImageNet-normalised),
        z_feat_mask (B,ht,wt) 0/1. Returns the head output of the last stream."""
        if len(x_list) != self.num_streams:
            raise ValueError(f"expected {self.num_streams} search crops, got {len(x_list)}")
        tokens = torch.cat([self.template_tokens(z, z_feat_mask),
                            *(self.stream_tokens(i, x) for i, x in enumerate(x_list))], dim=1)
        for block in self.blocks:
            tokens = block(tokens, self.chunk_sizes)
        return self.heads[-1](self.norms[-1](tokens[:, -self.chunk_sizes[-1]:]))

    # ---- streaming (merged inference build) ----

    def lora_experts(self) -> tuple[int, ...]:
        """The experts (chunk indices) that carry LoRA adapters; empty for the merged inference build."""
        return tuple(e for e, expert in enumerate(self.blocks[0].attn.qkv) if isinstance(expert, LoRAQKV))

    def is_merged(self) -> bool:
        """True when every expert is a plain linear (the inference build, or after `merge_for_inference`)."""
        return all(isinstance(expert, nn.Linear) for block in self.blocks for role in EXPERT_ROLES
                   for expert in block.get_submodule(role))

    def new_kv_cache(self, capacity: int, dtype: torch.dtype | None = None,
                     device: torch.device | str | None = None) -> KVCache:
        """An empty cache for `capacity` sequences (default: the model's dtype and device)."""
        dtype = dtype if dtype is not None else self.pos_embed.dtype
        device = device if device is not None else self.pos_embed.device
        heads = self.blocks[0].attn.num_heads
        shape = (capacity, heads, sum(self.chunk_sizes), self.embed_dim // heads)
        return KVCache(tuple(torch.zeros(shape, dtype=dtype, device=device) for _ in self.blocks),
                       tuple(torch.zeros(shape, dtype=dtype, device=device) for _ in self.blocks))

    def _encode(self, chunk: int, tokens: torch.Tensor, cache: KVCache, slots: torch.Tensor,
                full: bool) -> torch.Tensor | None:
        """Run chunk `chunk` through the blocks with its expert, writing its K/V at its rows of `slots`. `full`:
        also run the last block completely and return its tokens; otherwise the last block only writes K/V."""
        if not self.is_merged():
            raise RuntimeError("init/update/track run on the merged inference build: build the model with "
                               "build_model(cfg, training=False) or merge it with merge_for_inference(model)")
        offset = sum(self.chunk_sizes[:chunk])
        slots = _cache_rows(slots.to(device=tokens.device, dtype=torch.long))
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            if i == last and not full:
                block.attn.write_kv(block.norm1(tokens), chunk, cache.keys[i], cache.values[i], slots, offset)
                return None
            tokens = block.cached(tokens, chunk, cache.keys[i], cache.values[i], slots, offset)
        return tokens

    def init(self, z: torch.Tensor, z_feat_mask: torch.Tensor, cache: KVCache, slots: torch.Tensor) -> None:
        """Write the K/V of chunk 0 (registers + template) into rows [0, chunk_sizes[0]) of `slots`."""
        self._encode(0, self.template_tokens(z, z_feat_mask), cache, slots, full=False)

    def update(self, index: int, x: torch.Tensor, cache: KVCache, slots: torch.Tensor) -> None:
        """Write the K/V of search stream `index` (not the last one: e.g. phase 2's dynamic reference)."""
        if not 0 <= index < self.num_streams - 1:
            raise ValueError(f"update: stream index must be in [0, {self.num_streams - 1}), got {index} (the last "
                             f"stream is tracked with track(), its rows are scratch)")
        self._encode(index + 1, self.stream_tokens(index, x), cache, slots, full=False)

    def track(self, index: int, x: torch.Tensor, cache: KVCache, slots: torch.Tensor) -> dict[str, torch.Tensor]:
        """Search stream `index` against the cached earlier chunks: its norm and head output for its grid."""
        if not 0 <= index < self.num_streams:
            raise ValueError(f"track: stream index must be in [0, {self.num_streams}), got {index}")
        tokens = self._encode(index + 1, self.stream_tokens(index, x), cache, slots, full=True)
        return self.heads[index](self.norms[index](tokens))



def check_config(cfg: ModelConfig, source: str) -> None:
    """LoRATv2's requirements on `model`: its `loratv2` section, LoRA on every block linear with alpha == r
    (upstream's LoRA forward ignores alpha/r while its merge applies it; we refuse a mismatch instead of training
    and tracking with different weights), no other PEFT method."""
    if cfg.loratv2 is None:
        raise ConfigError(f"{source}: a loratv2 experiment needs a model.loratv2 section (phase, reference stream)")
    if cfg.lora is None or cfg.peft is not None:
        raise ConfigError(f"{source}: LoRATv2 trains LoRA experts: set model.lora (and no model.peft)")
    if cfg.lora.alpha != cfg.lora.r or cfg.lora.use_rslora:
        raise ConfigError(f"{source}: LoRATv2 needs model.lora.alpha == model.lora.r and use_rslora false (scaling "
                         f"1); got alpha={cfg.lora.alpha:g}, r={cfg.lora.r}, use_rslora={cfg.lora.use_rslora}")
    if set(cfg.lora.targets) != set(LORA_PLACEMENTS):
        raise ConfigError(f"{source}: LoRATv2 puts LoRA on every block linear: model.lora.targets must be "
                         f"{list(LORA_PLACEMENTS)}, got {list(cfg.lora.targets)}")


def trainable_experts(cfg: ModelConfig, training: bool) -> tuple[bool, ...]:
    """One flag per chunk: phase 1 trains every expert, phase 2 only the last stream's; inference none."""
    chunks = 1 + len(cfg.search_sizes)
    if not training:
        return (False,) * chunks
    return (True,) * chunks if cfg.loratv2.phase == 1 else (False,) * (chunks - 1) + (True,)


def build_loratv2(cfg: ExperimentConfig, training: bool, backbone_weights: str | Path | None) -> LoRATv2:
    """LoRATv2 for `cfg` (see `lib.models.build_model`). Random initialisations are drawn under `train.seed`. Drop
    path is timm's linear ramp from 0 (first block) to `model.drop_path` (last block)."""
    check_config(cfg.model, f"experiments/{cfg.script}/{cfg.name}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        vit = create_vit(cfg.model.backbone, cfg.model.drop_path)
        if backbone_weights is not None:
            load_backbone_weights(vit, cfg.model.backbone,
                                  resolve_backbone_weights(cfg.model.backbone, backbone_weights))
        model = LoRATv2(vit, cfg.model.backbone, cfg.model.template_size, cfg.model.search_sizes, cfg.model.lora,
                        trainable_experts(cfg.model, training), cfg.model.head)
    if not training:
        model.eval().requires_grad_(False)
    return model
