"""Table 9 backbones (experiments/lorat_timm/): timm's DINOv2, MAE and CLIP ViTs load their timm/Hugging Face weight
files (generated here in the real key layout, at reduced depth) and compute what timm's own model computes with
those weights; LoRAT takes the pos-embed the way upstream's timm variant does (https://github.com/LitingLin/LoRAT:
trackit/models/methods/LoRAT/timm_vit/lorat.py)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from ablation_helpers import nudge_, nudge_trainable_
from safetensors.torch import save_file

from lib.config import load_experiment
from lib.models import build_model, load_checkpoint, trainable_state_dict
from lib.models.backbone import VIT_SPECS, build_vit, load_timm_weights, resolve_backbone_weights

DEPTH = 2
# backbone -> (config, timm architecture as the issue names it, pretrained image size)
FAMILIES = {"timm_dinov2_vitb14": ("base_224_dinov2", "vit_base_patch14_dinov2", 518),
            "timm_mae_vitb16": ("base_256_mae", "vit_base_patch16_224", 224),
            "timm_clip_vitb16": ("base_256_clip", "vit_base_patch16_clip_quickgelu_224", 224),
            "timm_eva02_vitb14": ("base_224_eva02", "eva02_base_patch14_224", 224)}  # more: tests/test_eva02.py


pytestmark = pytest.mark.usefixtures("one_thread")


def timm_reference(arch: str, seed: int = 3, **kwargs) -> torch.nn.Module:
    """timm's own model, random weights drawn under `seed` and every tensor (biases, norms too) perturbed."""
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=0, depth=DEPTH, **kwargs).eval()
    nudge_(model.parameters())
    return model


def write_weights(model: torch.nn.Module, path: Path) -> Path:
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


@pytest.fixture
def shallow_specs(monkeypatch):
    """The registered timm backbones at reduced depth (same layout, same key names)."""
    for name in FAMILIES:
        spec = VIT_SPECS[name]
        monkeypatch.setitem(VIT_SPECS, name, dataclasses.replace(spec, overrides=(("depth", DEPTH),)))


@pytest.mark.parametrize("backbone,suffix", [(name, ".safetensors") for name in sorted(FAMILIES)]
                         + [("timm_mae_vitb16", ".bin")])  # a Hugging Face pytorch_model.bin (torch pickle)
def test_backbone_equals_timm_with_the_same_file(backbone, suffix, tmp_path, shallow_specs):
    _, arch, size = FAMILIES[backbone]
    reference = timm_reference(arch)
    path = write_weights(reference, tmp_path / f"weights{suffix}")
    ours = build_vit(VIT_SPECS[backbone]).eval()
    load_timm_weights(ours, path)
    image = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(ours.forward_features(image), reference.forward_features(image))


def test_lorat_pos_embed_is_cropped_or_interpolated_as_upstream(tmp_path, shallow_specs):
    """DINOv2's 37 x 37 grid covers the 16 x 16 search grid: top-left crop. MAE's 14 x 14 grid does not:
    bicubic interpolation (size-based, no antialias), computed here with torch directly."""
    for backbone, expect_crop in (("timm_dinov2_vitb14", True), ("timm_mae_vitb16", False)):
        config, arch, _ = FAMILIES[backbone]
        reference = timm_reference(arch)
        path = write_weights(reference, tmp_path / f"{backbone}.safetensors")
        model = build_model(load_experiment("lorat_timm", config), training=True, backbone_weights=path)
        grid = reference.patch_embed.grid_size[0]
        table = reference.pos_embed.detach()[0, 1:].reshape(grid, grid, -1)
        if expect_crop:
            expected = table[:16, :16]
        else:
            expected = F.interpolate(table.permute(2, 0, 1)[None], size=(16, 16), mode="bicubic",
                                     align_corners=False)[0].permute(1, 2, 0)
        torch.testing.assert_close(model.pos_embed.detach().reshape(16, 16, -1), expected, atol=1e-6, rtol=0)


