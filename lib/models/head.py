"""LoRAT's MLP-only anchor-free head (upstream trackit/LoRAT: trackit/models/methods/LoRAT/modules/head/mlp.py)."""
from __future__ import annotations

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
