"""Loading Meta's DINOv2 torch-hub checkpoints (as upstream trackit/LoRAT does in
trackit/models/backbone/dinov2/builder.py) from files in the exact Meta layout.

The key layout is written by hand from the facebookresearch/dinov2 torch-hub model (not taken from timm), filled
with random values, so every check below compares the model against numbers the test itself put into the file.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F

from lib.config import load_experiment
from lib.models import build_model, default_backbone_weights
from lib.models import backbone as backbone_module
from lib.models.backbone import load_meta_dinov2

S_DIM, S_DEPTH, S_HIDDEN = 384, 12, 1536  # ViT-S/14 (upstream trackit/models/backbone/dinov2/model.py: vit_small)
G_DIM, G_HIDDEN = 1536, 4096  # ViT-g/14 SwiGLU: hidden = (int(4D*2/3) + 7) // 8 * 8
META_GRID = 37  # 518 px / 14


def meta_state_dict(dim: int, depth: int, hidden: int, swiglu: bool = False, seed: int = 0,
                    cheap: bool = False) -> dict[str, torch.Tensor]:
    """A Meta torch-hub DINOv2 state dict (block_chunks=0) with random values.

    `cheap=True` fills every tensor with one broadcast value (stride 0), so files of large variants cost a few
    bytes on disk: useful where only the shapes matter.
    """
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        if cheap:
            return torch.zeros(1).expand(*shape)
        return torch.randn(*shape, generator=g) * 0.1

    state = {"cls_token": rand(1, 1, dim), "pos_embed": rand(1, META_GRID * META_GRID + 1, dim),
             "mask_token": rand(1, dim), "patch_embed.proj.weight": rand(dim, 3, 14, 14),
             "patch_embed.proj.bias": rand(dim)}
    ffn = (("mlp.w12", 2 * hidden, dim), ("mlp.w3", dim, hidden)) if swiglu else \
        (("mlp.fc1", hidden, dim), ("mlp.fc2", dim, hidden))
    for i in range(depth):
        p = f"blocks.{i}."
        for name in ("norm1", "norm2"):
            state[p + name + ".weight"] = 1.0 + rand(dim)
            state[p + name + ".bias"] = rand(dim)
        for name, out_f, in_f in (("attn.qkv", 3 * dim, dim), ("attn.proj", dim, dim), *ffn):
            state[p + name + ".weight"] = rand(out_f, in_f)
            state[p + name + ".bias"] = rand(out_f)
        state[p + "ls1.gamma"] = rand(dim)
        state[p + "ls2.gamma"] = rand(dim)
    state["norm.weight"] = 1.0 + rand(dim)
    state["norm.bias"] = rand(dim)
    return state


def write_small_meta_checkpoint(folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """`dinov2_vits14_pretrain.pth` with random weights; returns the path and what was written."""
    state = meta_state_dict(S_DIM, S_DEPTH, S_HIDDEN)
    path = folder / "dinov2_vits14_pretrain.pth"
    torch.save(state, path)
    return path, state


def hand_pos_embed(file_pos: torch.Tensor, feat: int) -> torch.Tensor:
    """As upstream LoRAT builds it (lorat.py with interpolate_offset 0): drop CLS, 37x37 grid, bicubic to an
    explicit size, align_corners=False, no antialiasing."""
    grid = file_pos[0, 1:].reshape(META_GRID, META_GRID, -1).permute(2, 0, 1)[None]
    resized = F.interpolate(grid, size=(feat, feat), mode="bicubic", align_corners=False, antialias=False)
    return resized[0].permute(1, 2, 0).reshape(1, feat * feat, -1)


@pytest.fixture(scope="module")
def small_meta(tmp_path_factory):
    return write_small_meta_checkpoint(tmp_path_factory.mktemp("meta"))


@pytest.fixture(scope="module")
def small_model(small_meta):
    return build_model(load_experiment("lorat", "small_224"), training=False, backbone_weights=small_meta[0])


def test_every_backbone_tensor_comes_from_the_file(small_meta, small_model):
    _, state = small_meta
    model = small_model
    assert torch.equal(model.patch_embed.proj.weight, state["patch_embed.proj.weight"])
    assert torch.equal(model.patch_embed.proj.bias, state["patch_embed.proj.bias"])
    assert torch.equal(model.norm.weight, state["norm.weight"]) and torch.equal(model.norm.bias, state["norm.bias"])
    assert len(model.blocks) == S_DEPTH
    for i, block in enumerate(model.blocks):
        p = f"blocks.{i}."
        modules = {"norm1": block.norm1, "norm2": block.norm2, "attn.qkv": block.attn.qkv,
                   "attn.proj": block.attn.proj, "mlp.fc1": block.mlp.fc1, "mlp.fc2": block.mlp.fc2}
        for name, module in modules.items():
            assert torch.equal(module.weight, state[p + name + ".weight"]), p + name
            assert torch.equal(module.bias, state[p + name + ".bias"]), p + name
        assert torch.equal(block.ls1.gamma, state[p + "ls1.gamma"])
        assert torch.equal(block.ls2.gamma, state[p + "ls2.gamma"])


def test_block_forward_follows_the_file_semantics(small_meta, small_model):
    """One block by hand (§1.1): pre-norm, qkv rows [q; k; v], 6 heads of 64, softmax(qk^T/8), exact GELU."""
    _, state = small_meta
    w = {k.removeprefix("blocks.4."): v for k, v in state.items() if k.startswith("blocks.4.")}
    x = torch.randn(1, 5, S_DIM, generator=torch.Generator().manual_seed(3))

    def ln(t, name):
        return F.layer_norm(t, (S_DIM,), w[name + ".weight"], w[name + ".bias"], eps=1e-6)

    h = ln(x, "norm1") @ w["attn.qkv.weight"].T + w["attn.qkv.bias"]
    q, k, v = (h[..., j * S_DIM:(j + 1) * S_DIM].reshape(5, 6, 64).transpose(0, 1) for j in range(3))
    att = torch.softmax(q @ k.transpose(1, 2) / 8.0, dim=-1) @ v
    att = att.transpose(0, 1).reshape(1, 5, S_DIM) @ w["attn.proj.weight"].T + w["attn.proj.bias"]
    x1 = x + w["ls1.gamma"] * att
    m = ln(x1, "norm2") @ w["mlp.fc1.weight"].T + w["mlp.fc1.bias"]
    m = 0.5 * m * (1 + torch.erf(m / 2 ** 0.5)) @ w["mlp.fc2.weight"].T + w["mlp.fc2.bias"]
    expected = x1 + w["ls2.gamma"] * m
    with torch.no_grad():
        got = small_model.blocks[4](x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant,feat,zfeat", [("small_224", 16, 8), ("small_378", 27, 14)])
def test_pos_embed_is_bicubic_resize_without_cls(small_meta, small_model, variant, feat, zfeat):
    path, state = small_meta
    model = small_model if variant == "small_224" else \
        build_model(load_experiment("lorat", variant), training=False, backbone_weights=path)
    expected = hand_pos_embed(state["pos_embed"], feat)
    assert model.pos_embed.shape == (1, feat * feat, S_DIM)
    torch.testing.assert_close(model.pos_embed.data, expected, atol=1e-6, rtol=0)
    # Including the CLS row in the grid, or antialiasing, would give a visibly different embedding.
    antialiased = F.interpolate(state["pos_embed"][0, 1:].reshape(37, 37, -1).permute(2, 0, 1)[None],
                                size=(feat, feat), mode="bicubic", align_corners=False, antialias=True)
    assert not torch.allclose(model.pos_embed.data, antialiased[0].permute(1, 2, 0).reshape(1, -1, S_DIM), atol=1e-3)
    template = expected.reshape(feat, feat, S_DIM)[:zfeat, :zfeat].reshape(1, zfeat * zfeat, S_DIM)
    torch.testing.assert_close(model.template_pos_embed().data, template, atol=1e-6, rtol=0)


def test_vit_giant_swiglu_layout(tmp_path):
    vit = timm.create_model("vit_giant_patch14_dinov2", depth=2, num_classes=0, img_size=518, pretrained=False)
    state = meta_state_dict(G_DIM, 2, G_HIDDEN, swiglu=True, seed=1)
    assert state["blocks.0.mlp.w12.weight"].shape == (8192, 1536) and state["blocks.0.mlp.w3.weight"].shape == (1536, 4096)
    path = tmp_path / "dinov2_vitg14_pretrain.pth"
    torch.save(state, path)
    load_meta_dinov2(vit, path)
    for i in range(2):
        mlp = vit.blocks[i].mlp
        assert torch.equal(mlp.fc1.weight, state[f"blocks.{i}.mlp.w12.weight"])
        assert torch.equal(mlp.fc1.bias, state[f"blocks.{i}.mlp.w12.bias"])
        assert torch.equal(mlp.fc2.weight, state[f"blocks.{i}.mlp.w3.weight"])
        assert torch.equal(mlp.fc2.bias, state[f"blocks.{i}.mlp.w3.bias"])
    assert torch.equal(vit.pos_embed, state["pos_embed"]) and torch.equal(vit.cls_token, state["cls_token"])
    # silu(x1) * x2 with x1 = first half of w12's output (upstream layers/swiglu_ffn.py).
    token = torch.randn(G_DIM, generator=torch.Generator().manual_seed(2))
    h = state["blocks.1.mlp.w12.weight"] @ token + state["blocks.1.mlp.w12.bias"]
    x1, x2 = h[:G_HIDDEN], h[G_HIDDEN:]
    expected = state["blocks.1.mlp.w3.weight"] @ (x1 * torch.sigmoid(x1) * x2) + state["blocks.1.mlp.w3.bias"]
    with torch.no_grad():
        got = vit.blocks[1].mlp(token[None, None])[0, 0]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_missing_file_names_url_and_pretrained_path(tmp_path, monkeypatch):
    cfg = load_experiment("lorat", "small_224")
    url = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth"
    with pytest.raises(FileNotFoundError) as info:
        build_model(cfg, backbone_weights=tmp_path / "missing.pth")
    assert url in str(info.value) and str(tmp_path / "missing.pth") in str(info.value)
    # The default location is pretrained/<Meta file name>.
    assert default_backbone_weights(cfg).parts[-2:] == ("pretrained", "dinov2_vits14_pretrain.pth")
    monkeypatch.setattr(backbone_module, "PRETRAINED_DIR", tmp_path / "pretrained")
    with pytest.raises(FileNotFoundError) as info:
        backbone_module.resolve_backbone_weights("dinov2_vits14", None)
    assert url in str(info.value)
    assert str(tmp_path / "pretrained" / "dinov2_vits14_pretrain.pth") in str(info.value)


def test_base_file_into_small_model_lists_shape_mismatches(tmp_path):
    path = tmp_path / "dinov2_vitb14_pretrain.pth"
    torch.save(meta_state_dict(768, 12, 3072, cheap=True), path)
    with pytest.raises(ValueError) as info:
        build_model(load_experiment("lorat", "small_224"), backbone_weights=path)
    message = str(info.value)
    assert str(path) in message and "shape mismatches" in message
    assert "blocks.0.attn.qkv.weight: file (2304, 768) vs model (1152, 384)" in message
    assert "pos_embed: file (1, 1370, 768) vs model (1, 1370, 384)" in message


@pytest.mark.parametrize("content", [b"this is not a checkpoint" * 10, "dict"])
def test_non_checkpoint_file_gives_clear_error(tmp_path, content):
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    if content == "dict":  # a readable torch file that is not a DINOv2 checkpoint
        torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="Meta DINOv2|not a readable PyTorch checkpoint") as info:
        build_model(load_experiment("lorat", "small_224"), backbone_weights=path)
    assert str(path) in str(info.value)
