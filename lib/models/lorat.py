"""The LoRAT one-stream tracker network (upstream trackit/LoRAT: trackit/models/methods/LoRAT/lorat.py,
https://github.com/LitingLin/LoRAT), on a timm ViT or EVA-02 backbone (upstream timm_vit/lorat.py, lorat_eva.py)."""
from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import RotaryEmbeddingCat, trunc_normal_
from timm.models.eva import Eva
from timm.models.vision_transformer import VisionTransformer

from lib.models.head import HEADS
from lib.models.peft import PEFT_MODULE_TYPES

TEMPLATE_BACKGROUND, TEMPLATE_FOREGROUND, SEARCH = 0, 1, 2


def search_pos_embed(pretrained_pos_embed: torch.Tensor, grid: int, feat_size: int) -> torch.Tensor:
    """Resize the pretrained `grid x grid` position embedding (CLS row dropped) to the search grid.

    Bicubic, size-based (interpolate offset 0), align_corners=False, no antialias, in float32: exactly how
    upstream builds the shared position embedding. Returns (1, feat_size**2, D) in the input dtype.
    """
    patch = pretrained_pos_embed[:, 1:, :] if pretrained_pos_embed.shape[1] == grid * grid + 1 else pretrained_pos_embed
    dim = patch.shape[-1]
    grid_map = patch.reshape(1, grid, grid, dim).permute(0, 3, 1, 2).float()
    resized = F.interpolate(grid_map, size=(feat_size, feat_size), mode="bicubic", align_corners=False,
                            antialias=False)
    return resized.permute(0, 2, 3, 1).reshape(1, feat_size * feat_size, dim).to(pretrained_pos_embed.dtype)


def cropped_pos_embed(pretrained_pos_embed: torch.Tensor, grid: int, feat_size: int) -> torch.Tensor:
    """Upstream's timm variant: the top-left `feat_size x feat_size` of the pretrained grid (CLS row dropped) when
    the grid is at least that large, else the interpolation of `search_pos_embed`. Returns (1, feat_size**2, D)."""
    if grid < feat_size:
        return search_pos_embed(pretrained_pos_embed, grid, feat_size)
    patch = pretrained_pos_embed[:, 1:, :] if pretrained_pos_embed.shape[1] == grid * grid + 1 else pretrained_pos_embed
    dim = patch.shape[-1]
    return patch.reshape(1, grid, grid, dim)[:, :feat_size, :feat_size, :].reshape(1, feat_size * feat_size, dim)


# `ViTSpec.pos_embed` names: how the search grid's embedding comes from the pretrained one.
POS_EMBED_RESIZE: Mapping[str, Callable[[torch.Tensor, int, int], torch.Tensor]] = MappingProxyType(
    {"interpolate": search_pos_embed, "crop": cropped_pos_embed})


def smam_mask(num_template: int, num_search: int) -> torch.Tensor:
    """S-MAM (MixFormer-style asymmetric attention, paper Table 6; upstream .../modules/mixformer_attn.py): template
    queries attend only to template keys, search queries to every token. Boolean, True = may attend."""
    n = num_template + num_search
    mask = torch.ones(n, n, dtype=torch.bool)
    mask[:num_template, num_template:] = False
    return mask


# `model.attention` names: the attention mask over [template; search] tokens (None: full attention).
ATTENTION_MASKS: Mapping[str, Callable[[int, int], torch.Tensor | None]] = MappingProxyType(
    {"full": lambda num_template, num_search: None, "smam": smam_mask})


