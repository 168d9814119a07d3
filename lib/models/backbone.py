"""DINOv2 ViT backbones from timm, and loading Meta's torch-hub checkpoints from a local file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from lib.utils.paths import PRETRAINED_DIR
DINOV2_GRID = 37  # Meta's checkpoints are trained at 518 px: 37 x 37 patch positions (+1 CLS)


@dataclass(frozen=True)
class ViTSpec:
    """A backbone: the timm architecture to instantiate and, for DINOv2, the Meta checkpoint it loads."""

    timm_name: str
    overrides: tuple[tuple[str, int], ...] = ()  # architecture changes (small demo ViTs)
    meta_file: str | None = None  # Meta torch-hub file name, looked up in pretrained/

    @property
    def meta_url(self) -> str | None:
        if self.meta_file is None:
            return None
        return f"https://dl.fbaipublicfiles.com/dinov2/{self.meta_file.split('_pretrain')[0]}/{self.meta_file}"


VIT_SPECS: dict[str, ViTSpec] = {
    "dinov2_vits14": ViTSpec("vit_small_patch14_dinov2", meta_file="dinov2_vits14_pretrain.pth"),
    "dinov2_vitb14": ViTSpec("vit_base_patch14_dinov2", meta_file="dinov2_vitb14_pretrain.pth"),
    "dinov2_vitl14": ViTSpec("vit_large_patch14_dinov2", meta_file="dinov2_vitl14_pretrain.pth"),
    "dinov2_vitg14": ViTSpec("vit_giant_patch14_dinov2", meta_file="dinov2_vitg14_pretrain.pth"),
    # A DINOv2-shaped ViT small enough to train from scratch on a CPU (the out-of-the-box demo).
    "vit_demo_p14": ViTSpec("vit_small_patch14_dinov2", overrides=(("embed_dim", 192), ("depth", 6),
                                                                    ("num_heads", 3))),
}


def create_vit(name: str, drop_path: float = 0.0) -> VisionTransformer:
    """Instantiate a backbone with random weights (no network access; timm's pretrained download is off)."""
    if name not in VIT_SPECS:
        raise KeyError(f"Unknown backbone '{name}'. Known: {', '.join(VIT_SPECS)}")
    spec = VIT_SPECS[name]
    return timm.create_model(spec.timm_name, pretrained=False, num_classes=0, img_size=DINOV2_GRID * 14,
                             drop_path_rate=drop_path, **dict(spec.overrides))


def default_weights_path(name: str) -> Path | None:
    """`pretrained/<Meta file>` for DINOv2 backbones (whether or not it exists yet), None for demo backbones."""
    spec = VIT_SPECS[name]
    return PRETRAINED_DIR / spec.meta_file if spec.meta_file else None


def resolve_backbone_weights(name: str, path: str | Path | None) -> Path:
    """Where the Meta checkpoint for `name` is: `path` if given, else pretrained/<meta file>. Missing: clear error."""
    spec = VIT_SPECS[name]
    path = path if path is not None else default_weights_path(name)
    if path is None:
        raise ValueError(f"Backbone '{name}' has no published weights; pass an explicit file or None")
    path = Path(path)
    if not path.is_file():
        hint = f"Download {spec.meta_url} and put it at {path}" if spec.meta_url else "Check the path"
        raise FileNotFoundError(f"Backbone weights not found: {path}. {hint} (see pretrained/README.md).")
    return path


def load_meta_dinov2(vit: VisionTransformer, path: str | Path) -> None:
    """Load one of Meta's `dinov2_vit*14_pretrain.pth` files (torch-hub layout) into a timm ViT, strictly.

    timm's own converter renames the SwiGLU `w12`/`w3` of ViT-g to `fc1`/`fc2` and drops the mask token.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated download or a non-checkpoint file
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({e}). Re-download it.") from e
    if not isinstance(state, dict) or "pos_embed" not in state or "blocks.0.norm1.weight" not in state:
        raise ValueError(f"{path} does not look like a Meta DINOv2 torch-hub checkpoint (keys 'pos_embed', "
                         f"'blocks.0.norm1.weight' expected)")
    grid_tokens = DINOV2_GRID * DINOV2_GRID + 1
    if state["pos_embed"].shape[1] != grid_tokens:  # timm would silently resample it (with antialiasing)
        raise ValueError(f"{path}: pos_embed has {state['pos_embed'].shape[1]} positions, Meta's DINOv2 checkpoints "
                         f"have {grid_tokens} (37 x 37 + CLS); this is not one of the torch-hub *_pretrain.pth files")
    converted = checkpoint_filter_fn(dict(state), vit)
    expected = vit.state_dict()
    wrong = [f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
             for k, v in converted.items() if k in expected and v.shape != expected[k].shape]
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    if wrong or missing or unexpected:
        raise ValueError(f"{path} does not match the backbone (wrong size variant?). "
                         f"shape mismatches: {wrong}; missing: {missing}; unexpected: {unexpected}")
    vit.load_state_dict(converted, strict=True)
