"""ViT backbones built with timm, and loading their pretrained weights from local files.

Two weight formats: Meta's DINOv2 torch-hub checkpoints (`dinov2_*`, the paper's main backbones, pos-embed resized
by interpolation as upstream config/LoRAT does), and timm/Hugging Face files (`timm_*`, the paper's Table 9
backbones, as upstream config/LoRAT_timm builds them with `timm.create_model`, https://github.com/LitingLin/LoRAT:
trackit/models/methods/LoRAT/timm_vit/). A `timm_*` backbone's search-grid position embedding is the top-left crop
of the pretrained grid when that grid is large enough, and interpolated otherwise (upstream timm variant). Besides
timm's `VisionTransformer`, the EVA-02 models (timm `Eva`: rotary position embedding, separate q/k/v, SwiGLU) are
supported, as upstream's timm_vit/lorat_eva.py builds them.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import timm
import torch
from torch import nn
from timm.models import eva, vision_transformer
from timm.models.eva import Eva
from timm.models.vision_transformer import VisionTransformer

from lib.utils.paths import PRETRAINED_DIR
DINOV2_GRID = 37  # Meta's checkpoints are trained at 518 px: 37 x 37 patch positions (+1 CLS)
TimmViT = VisionTransformer | Eva  # the timm model classes a backbone may be
# timm model class -> the checkpoint filter its `create_model(..., pretrained=True)` applies to a weight file.
TIMM_CHECKPOINT_FILTERS: Mapping[type, Callable[[dict[str, torch.Tensor], TimmViT], dict[str, torch.Tensor]]] = \
    MappingProxyType({VisionTransformer: vision_transformer.checkpoint_filter_fn, Eva: eva.checkpoint_filter_fn})


@dataclass(frozen=True)
class ViTSpec:
    """A backbone: the timm architecture to instantiate, its patch size, and the weight file it loads."""

    timm_name: str
    overrides: tuple[tuple[str, int | float], ...] = ()  # architecture changes (small demo ViTs)
    weights_file: str | None = None  # file name looked up in pretrained/
    weights_format: str = "meta_dinov2"  # key of WEIGHT_CONVERTERS
    weights_url: str | None = None  # where users download `weights_file` from
    patch_size: int = 14
    img_size: int | None = DINOV2_GRID * 14  # the pretrained grid; None: timm's default for the model
    pos_embed: str = "interpolate"  # key of lib.models.lorat.POS_EMBED_RESIZE
    # The same weights on Hugging Face as a timm tag, saved as pretrained/<tag>.safetensors: used when
    # `weights_file` is absent (the "meta_or_timm" format reads both layouts)
    timm_alternative: str | None = None
    normalization: str = "imagenet"  # key of lib.utils.image.NORMALIZATIONS: the pixel statistics of pretraining
    # Stochastic depth over the blocks: "uniform" (the same rate in every block, as upstream's Meta DINOv2 code) or
    # "linear" (timm's ramp from 0 to the rate, as upstream's timm-backbone builds)
    drop_path_schedule: str = "uniform"


def _meta(name: str, folder: str | None = None) -> dict[str, str]:
    file = f"{name}_pretrain.pth"
    return {"weights_file": file, "weights_url": f"https://dl.fbaipublicfiles.com/dinov2/{folder or name}/{file}"}


def _timm(tag: str, patch_size: int) -> dict[str, object]:
    """A timm model tag (`<architecture>.<pretrained tag>`) whose Hugging Face `model.safetensors` is saved as
    pretrained/<tag>.safetensors (or the repo's `pytorch_model.bin` as pretrained/<tag>.bin)."""
    return {"weights_file": f"{tag}.safetensors", "weights_format": "timm", "patch_size": patch_size,
            "weights_url": f"https://huggingface.co/timm/{tag}/resolve/main/model.safetensors", "img_size": None,
            "pos_embed": "crop", "drop_path_schedule": "linear"}


DEMO_BACKBONE_FILE = "vit_demo_p14_synthetic.pth"
_DEMO_SIZE = (("embed_dim", 192), ("depth", 6), ("num_heads", 3))  # the CPU-sized demo ViTs
# LayerScale starts at 1 rather than DINOv2's 1e-5: trained from random weights with the demo's budget, the 1e-5
# gains were still about 0.02 after 30k samples, leaving the blocks almost out of the residual stream.
_DEMO_VIT: dict[str, object] = {"overrides": (*_DEMO_SIZE, ("init_values", 1.0)), "img_size": 112,
                                "pos_embed": "crop"}

VIT_SPECS: dict[str, ViTSpec] = {
    "dinov2_vits14": ViTSpec("vit_small_patch14_dinov2", **_meta("dinov2_vits14")),
    "dinov2_vitb14": ViTSpec("vit_base_patch14_dinov2", **_meta("dinov2_vitb14")),
    "dinov2_vitl14": ViTSpec("vit_large_patch14_dinov2", **_meta("dinov2_vitl14")),
    "dinov2_vitg14": ViTSpec("vit_giant_patch14_dinov2", **_meta("dinov2_vitg14")),
    # A DINOv2-shaped ViT small enough to train from scratch on a CPU (tests, ablations on a CPU).
    "vit_demo_p14": ViTSpec("vit_small_patch14_dinov2", overrides=_DEMO_SIZE),
    # The out-of-the-box demo's backbone: pretrained on the synthetic domain P by tracking/pretrain_demo_backbone.py
    # (which starts from `vit_demo_p14_synthetic_init`, the same network with random weights) and shipped in
    # pretrained/ (timm layout, float16); its position grid is the demo's 8 x 8 search grid.
    "vit_demo_p14_synthetic": ViTSpec("vit_small_patch14_dinov2", **_DEMO_VIT, weights_file=DEMO_BACKBONE_FILE,
                                      weights_format="timm"),
    "vit_demo_p14_synthetic_init": ViTSpec("vit_small_patch14_dinov2", **_DEMO_VIT),
    # LoRATv2 (experiments/loratv2): DINOv2 with 4 register tokens, Meta's torch-hub file or timm's
    "dinov2_reg4_vitb14": ViTSpec("vit_base_patch14_reg4_dinov2", **_meta("dinov2_vitb14_reg4", "dinov2_vitb14"),
                                  weights_format="meta_or_timm", pos_embed="crop",
                                  timm_alternative="vit_base_patch14_reg4_dinov2.lvd142m"),
    "dinov2_reg4_vitl14": ViTSpec("vit_large_patch14_reg4_dinov2", **_meta("dinov2_vitl14_reg4", "dinov2_vitl14"),
                                  weights_format="meta_or_timm", pos_embed="crop",
                                  timm_alternative="vit_large_patch14_reg4_dinov2.lvd142m"),
    "vit_demo_p14_reg4": ViTSpec("vit_small_patch14_reg4_dinov2", overrides=_DEMO_SIZE,
                                 weights_format="meta_or_timm", pos_embed="crop"),
    # Paper Table 9 (upstream config/LoRAT_timm): timm's ViT-B models with their timm/Hugging Face weights.
    "timm_dinov2_vitb14": ViTSpec("vit_base_patch14_dinov2", **_timm("vit_base_patch14_dinov2.lvd142m", 14)),
    "timm_mae_vitb16": ViTSpec("vit_base_patch16_224", **_timm("vit_base_patch16_224.mae", 16)),
    "timm_clip_vitb16": ViTSpec("vit_base_patch16_clip_quickgelu_224",
                                **_timm("vit_base_patch16_clip_quickgelu_224.openai", 16), normalization="openai_clip"),
    "timm_dinov2_vitl14": ViTSpec("vit_large_patch14_dinov2", **_timm("vit_large_patch14_dinov2.lvd142m", 14)),
    "timm_mae_vitl16": ViTSpec("vit_large_patch16_224", **_timm("vit_large_patch16_224.mae", 16)),
    "timm_clip_vitl14": ViTSpec("vit_large_patch14_clip_quickgelu_224",
                                **_timm("vit_large_patch14_clip_quickgelu_224.openai", 14), normalization="openai_clip"),
    # EVA-02 (timm `Eva`, MIM-pretrained on ImageNet-22k; upstream config/LoRAT_timm/eva02): 16 x 16 pos-embed grid
    "timm_eva02_vitb14": ViTSpec("eva02_base_patch14_224", **_timm("eva02_base_patch14_224.mim_in22k", 14),
                                 normalization="openai_clip"),
    "timm_eva02_vitl14": ViTSpec("eva02_large_patch14_224", **_timm("eva02_large_patch14_224.mim_in22k", 14),
                                 normalization="openai_clip"),
}


def build_vit(spec: ViTSpec, drop_path: float = 0.0) -> TimmViT:
    """Instantiate `spec` with random weights (no network access; timm's pretrained download is off)."""
    size = {} if spec.img_size is None else {"img_size": spec.img_size}
    vit = timm.create_model(spec.timm_name, pretrained=False, num_classes=0, drop_path_rate=drop_path,
                            **size, **dict(spec.overrides))
    if type(vit) not in TIMM_CHECKPOINT_FILTERS or vit.patch_embed.patch_size[0] != spec.patch_size:
        raise ValueError(f"{spec.timm_name}: expected a timm VisionTransformer or Eva with patch {spec.patch_size}")
    return vit


def create_vit(name: str, drop_path: float = 0.0) -> TimmViT:
    """The backbone registered as `name` in VIT_SPECS, with random weights."""
    if name not in VIT_SPECS:
        raise KeyError(f"Unknown backbone '{name}'. Known: {', '.join(VIT_SPECS)}")
    return build_vit(VIT_SPECS[name], drop_path)


def default_weights_path(name: str) -> Path | None:
    """`pretrained/<weights file>` (whether or not it exists yet), None for demo backbones. For timm files the
    `.bin` twin is taken when only it exists, for the reg4 DINOv2s timm's copy (`timm_alternative`) likewise."""
    spec = VIT_SPECS[name]
    if spec.weights_file is None:
        return None
    path = PRETRAINED_DIR / spec.weights_file
    bin_twin = path.with_suffix(".bin")
    if spec.weights_format == "timm" and not path.is_file() and bin_twin.is_file():
        return bin_twin
    alternative = PRETRAINED_DIR / f"{spec.timm_alternative}.safetensors" if spec.timm_alternative else None
    return alternative if alternative is not None and not path.is_file() and alternative.is_file() else path


def vit_state_from_lorat(model: nn.Module, vit: VisionTransformer) -> dict[str, torch.Tensor]:
    """The backbone of a trained LoRAT `model` (merged, plain linears) as the state dict of timm ViT `vit`, whose
    position grid must be the model's search grid (the demo backbones). `vit` supplies what LoRAT does not keep:
    the class token and its position, which LoRAT never uses."""
    grid = vit.patch_embed.grid_size[0]
    if grid != model.search_feat_size or vit.num_prefix_tokens != 1 or model.z_pos_embed is not None:
        raise ValueError(f"only a backbone whose {grid} x {grid} position grid is the model's search grid "
                         f"({model.search_feat_size}) and a shared position embedding can be written back")
    state = {k: v.detach().clone() for k, v in vit.state_dict().items()}
    own = {k: v for k, v in model.state_dict().items() if k.split(".", 1)[0] in ("patch_embed", "norm_pre", "blocks",
                                                                                 "norm")}
    if set(own) - set(state):
        raise ValueError(f"the model holds tensors a plain ViT has no place for (unmerged PEFT modules?): "
                         f"{sorted(set(own) - set(state))[:5]}")
    state.update({k: v.detach().clone() for k, v in own.items()})
    state["pos_embed"] = torch.cat([state["pos_embed"][:, :1], model.pos_embed.detach()], dim=1)
    return state


def resolve_backbone_weights(name: str, path: str | Path | None) -> Path:
    """Where the weights for `name` are: `path` if given, else pretrained/<file>. Missing: clear error."""
    spec = VIT_SPECS[name]
    path = path if path is not None else default_weights_path(name)
    if path is None:
        raise ValueError(f"Backbone '{name}' has no published weights; pass an explicit file or None")
    path = Path(path)
    if not path.is_file():
        hint = f"Download {spec.weights_url} and put it at {path}" if spec.weights_url else "Check the path"
        if spec.timm_alternative:
            hint += (f", or timm's copy https://huggingface.co/timm/{spec.timm_alternative}/resolve/main/"
                     f"model.safetensors saved as {PRETRAINED_DIR / spec.timm_alternative}.safetensors")
        raise FileNotFoundError(f"Backbone weights not found: {path}. {hint} (see pretrained/README.md).")
    return path


def load_backbone_weights(vit: TimmViT, name: str, path: str | Path) -> None:
    """Load the weight file of backbone `name` into `vit`, strictly."""
    vit.load_state_dict(backbone_state_dict(vit, name, path), strict=True)


def backbone_state_dict(vit: TimmViT, name: str, path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of backbone `name`'s weight file under `vit`'s (timm) names, checked to fit `vit` exactly.
    `vit` only supplies names and shapes: it may live on the meta device."""
    return _converted(vit, path, VIT_SPECS[name].weights_format)


def _converted(vit: TimmViT, path: str | Path, fmt: str) -> dict[str, torch.Tensor]:
    path = Path(path)
    converted = WEIGHT_CONVERTERS[fmt](vit, _read_vit_state(path, FORMAT_NAMES[fmt]), path)
    expected = vit.state_dict()
    wrong = [f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
             for k, v in converted.items() if k in expected and v.shape != expected[k].shape]
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    if wrong or missing or unexpected:
        raise ValueError(f"{path} does not match the backbone (wrong size variant?). "
                         f"shape mismatches: {wrong}; missing: {missing}; unexpected: {unexpected}")
    return converted


def _read_vit_state(path: Path, kind: str) -> dict[str, torch.Tensor]:
    """The tensors of a ViT weight file of `kind` (safetensors, or a torch pickle read with weights_only), checked
    to hold a ViT's `pos_embed` and blocks; a truncated download or a foreign file is an error naming the file."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling and safetensors raise many types; all mean "not a readable weight file"
        raise ValueError(f"{path} is not a readable PyTorch checkpoint / safetensors file ({e}). "
                         f"Re-download it.") from e
    if not isinstance(state, dict) or "pos_embed" not in state or "blocks.0.norm1.weight" not in state:
        raise ValueError(f"{path} does not look like a {kind} (keys 'pos_embed', 'blocks.0.norm1.weight' expected)")
    return state


def convert_timm(vit: TimmViT, state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """A timm/Hugging Face weight file (safetensors, or a torch `.bin`) of the same architecture, through timm's
    own checkpoint filter for the model's class (as `timm.create_model(..., pretrained=True)` would)."""
    if tuple(state["pos_embed"].shape) != tuple(vit.pos_embed.shape):  # timm would silently resample it
        raise ValueError(f"{path}: pos_embed {tuple(state['pos_embed'].shape)} differs from the model's "
                         f"{tuple(vit.pos_embed.shape)}: a different image size variant of the model")
    return TIMM_CHECKPOINT_FILTERS[type(vit)](dict(state), vit)


def convert_meta_dinov2(vit: VisionTransformer, state: dict[str, torch.Tensor],
                        path: Path) -> dict[str, torch.Tensor]:
    """One of Meta's `dinov2_vit*14[_reg4]_pretrain.pth` files (torch-hub layout), through timm's converter: it
    renames ViT-g's SwiGLU `w12`/`w3` to `fc1`/`fc2` and drops the mask token; with registers (timm's
    `no_embed_class` models) `register_tokens` -> `reg_token`, `cls_token + pos_embed[:, 0]` -> `cls_token` and
    `pos_embed[:, 1:]` (the 37 x 37 grid) -> `pos_embed`."""
    grid_tokens = DINOV2_GRID * DINOV2_GRID + 1
    if state["pos_embed"].shape[1] != grid_tokens:  # timm would silently resample it (with antialiasing)
        raise ValueError(f"{path}: pos_embed has {state['pos_embed'].shape[1]} positions, Meta's DINOv2 checkpoints "
                         f"have {grid_tokens} (37 x 37 + CLS); this is not one of the torch-hub *_pretrain.pth files")
    if ("register_tokens" in state) != (vit.reg_token is not None):
        raise ValueError(f"{path}: {'has' if 'register_tokens' in state else 'has no'} register tokens, the backbone "
                         f"{'has none' if vit.reg_token is None else 'has 4'}: the reg4 and plain DINOv2 files differ")
    return vision_transformer.checkpoint_filter_fn(dict(state), vit)


def convert_meta_or_timm(vit: VisionTransformer, state: dict[str, torch.Tensor],
                         path: Path) -> dict[str, torch.Tensor]:
    """Meta's torch-hub layout (it has a `mask_token`) or timm's, told apart by the keys."""
    return (convert_meta_dinov2 if "mask_token" in state else convert_timm)(vit, state, path)


def load_timm_weights(vit: TimmViT, path: str | Path) -> None:
    """Load a timm/Hugging Face weight file of the same architecture into `vit`, strictly."""
    vit.load_state_dict(_converted(vit, path, "timm"), strict=True)


def load_meta_dinov2(vit: VisionTransformer, path: str | Path) -> None:
    """Load one of Meta's `dinov2_vit*14_pretrain.pth` files (torch-hub layout) into a timm ViT, strictly."""
    vit.load_state_dict(_converted(vit, path, "meta_dinov2"), strict=True)


# `ViTSpec.weights_format` names: how a file's tensors become the timm model's, and what the file is called.
WEIGHT_CONVERTERS: Mapping[str, Callable[[TimmViT, dict[str, torch.Tensor], Path],
                                         dict[str, torch.Tensor]]] = MappingProxyType(
    {"meta_dinov2": convert_meta_dinov2, "timm": convert_timm, "meta_or_timm": convert_meta_or_timm})
FORMAT_NAMES: Mapping[str, str] = MappingProxyType(
    {"meta_dinov2": "Meta DINOv2 torch-hub checkpoint", "timm": "timm ViT weight file",
     "meta_or_timm": "DINOv2 weight file (Meta torch-hub or timm)"})