def sincos_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine embedding of a `grid x grid` map, MAE style as upstream's sinusoidal ablation builds it:
    token (row i, column j) gets `[sin(j w), cos(j w), sin(i w), cos(i w)]`, `w_k = 10000^(-k / (dim / 4))`,
    k = 0 .. dim/4 - 1. Returns (1, grid**2, dim) float32."""
    if dim % 4:
        raise ValueError(f"sinusoidal position embedding needs an embedding width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                                indexing="ij")
    col, row = cols.reshape(-1, 1) * omega, rows.reshape(-1, 1) * omega
    return torch.cat([col.sin(), col.cos(), row.sin(), row.cos()], dim=1).float().unsqueeze(0)


def grid_rope(rope: RotaryEmbeddingCat, feat_size: int) -> torch.Tensor:
    """timm's rotary table of `rope`'s configuration for a `feat_size x feat_size` grid, (feat_size**2, 2 * head
    dim) float32. EVA-02's rope has a reference grid (16 x 16): every grid's positions are rescaled to span it."""
    rope = copy.deepcopy(rope)
    rope.update_feat_shape([feat_size, feat_size])
    return rope.get_embed()


def eva_rope(vit: Eva, template_feat_size: int, search_feat_size: int) -> torch.Tensor:
    """The rotary table of the [template; search] sequence: each grid its own rope, rows concatenated (upstream
    timm_vit/lorat_eva.py builds a `RotaryEmbeddingCat` per grid with the pretrained reference grid)."""
    return torch.cat([grid_rope(vit.rope, template_feat_size), grid_rope(vit.rope, search_feat_size)])


# Backbone class -> the rotary position table its blocks take (`block(x, rope=...)`) for the [template; search]
# tokens; backbones not listed (timm's VisionTransformer) have none.
ROTARY_EMBEDDINGS: Mapping[type, Callable[[nn.Module, int, int], torch.Tensor]] = MappingProxyType({Eva: eva_rope})


@dataclass(frozen=True)
class InputEmbedding:
    """How template and search tokens are told apart (paper Table 5): position embeddings `shared` (the template
    takes the top-left of the search grid's), `separate` (each grid resized from the pretrained one, OSTrack-like)
    or `sinusoidal` (fixed, MixViT-like); `token_types` 0 (none), 2 (template / search) or 3 (template background
    / template foreground / search)."""

    pos: str
    token_types: int


# `model.embedding` names: the five schemes of Table 5 (upstream ablation/input_emb/, config/LoRAT_ablation*).
INPUT_EMBEDDINGS: Mapping[str, InputEmbedding] = MappingProxyType({
    "sinusoidal": InputEmbedding("sinusoidal", 0),  # (1)
    "separate": InputEmbedding("separate", 0),  # (2)
    "shared_types": InputEmbedding("shared", 2),  # (3)
    "separate_types_fg": InputEmbedding("separate", 3),  # (4)
    "lorat": InputEmbedding("shared", 3),  # (5)
})


class LoRAT(nn.Module):
    """Template and search tokens share one position embedding (the template takes its top-left sub-grid) and
    carry token-type embeddings; all tokens go through the ViT blocks jointly; the head reads search tokens.
    (`embedding` selects another Table 5 scheme: separate or sinusoidal position embeddings, fewer token types.)"""

    # The members that `__init__` takes from the pretrained ViT (`pos_embed`, `z_pos_embed` resized from it); the
    # token-type embedding, the head and any PEFT modules are LoRAT's own.
    BACKBONE_PARTS = ("patch_embed", "pos_embed", "z_pos_embed", "norm_pre", "blocks", "norm")

    def __init__(self, vit: VisionTransformer | Eva, template_feat_size: int, search_feat_size: int,
                 pos_embed: str = "interpolate", head: str = "mlp", attention: str = "full",
                 embedding: str = "lorat") -> None:
        super().__init__()
        if template_feat_size > search_feat_size:
            raise ValueError("The template grid must not be larger than the search grid")
        self.template_feat_size = template_feat_size
        self.search_feat_size = search_feat_size
        self.embed_dim = vit.embed_dim
        self.patch_embed = vit.patch_embed
        self.patch_embed.strict_img_size = False  # template and search sizes differ from the 518 px of pretraining
        grid = vit.patch_embed.grid_size[0]
        scheme = INPUT_EMBEDDINGS[embedding]
        if scheme.pos == "sinusoidal":  # fixed: buffers, not saved
            self.register_buffer("pos_embed", sincos_pos_embed(self.embed_dim, search_feat_size), persistent=False)
            self.register_buffer("z_pos_embed", sincos_pos_embed(self.embed_dim, template_feat_size),
                                 persistent=False)
        else:
            resize = POS_EMBED_RESIZE[pos_embed]
            self.pos_embed = nn.Parameter(resize(vit.pos_embed.data, grid, search_feat_size))
            self.z_pos_embed = nn.Parameter(resize(vit.pos_embed.data, grid, template_feat_size)) \
                if scheme.pos == "separate" else None
        self.token_type_embed = None
        if scheme.token_types:
            self.token_type_embed = nn.Parameter(torch.empty(scheme.token_types, self.embed_dim))
            trunc_normal_(self.token_type_embed, std=0.02)
        self.norm_pre = vit.norm_pre  # CLIP's pre-norm; Identity for the other backbones
        self.blocks = vit.blocks
        rotary = ROTARY_EMBEDDINGS.get(type(vit))
        # EVA-02's rotary table (None for ViTs): fixed, a buffer like timm's own, not saved
        self.register_buffer("rope", None if rotary is None else rotary(vit, template_feat_size, search_feat_size),
                             persistent=False)
        if rotary is not None:  # the class token is dropped: every token is rotated (upstream CustomEvaAttention)
            for block in self.blocks:
                block.attn.num_prefix_tokens = 0
        self.norm = vit.norm
        self.head = HEADS[head](self.embed_dim, search_feat_size)
        self.register_buffer("attn_mask", ATTENTION_MASKS[attention](template_feat_size ** 2, search_feat_size ** 2),
                             persistent=False)

    def backbone_state_keys(self) -> set[str]:
        """The `state_dict()` keys whose values come from the pretrained backbone file (`BACKBONE_PARTS` without
        the modules a PEFT method added inside the blocks), i.e. what a checkpoint may leave to that file."""
        adapters = tuple(f"{name}." for name, module in self.named_modules() if isinstance(module, PEFT_MODULE_TYPES))
        return {key for key in self.state_dict()
                if key.split(".", 1)[0] in self.BACKBONE_PARTS and not key.startswith(adapters)}

    def template_pos_embed(self) -> torch.Tensor:
        """The template's own embedding (separate / sinusoidal schemes), else the top-left `Hz x Wz` slice of the
        search grid's embedding, flattened row-major."""
        if self.z_pos_embed is not None:
            return self.z_pos_embed
        s, t = self.search_feat_size, self.template_feat_size
        return self.pos_embed.view(1, s, s, self.embed_dim)[:, :t, :t, :].reshape(1, t * t, self.embed_dim)

    def token_types(self, z_feat_mask: torch.Tensor) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """What the template and the search tokens add: rows 0/1 by the foreground mask and row 2 (three types),
        rows 0 and 1 (two types), nothing (none). The search type is always the last row."""
        table = self.token_type_embed
        if table is None:
            return 0.0, 0.0
        template = table[z_feat_mask.flatten(1)] if table.shape[0] == 3 else table[TEMPLATE_BACKGROUND]
        return template, table[-1]

    def forward(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """z: (B,3,Hz,Wz) template, x: (B,3,Hx,Wx) search (ImageNet-normalised), z_feat_mask: (B,hz,wz) 0/1."""
        template_type, search_type = self.token_types(z_feat_mask)
        z_tokens, x_tokens = self.patch_embed(z), self.patch_embed(x)
        # `.to`: a fixed (buffer) embedding stays float32 when an engine casts only the parameters to half
        z_tokens = z_tokens + self.template_pos_embed().to(z_tokens.dtype) + template_type
        x_tokens = x_tokens + self.pos_embed.to(x_tokens.dtype) + search_type
        tokens = self.norm_pre(torch.cat([z_tokens, x_tokens], dim=1))
        rotary = {} if self.rope is None else {"rope": self.rope}
        for block in self.blocks:
            tokens = block(tokens, attn_mask=self.attn_mask, **rotary)
        # LayerNorm is per token, so normalising only the search tokens equals upstream's norm-then-discard.
        return self.head(self.norm(tokens[:, z_tokens.shape[1]:]))
