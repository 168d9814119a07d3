"""LoRAT's MLP-only anchor-free head (upstream trackit/LoRAT: trackit/models/methods/LoRAT/modules/head/mlp.py), and
the conv heads of the paper's Table 6 ablation, behind the `HEADS` registry."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
from torch import nn
from timm.layers import trunc_normal_


class MLP(nn.Module):
    """`layers[0..2]` linear layers of width `dim` with exact GELU between them (none after the last)."""

    def __init__(self, dim: int, out_dim: int, num_layers: int = 3) -> None:
        super().__init__()
        widths = [dim] * num_layers + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x


def reference_points(feat_size: int) -> torch.Tensor:
    """Normalised cell centres `((j + 0.5) / W, (i + 0.5) / H)`, shape (H, W, 2), row-major."""
    centres = (torch.arange(feat_size, dtype=torch.float32) + 0.5) / feat_size
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([xs, ys], dim=-1)


class MlpAnchorFreeHead(nn.Module):
    """Per-token classification logit and (l, t, r, b) distances to the box edges from the token's centre.

    Returns `{'score_map': (B, H, W) float32 logits, 'boxes': (B, H, W, 4) float32 normalised xyxy}`; boxes are
    relative to the search crop (0..1 spans the crop) and may extend beyond it.
    """

    def __init__(self, dim: int, feat_size: int) -> None:
        super().__init__()
        self.feat_size = feat_size
        self.cls_mlp = MLP(dim, 1)
        self.reg_mlp = MLP(dim, 4)
        self.register_buffer("ref_points", reference_points(feat_size), persistent=False)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b = x.shape[0]
        h = w = self.feat_size
        score_map = self.cls_mlp(x).float().view(b, h, w)
        dist = self.reg_mlp(x).float().sigmoid().view(b, h, w, 4)
        boxes = torch.cat([self.ref_points - dist[..., :2], self.ref_points + dist[..., 2:]], dim=-1)
        return {"score_map": score_map, "boxes": boxes}


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    """3x3 conv (with bias), BatchNorm, ReLU: one stage of the conv heads."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=True), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def conv_tower(dim: int, channels: int, out: int) -> nn.Sequential:
    """Four conv stages halving the width from `channels` (256 -> 128 -> 64 -> 32), then a 1x1 conv to `out`."""
    widths = [dim, channels, channels // 2, channels // 4, channels // 8]
    stages = [_conv_bn_relu(a, b) for a, b in zip(widths[:-1], widths[1:])]
    return nn.Sequential(*stages, nn.Conv2d(widths[-1], out, kernel_size=1))


class ConvAnchorFreeHead(nn.Module):
    """Table 6 ablation: LoRAT's anchor-free outputs from two conv towers over the search-token map instead of MLPs
    (upstream trackit/models/methods/LoRAT/modules/head/conv.py; PyTorch default init). Same output as
    `MlpAnchorFreeHead`."""

    def __init__(self, dim: int, feat_size: int, channels: int = 256) -> None:
        super().__init__()
        self.feat_size = feat_size
        self.cls_convs = conv_tower(dim, channels, 1)
        self.reg_convs = conv_tower(dim, channels, 4)
        self.register_buffer("ref_points", reference_points(feat_size), persistent=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b, h = x.shape[0], self.feat_size
        grid = x.transpose(1, 2).reshape(b, -1, h, h)
        score_map = self.cls_convs(grid).float().view(b, h, h)
        dist = self.reg_convs(grid).float().sigmoid().permute(0, 2, 3, 1)
        boxes = torch.cat([self.ref_points - dist[..., :2], self.ref_points + dist[..., 2:]], dim=-1)
        return {"score_map": score_map, "boxes": boxes}


class OSTrackHead(nn.Module):
    """Table 6 ablation: OSTrack's centre / offset / size conv towers (upstream .../modules/head/ostrack.py;
    Xavier-uniform init of every >= 2-D parameter). Box = centre `ref + offset`, size `sigmoid(size)`, in
    normalised search-crop units, returned as xyxy; trained with LoRAT's loss, not OSTrack's."""

    def __init__(self, dim: int, feat_size: int, channels: int = 256) -> None:
        super().__init__()
        self.feat_size = feat_size
        self.ctr_convs = conv_tower(dim, channels, 1)
        self.offset_convs = conv_tower(dim, channels, 2)
        self.size_convs = conv_tower(dim, channels, 2)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.register_buffer("ref_points", reference_points(feat_size), persistent=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b, h = x.shape[0], self.feat_size
        grid = x.transpose(1, 2).reshape(b, -1, h, h)
        score_map = self.ctr_convs(grid).float().view(b, h, h)
        centre = self.ref_points + self.offset_convs(grid).float().permute(0, 2, 3, 1)
        half = self.size_convs(grid).float().sigmoid().permute(0, 2, 3, 1) / 2
        return {"score_map": score_map, "boxes": torch.cat([centre - half, centre + half], dim=-1)}


# `model.head` names (paper Table 6).
HEADS: Mapping[str, Callable[[int, int], nn.Module]] = MappingProxyType(
    {"mlp": MlpAnchorFreeHead, "conv": ConvAnchorFreeHead, "ostrack": OSTrackHead})