def test_clip_pre_norm_is_applied_before_the_blocks(tmp_path, shallow_specs):
    """CLIP has a LayerNorm in front of the blocks (timm `norm_pre`): LoRAT applies it to the joint sequence."""
    reference = timm_reference("vit_base_patch16_clip_quickgelu_224")
    path = write_weights(reference, tmp_path / "clip.safetensors")
    cfg = load_experiment("lorat_timm", "base_256_clip")
    model = build_model(cfg, training=False, backbone_weights=path)
    assert torch.equal(model.norm_pre.weight, reference.norm_pre.weight)
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    z, x = torch.randn(1, 3, 128, 128), torch.randn(1, 3, 256, 256)
    mask = torch.ones(1, 8, 8, dtype=torch.long)
    with torch.no_grad():
        model(z, x, mask)
        tokens = torch.cat([model.patch_embed(z) + model.template_pos_embed() + model.token_type_embed[1],
                            model.patch_embed(x) + model.pos_embed + model.token_type_embed[2]], dim=1)
        expected = F.layer_norm(tokens, (768,), reference.norm_pre.weight, reference.norm_pre.bias, eps=1e-5)
    torch.testing.assert_close(seen[0], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backbone", sorted(FAMILIES))
def test_lora_checkpoint_round_trip_on_each_family(backbone, tmp_path, shallow_specs):
    config, arch, _ = FAMILIES[backbone]
    path = write_weights(timm_reference(arch), tmp_path / "backbone.safetensors")
    cfg = load_experiment("lorat_timm", config)
    model = build_model(cfg, training=True, backbone_weights=path).eval()
    nudge_trainable_(model)
    torch.save({"model": trainable_state_dict(model), "config": cfg.to_dict()}, tmp_path / "lora.pth")
    inference = build_model(cfg, training=False, backbone_weights=path)
    load_checkpoint(inference, tmp_path / "lora.pth", backbone_weights=path)
    t, s = cfg.model.template_size, cfg.model.search_size
    batch = (torch.randn(1, 3, t, t), torch.randn(1, 3, s, s), torch.ones(1, 8, 8, dtype=torch.long))
    with torch.no_grad():
        a, b = model(*batch), inference(*batch)
    assert a["score_map"].shape == (1, 16, 16)
    torch.testing.assert_close(a["boxes"], b["boxes"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a["score_map"], b["score_map"], atol=1e-4, rtol=1e-5)


def test_configs_and_missing_weights():
    for config in ("base_224_dinov2", "base_256_mae", "base_256_clip"):
        for suffix, lora in (("", True), ("_fft", False)):
            m = load_experiment("lorat_timm", config + suffix).model
            assert (m.template_feat_size, m.search_feat_size) == (8, 16) and (m.lora is not None) == lora
    assert load_experiment("lorat_timm", "base_256_mae").model.patch_size == 16
    large = {c: load_experiment("lorat_timm", c).model for c in ("large_224_dinov2", "large_256_mae", "large_224_clip")}
    assert [m.backbone for m in large.values()] == ["timm_dinov2_vitl14", "timm_mae_vitl16", "timm_clip_vitl14"]
    assert all((m.template_feat_size, m.search_feat_size) == (8, 16) for m in large.values())
    with pytest.raises(FileNotFoundError, match="huggingface.co/timm/vit_base_patch16_224.mae"):
        resolve_backbone_weights("timm_mae_vitb16", "/nonexistent/vit_base_patch16_224.mae.safetensors")


def test_wrong_family_file_is_refused(tmp_path, shallow_specs):
    path = write_weights(timm_reference("vit_base_patch16_224"), tmp_path / "mae.safetensors")
    with pytest.raises(ValueError, match="pos_embed"):
        load_timm_weights(build_vit(VIT_SPECS["timm_dinov2_vitb14"]), path)
    with pytest.raises(ValueError, match="missing"):  # same grid, but CLIP has norm_pre the MAE file lacks
        load_timm_weights(build_vit(VIT_SPECS["timm_clip_vitb16"]), path)
    vit_b14 = timm_reference("vit_base_patch14_dinov2", img_size=224)  # EVA-02's 16 x 16 grid, ViT blocks
    path = write_weights(vit_b14, tmp_path / "vit_b14.safetensors")
    with pytest.raises(ValueError, match=r"missing: \[.*blocks\.0\.attn\.k_proj\.weight"):
        load_timm_weights(build_vit(VIT_SPECS["timm_eva02_vitb14"]), path)


@pytest.mark.parametrize("config, mean, std", [
    # upstream config/LoRAT_timm/{dinov2,mae}: normalization "imagenet"; {clip,eva02}: "openai_clip"
    # (trackit/core/transforms/dataset_norm_stats.py); the constants as published by torchvision and OpenAI CLIP
    ("base_224_dinov2", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ("base_256_mae", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ("base_256_clip", (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    ("base_224_eva02", (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
])
def test_training_and_tracking_crops_use_the_backbones_pixel_statistics(config, mean, std):
    from lib.test.tracker.lorat import Normaliser
    from lib.train.run_training import make_processing

    cfg = load_experiment("lorat_timm", config)
    pixel = (200, 100, 30)
    expected = torch.tensor([(v / 255 - m) / s for v, m, s in zip(pixel, mean, std)]).view(3, 1, 1)
    image = torch.tensor(pixel, dtype=torch.uint8).expand(4, 4, 3).numpy()
    training = torch.from_numpy(make_processing(cfg).normalise(image))
    torch.testing.assert_close(training, expected.expand(3, 4, 4), rtol=0, atol=1e-5)
    tracking = Normaliser(torch.device("cpu"), cfg.model.pixel_stats)(image.astype("float32"), torch.empty(3, 4, 4))
    torch.testing.assert_close(tracking, expected.expand(3, 4, 4), rtol=0, atol=1e-5)
